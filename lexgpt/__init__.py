"""lexgpt: a GPT trained from scratch on the Lexicap transcripts.

The library, one subpackage per concern, with no Dagster imports (the Dagster layer is
``pipelines``). Each subpackage's docstring lists its modules, one concept per module:

- ``data``        transcripts in (Lexicap folder or zip, WebVTT, ingest), cleaning rules, the
                  cleaned corpus, token shards and training batches
- ``tokenizer``   byte-level BPE: training, its JSON file, export to HF and tiktoken
- ``modeling``    the GPT, its checkpoints and the files a registered model is, HF export
- ``generation``  prompt in, streamed text out; the one set of sampling defaults
- ``training``    the training loop (``python -m lexgpt.training.train``), its config,
                  optimizers (Muon + AdamW), progress, sizing to a time budget, device choices
- ``evaluation``  bits per character on the val shard, the n-gram baseline, the verdict
- ``tracking``    MLflow: runs, the pyfunc model (log, register, load), the registry's
                  champion gate, a run's files and plots, a moved home
- ``serving``     the HTTP apps ``lexgpt serve`` runs (MLflow's scoring app, the OpenAI API)
- ``infra``       atomic writes, content hashes, the writer lock, Ctrl-C, pool workers,
                  paths, stable reads

``lexgpt.mlflow_model`` is a shim: models registered before the subpackages name it as
their MLflow ``loader_module``.
"""

__version__ = "0.1.0"
