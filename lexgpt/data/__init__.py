"""The data: where the transcripts come from, how they are parsed and cleaned, and the
token shards and batches training reads.

- ``lexicap``       where the transcripts come from; which folder entries are episodes
- ``archive``       download data.zip and extract it safely (no escape, bounded size)
- ``vtt``           WebVTT bytes -> cues, or an error naming file and line
- ``ingest``        a folder of VTT files -> one Arrow table of cues
- ``cleaning``      the ordered, user-editable cleaning rules (``cleaning_rules.toml``, package data)
- ``corpus``        cues -> one cleaned text per episode, validated by pandera
- ``shards``        corpus -> uint16 train/val token shards + manifest, memory-mapped reads
- ``dataloader``    random training batches from the memory-mapped train shard
"""
