"""Training batches: each epoch the shard's windows in a fresh order, reproducible without
hidden state.

Batch ``g`` (counted over all steps, micro-steps and ranks) holds the windows ``g * B`` to
``(g + 1) * B - 1`` of an endless sequence of epochs, each epoch's offset and order drawn
from ``np.random.default_rng([seed, epoch, ...])``. So the sampler keeps no state:
``world_size`` processes with ``grad_accum=a`` see exactly the batches one process with
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
    """Windows of a token shard, each epoch a permutation of them; batch ``g`` depends only
    on (seed, g).

    An epoch cuts the shard into back-to-back windows of ``block_size + 1`` tokens from an
    offset drawn for that epoch, and visits them in an order drawn for that epoch: each
    token is trained on once per epoch, but for less than two windows at the shard's ends
    (random windows drawn with replacement see ~1 - 1/e of the shard in an epoch's worth of
    batches, and some stretches twice).
    """

    def __init__(self, path: str | os.PathLike[str], block_size: int, batch_size: int, seed: int) -> None:
        self.data = open_shard(path)
        if len(self.data) < block_size + 2:
            raise ValueError(f"{path} has {len(self.data)} tokens; need > {block_size + 1}")
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        # Windows per epoch: one fewer than fit, so that any offset in [0, block_size] fits too.
        self.windows = max(1, (len(self.data) - 1) // block_size - 1)
        self.max_offset = min(block_size, len(self.data) - 1 - self.windows * block_size)
        self._epoch: tuple[int, int, np.ndarray] | None = None  # memo of (epoch, offset, order)

    def epoch_plan(self, epoch: int) -> tuple[int, np.ndarray]:
        """(offset, order of the windows) of ``epoch``; a pure function of (seed, epoch)."""
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0x5EED])
            self._epoch = (epoch, int(rng.integers(0, self.max_offset + 1)), rng.permutation(self.windows))
        return self._epoch[1], self._epoch[2]

    def starts(self, g: int) -> np.ndarray:
        """The first token of each of batch ``g``'s windows."""
        out = np.empty(self.batch_size, dtype=np.int64)
        for b, i in enumerate(range(g * self.batch_size, (g + 1) * self.batch_size)):
            offset, order = self.epoch_plan(i // self.windows)
            out[b] = offset + order[i % self.windows] * self.block_size
        return out

    def batch(self, g: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        buf = np.stack([self.data[s : s + self.block_size + 1] for s in self.starts(g)]).astype(np.int64)
        t = torch.from_numpy(buf)  # (B, T+1)
        if device.type == "cuda":
            t = t.pin_memory().to(device, non_blocking=True)
        return t[:, :-1], t[:, 1:]  # (B, T), (B, T)
