"""Training: the loop, its settings, its optimizers, and where and how big it runs.

- ``train``             ``python -m lexgpt.training.train`` (shards validated first); re-exports the two below
- ``train_config``      ``TrainConfig`` (checked on construction) and the per-preset recipes
- ``train_loop``        the training loop: setup, step, finish (ranks decide together)
- ``run_state``         what a run carries from step to step, and what it returns
- ``train_progress``    the bar (budget in percent, time left) and when to evaluate
- ``optim``             Muon + AdamW parameter groups and the learning-rate schedule
- ``muon``              Muon with its Newton-Schulz iteration batched over equal shapes
- ``sizing``            preset auto: a shape sized to the time budget from a throughput probe
- ``device``            device, precision, compile and thread choices; peak FLOP/s for MFU
"""
