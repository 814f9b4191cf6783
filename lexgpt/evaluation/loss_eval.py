"""Evaluation: loss in nats per token and bits per character on the val shard.

Bits per character is the tokenizer-independent number: summed nats over the scored
targets, divided by ln 2 and by the characters those targets decode to. Two models with
different vocabularies, or a model and an n-gram, are compared on it.

The val shard is scored with a **sliding window**: windows of ``block_size`` tokens start
every ``stride`` tokens (half a window by default); the first window scores all its
targets, every later one only its last ``stride``, the ones no window before it scored. So
every target after the first window is predicted from at least ``block_size - stride``
tokens of context, as in generation, where the model always sees its recent tokens, and
as the n-gram baseline sees its ``order - 1`` tokens before every target. Back-to-back
windows (``stride = block_size``) would predict each window's first targets from almost
nothing: with context 128 that cost 0.017 bits/char (BENCHMARKS.md, "What the eval's window
boundaries cost"). A last window ends at the shard's end, so **every val target is scored
exactly once**. ``max_windows`` picks that many windows spread evenly over the whole shard
(every val episode contributes), for quick evals during training; 0 scores everything,
which is what the reported number uses.

>>> round(bits_per_char(10 * math.log(2), 5), 6)  # 10 bits over 5 characters
2.0
>>> window_plan(n_tokens=11, block_size=4)  # 10 targets; windows every 2, later ones score 2
([0, 2, 4, 6], [0, 2, 2, 2])
>>> window_plan(n_tokens=11, block_size=4, stride=4)  # back-to-back, and a tail at 6
([0, 4, 6], [0, 0, 2])
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F

from lexgpt.data.shards import open_shard


def bits_per_char(total_nats: float, total_chars: int) -> float:
    """Bits per character: summed nats over the targets / ln 2 / their characters."""
    return total_nats / math.log(2) / total_chars


def window_plan(n_tokens: int, block_size: int, max_windows: int = 0,
                stride: int | None = None) -> tuple[list[int], list[int]]:
    """Window starts and, per window, how many leading targets are context only.

    Together the windows score targets 1 .. n_tokens-1 once each (all of them when
    ``max_windows`` is 0, else an evenly spread subset of whole windows). ``stride``
    (default half a window) is how far apart windows start.
    """
    T = min(block_size, n_tokens - 1)
    if T < 1:
        raise ValueError(f"a val shard needs at least 2 tokens, got {n_tokens}")
    stride = max(1, T // 2) if stride is None else stride
    if not 1 <= stride <= T:
        raise ValueError(f"stride must be 1 .. {T} (the window), got {stride}")
    starts = list(range(0, n_tokens - T, stride))  # each window's last target: start + T <= n_tokens - 1
    skips = [0] + [T - stride] * (len(starts) - 1)
    last_scored = starts[-1] + T
    if last_scored < n_tokens - 1:  # a tail: a window ending at the shard's end scores the rest
        starts.append(n_tokens - 1 - T)
        skips.append(T - (n_tokens - 1 - last_scored))
    if max_windows and max_windows < len(starts):
        pick = np.unique(np.linspace(0, len(starts) - 1, max_windows).round().astype(int))
        starts, skips = [starts[i] for i in pick], [skips[i] for i in pick]
    return starts, skips


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    val_path: str | os.PathLike[str],
    block_size: int,
    batch_size: int,
    token_chars: np.ndarray | None,
    *,
    max_windows: int = 0,
    stride: int | None = None,
    device: torch.device | str = "cpu",
    autocast: Any = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, float]:
    """Val loss (nats/token), bpc and how much of val was scored (``val_fraction``), with
    windows ``stride`` tokens apart (:func:`window_plan`).

    Ranks split the windows and the sums are all-reduced. ``token_chars[i]`` is the number
    of characters token ``i`` decodes to (``BPETokenizer.token_char_counts()``).
    """
    device = torch.device(device)
    data = open_shard(val_path)
    starts, skips = window_plan(len(data), block_size, max_windows, stride)
    T = min(block_size, len(data) - 1)
    mine = list(range(rank, len(starts), world_size))
    chars_of = None if token_chars is None else torch.as_tensor(np.asarray(token_chars), dtype=torch.float64)
    sums = torch.zeros(3, dtype=torch.float64)  # nats, targets, chars
    was_training = model.training
    model.eval()
    for i in range(0, len(mine), batch_size):
        idx = mine[i : i + batch_size]
        buf = torch.from_numpy(np.stack([data[starts[j] : starts[j] + T + 1] for j in idx]).astype(np.int64))
        x, y = buf[:, :-1], buf[:, 1:].clone()  # (B, T)
        for row, j in enumerate(idx):
            y[row, : skips[j]] = -1  # context only: scored by an earlier window
        with autocast or contextlib.nullcontext():
            logits, _ = model(x.to(device))  # (B, T, vocab)
        nats = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.to(device).view(-1),
                               ignore_index=-1, reduction="sum")  # fmt: skip
        scored = y >= 0
        sums[0] += nats.double().cpu()
        sums[1] += scored.sum()
        if chars_of is not None:
            sums[2] += chars_of[y.clamp(min=0)][scored].sum()
    model.train(was_training)
    if world_size > 1:
        out = sums.to(device) if dist.get_backend() == "nccl" else sums.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        sums = out.cpu()
    nats, count, chars = sums.tolist()
    return {
        "val_loss": nats / count,
        "val_bpc": bits_per_char(nats, int(chars)) if chars > 0 else float("nan"),
        "val_tokens": count,
        "val_fraction": count / (len(data) - 1),
    }


def score_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: list[str],
    *,
    batch_size: int = 16,
    autocast: Any = None,
) -> dict[str, float]:
    """Score ``model`` on raw ``texts`` laid out as a val shard (``<|endoftext|>`` before
    each text), with its own ``tokenizer``: how the champion is re-scored on new val text.

    Bits per character do not depend on the tokenizer, so the result compares with any
    other model's bpc on the same texts.
    """
    import tempfile

    from lexgpt.data.shards import TOKEN_DTYPE

    eot = tokenizer.eot_id
    ids = np.concatenate([np.array([eot, *tokenizer.encode(t)], dtype=TOKEN_DTYPE) for t in texts])
    with tempfile.TemporaryDirectory(prefix="lexgpt-score-") as tmp:
        path = os.path.join(tmp, "val.bin")
        ids.tofile(path)
        return evaluate(model, path, model.config.block_size, batch_size, tokenizer.token_char_counts(),
                        autocast=autocast)  # fmt: skip
