"""The tokenizer: byte-level BPE, its file, and its export to other libraries.

- ``bpe``                 byte-level BPE tokenizer: train, encode, decode, save, load
- ``bpe_merges``          the merge-counting core of BPE training
- ``tokenizer_file``      the tokenizer's JSON file, every field checked on load
- ``tokenizer_export``    the tokenizer for HF ``tokenizers`` (``tokenizer.json``) and ``tiktoken``
"""
