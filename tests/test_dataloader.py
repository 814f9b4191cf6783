"""The training batch sampler: memory-mapped shards, batches keyed by index, whole epochs."""

from __future__ import annotations

import numpy as np
import torch

from lexgpt.data.dataloader import BatchSampler

from test_train import write_shards


def test_sampler_is_memmapped_and_keyed_by_batch_index(tmp_path):
    write_shards(tmp_path)
    s = BatchSampler(tmp_path / "train.bin", 16, 4, seed=3)
    assert isinstance(s.data, np.memmap)
    x, y = s.batch(5, torch.device("cpu"))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(s.batch(5, torch.device("cpu"))[0], x)
    assert not torch.equal(s.batch(6, torch.device("cpu"))[0], x)


def test_an_epoch_of_batches_trains_on_every_window_once(tmp_path):
    tokens = np.arange(1000, dtype="<u2")
    tokens.tofile(tmp_path / "train.bin")
    s = BatchSampler(tmp_path / "train.bin", 16, 4, seed=3)
    per_epoch = s.windows // 4
    windows = torch.cat([s.batch(g, torch.device("cpu"))[0] for g in range(per_epoch)])
    starts = windows[:, 0].tolist()
    assert len(set(starts)) == len(starts) == per_epoch * 4  # no window twice
    assert len(np.unique(windows)) == per_epoch * 4 * 16  # and none overlaps another
    # A window is 17 tokens (x plus the next target), back to back from the epoch's offset.
    offset = min(starts)
    assert offset <= 16 and all((st - offset) % 16 == 0 for st in starts)
    assert max(starts) + 17 <= len(tokens)
    # Each epoch draws its own order (and offset); the same epoch always the same.
    assert not np.array_equal(s.epoch_plan(0)[1], s.epoch_plan(1)[1])
    assert np.array_equal(s.epoch_plan(0)[1], BatchSampler(tmp_path / "train.bin", 16, 4, seed=3).epoch_plan(0)[1])


def test_a_shard_of_one_window_still_gives_batches(tmp_path):
    np.arange(18, dtype="<u2").tofile(tmp_path / "train.bin")  # block 16: one window and one spare token
    s = BatchSampler(tmp_path / "train.bin", 16, 3, seed=0)
    for g in range(4):
        x, y = s.batch(g, torch.device("cpu"))
        assert x.shape == (3, 16) and int(y.max()) <= 17
