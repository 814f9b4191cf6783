"""lexgpt: a GPT trained from scratch on the Lexicap transcripts.

The library has one concept per module and no Dagster imports:

- ``vtt``        WebVTT parsing (cues, with errors that name file and line)
- ``lexicap``    where the transcripts come from, and which entries of the folder are episodes
- ``archive``    download a zip and extract it safely, within size and ratio bounds
- ``ingest``     all VTT files of a folder -> one Arrow table of cues
- ``cleaning``   the ordered, user-editable cleaning rules (``cleaning_rules.toml``)
- ``corpus``     cues -> one cleaned text per episode, validated by pandera
- ``bpe``        byte-level BPE tokenizer (train, encode, decode, save, load)
- ``bpe_merges`` the merge-counting core of BPE training
- ``tokenizer_file``   the tokenizer's JSON file, every field checked on load
- ``tokenizer_export`` the tokenizer as a Hugging Face ``tokenizer.json``
- ``shards``     corpus -> uint16 token shards for train and val, memory-mapped reads
- ``ngram``      the count-based baseline: interpolated Kneser-Ney on the same shards
- ``model``      the GPT (decoder-only transformer, Qwen3-style block)
- ``dataloader`` random training batches from the memory-mapped train shard
- ``optim``      Muon + AdamW parameter groups and the learning-rate schedule
- ``device``     device, precision, compile and thread choices; peak FLOPs for MFU
- ``loss_eval``  bits per character on the val shard (every target scored once)
- ``checkpoint`` save/resume a training state; ``load_model``, the one loader of weights
- ``interrupts`` Ctrl-C that stops a long loop even where a library drops it
- ``train_loop`` the training loop (``train_config``: its settings; ``train``: ``python -m lexgpt.train``)
- ``export``     the weights as a Hugging Face ``Qwen3ForCausalLM`` folder
- ``generation_params``  how to sample: one set of defaults, validated in one place
- ``generate``   prompt in, streamed text out (sampling with a KV cache)
- ``report``     the terminal's line per evaluation and the verdict after training
- ``tracking``   MLflow runs: setup, tags, params, live metrics
- ``run_artifacts``  a run's files: loss curve, tokenizer, rules, samples
- ``plots``      the loss curve
- ``packaging``  the GPT as an MLflow pyfunc: log, register, load
- ``mlflow_model``  the pyfunc flavour, imported from the installed package (the logged model is data)
- ``model_files``  the three files a registered model is, their hashes in the registry, checked on load
- ``moved_home``  a copied or moved home: MLflow's artifact paths re-pointed to it
- ``registry``   the champion gate, promotion, lineage of a model version
- ``atomic``     atomic file writes for everything in the data lake
- ``lock``       one writer per home folder (a lock file naming its holder)
- ``hashing``    content hashes recorded with every artifact
- ``workers``    process-pool workers that do not run the parent's signal handlers
- ``paths``      where the local stores live
"""

__version__ = "0.1.0"
