"""lexgpt: a GPT trained from scratch on the Lexicap transcripts.

The library has one concept per module and no Dagster imports:

- ``vtt``        WebVTT parsing (cues, with errors that name file and line)
- ``lexicap``    where the transcripts come from, and which entries of the folder are episodes
- ``archive``    download a zip and extract it safely, within size and ratio bounds
- ``ingest``     all VTT files of a folder -> one Arrow table of cues
- ``cleaning``   the ordered, user-editable cleaning rules (``cleaning_rules.toml``)
- ``corpus``     cues -> one cleaned text per episode, validated by pandera
- ``bpe``        byte-level BPE tokenizer (train, encode, decode, save, load)
- ``tokenizer_file`` the tokenizer's JSON file, every field checked on load
- ``shards``     corpus -> uint16 token shards for train and val, memory-mapped reads
- ``model``      the GPT (decoder-only transformer)
- ``train``      the training loop (AdamW, warmup + cosine, eval in bits per character)
- ``generation_params``  how to sample: one set of defaults, validated in one place
- ``generate``   prompt in, streamed text out (sampling with a KV cache)
- ``report``     the terminal's line per evaluation and the verdict after training
- ``tracking``   MLflow runs: setup, tags, params, live metrics
- ``run_artifacts``  a run's files: loss curve, tokenizer, rules, samples
- ``plots``      the loss curve
- ``packaging``  the GPT as an MLflow pyfunc: log, register, load
- ``mlflow_model``  the pyfunc itself (runs inside MLflow, models from code)
- ``registry``   the champion gate, promotion, lineage of a model version
- ``atomic``     atomic file writes for everything in the data lake
- ``workers``    process-pool workers that do not run the parent's signal handlers
- ``paths``      where the local stores live
"""

__version__ = "0.1.0"
