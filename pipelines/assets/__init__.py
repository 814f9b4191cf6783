"""The Dagster assets, one per module (with its config and checks), in pipeline order:

- ``lexicap_vtt``         the Lexicap WebVTT files: an observed source, versioned by content
- ``raw_subtitles``       every caption cue, parsed from WebVTT
- ``cleaned_corpus``      one cleaned text per episode (+ the ``corpus_matches_schema`` check)
- ``bpe_vocab``           the byte-level BPE tokenizer (``BPEConfig``)
- ``token_shards``        uint16 train/val shards (+ decode and id-range checks)
- ``ngram_baseline``      the Kneser-Ney bar (``NgramConfig``; + ``beats_ngram_baseline`` on the model)
- ``trained_model``       the GPT, trained in its own process tree (``TrainingConfig``; + ``val_bpc_within_bound``)
- ``registered_model``    the weights as an MLflow model version, and the champion gate
- ``evaluation_samples``  the registered model's answers to fixed questions (``SamplesConfig``)
- ``shared``              asset groups and the metadata row cap, used by several of the above
"""
