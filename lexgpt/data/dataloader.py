"""Training batches: random windows of a token shard, reproducible without hidden state.

Batch ``g`` (counted over all steps, micro-steps and ranks) is drawn from
``np.random.default_rng([seed, g])``, so the sampler keeps no state: ``world_size``
processes with ``grad_accum=a`` see exactly the batches one process with
``grad_accum=a * world_size`` would, and a resumed run needs only its step to continue.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "train.bin"
>>> np.arange(100, dtype=TOKEN_DTYPE).tofile(path)
>>> x, y = BatchSampler(path, block_size=8, batch_size=2, seed=0).batch(0, torch.device("cpu"))
>>> tuple(x.shape), bool((y[:, :-1] == x[:, 1:]).all())  # y is x shifted by one token
((2, 8), True)
"""

from __future__ import annotations

import os

import numpy as np
import torch

from lexgpt.data.shards import TOKEN_DTYPE, open_shard

__all__ = ["TOKEN_DTYPE", "BatchSampler"]


class BatchSampler:
    """Random (x, y) windows from a token shard; batch ``g`` depends only on (seed, g)."""

    def __init__(self, path: str | os.PathLike[str], block_size: int, batch_size: int, seed: int) -> None:
        self.data = open_shard(path)
        if len(self.data) < block_size + 2:
            raise ValueError(f"{path} has {len(self.data)} tokens; need > {block_size + 1}")
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed

    def batch(self, g: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, g])
        starts = rng.integers(0, len(self.data) - self.block_size, size=self.batch_size)
        buf = np.stack([self.data[s : s + self.block_size + 1] for s in starts]).astype(np.int64)
        t = torch.from_numpy(buf)  # (B, T+1)
        if device.type == "cuda":
            t = t.pin_memory().to(device, non_blocking=True)
        return t[:, :-1], t[:, 1:]  # (B, T), (B, T)
