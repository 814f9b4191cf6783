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
- ``generate``   sampling with a KV cache
- ``tracking``   MLflow runs and the model registry
- ``atomic``     atomic file writes for everything in the data lake
- ``workers``    process-pool workers that do not run the parent's signal handlers
- ``paths``      where the local stores live
"""

__version__ = "0.1.0"
