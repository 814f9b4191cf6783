"""The count-based baseline: an interpolated modified Kneser-Ney token n-gram model.

A neural model that cannot beat counting has learnt little, so the pipeline fits this
model on the train shard and scores it on the val shard, in the same bits per character.

The model (Chen & Goodman 1998, "An empirical study of smoothing techniques", section
3.5; the estimator KenLM builds) mixes every order from ``order`` down to a uniform
distribution over the vocabulary::

    p_k(w | h) = (c_k(h w) - D_k(c_k(h w))) / c_k(h .)  +  gamma_k(h) * p_{k-1}(w | h')
    gamma_k(h) = (D_k1 N1(h .) + D_k2 N2(h .) + D_k3+ N3+(h .)) / c_k(h .)
    p_0(w)     = 1 / vocab_size

``h`` is the last k-1 tokens, ``h'`` drops its first token, ``c_k(h .)`` sums
``c_k(h w)`` over ``w`` and ``N1(h .)`` counts the ``w`` with ``c_k(h w) == 1`` (``N2``
likewise, ``N3+`` counts 3 or more). A context never seen with a follower
(``c_k(h .) == 0``) uses ``p_{k-1}`` unchanged. The counts ``c_k``: the top order uses
raw counts; every lower order uses *continuation* counts, the number of distinct tokens
seen just before the k-gram (a token that follows many contexts is a likely novel
follower; one seen often but always after the same word is not). Each order has three
discounts from its own count-of-counts ``n1..n4`` (how many k-grams have count 1..4):
``Y = n1 / (n1 + 2 n2)``, ``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y n3/n2``, ``D3+ = 3 - 4Y n4/n3``.
Where those are undefined or outside ``(0, r]`` (tiny corpora), the order falls back to
KenLM's ``--discount_fallback`` values 0.5, 1.0, 1.5. With every discount in ``(0, r]``
each ``p_k(. | h)`` sums to exactly 1 and no token gets probability 0.

Vectorised with numpy: each k-gram gets a dense id (its rank among the distinct
k-grams) and is stored as the int64 key ``id(its first k-1 tokens) * vocab_size + last
token``, so the keys of every order are sorted, fit in int64 for any corpus and vocab, and
group by context; lookups are ``np.searchsorted``. Fitting Lexicap's 12M train tokens at
order 5 and scoring its 586k val tokens takes about 9 CPU seconds and 1.1 GB.

>>> lm = KneserNey.fit([0, 1, 2, 0, 1, 2, 0, 1, 3], vocab_size=5, order=3)
>>> p = lm.distribution([0, 1])       # what follows "0 1"?
>>> round(float(p.sum()), 12), int(p.argmax()), bool(p.min() > 0)
(1.0, 2, True)
>>> [round(float(x), 3) for x in np.exp(lm.log_probs([0, 1, 2, 4]))]  # 4: never seen
[0.225, 0.613, 0.515, 0.025]
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback default
# Fitting holds about ten int64 arrays the size of the train shard (~85 bytes a token at
# order 5; Lexicap's 12M tokens peak at 1.1 GB), so this bounds it near 4 GB.
MAX_FIT_TOKENS = 50_000_000
SCORE_CHUNK = 1 << 20  # val tokens scored per step (bounds scoring memory)
_PACK_BITS = 63  # a key and its position packed into one int64 (sign bit unused)


def modified_kn_discounts(counts: np.ndarray) -> np.ndarray:
    """``[0, D1, D2, D3+]`` from the count-of-counts of ``counts``; index it by ``min(c, 3)``.

    >>> modified_kn_discounts(np.array([1] * 8 + [2] * 4 + [3] * 2 + [4])).round(3).tolist()
    [0.0, 0.5, 1.25, 2.0]
    """
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4))
    if min(n1, n2, n3) > 0:
        y = n1 / (n1 + 2 * n2)
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        if all(0 < dr <= r for r, dr in zip((1, 2, 3), d)):
            return np.array([0.0, *d])
    return np.array([0.0, *FALLBACK_DISCOUNTS])


@dataclass(frozen=True)
class _Order:
    """Everything order k needs: its k-grams, their counts and per-context sums."""

    keys: np.ndarray  # int64, sorted: id of the first k-1 tokens * vocab_size + last token
    counts: np.ndarray  # int64 per key: raw counts at the top order, continuation counts below
    discounts: np.ndarray  # [0, D1, D2, D3+]
    context_total: np.ndarray  # float64 per (k-1)-gram id: c_k(h .)
    context_backoff: np.ndarray  # float64 per (k-1)-gram id: D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)


def _unique(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(x, return_inverse=True, return_counts=True)`` for non-negative int64 ``x``.

    When each value and its position fit together in 63 bits, it sorts ``value << b |
    position`` (numpy's plain sort is several times faster than the argsort ``np.unique``
    needs for the inverse: 1.2 s instead of 4 s for 12M keys). Otherwise it is ``np.unique``.
    """
    pos_bits = int(x.size).bit_length()
    if x.size == 0 or int(x.max()).bit_length() + pos_bits > _PACK_BITS:
        return np.unique(x, return_inverse=True, return_counts=True)
    packed = np.sort((x << pos_bits) | np.arange(x.size, dtype=np.int64))
    values, positions = packed >> pos_bits, packed & ((1 << pos_bits) - 1)
    first = np.empty(x.size, bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, x.size))
    inverse = np.empty(x.size, np.int64)
    inverse[positions] = np.repeat(np.arange(starts.size, dtype=np.int64), counts)
    return values[starts], inverse, counts


def _lookup(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query in the sorted ``keys``, or -1 where it is absent."""
    idx = np.searchsorted(keys, query)
    idx[idx == len(keys)] = 0  # out of range: compared (and rejected) below
    found = (keys[idx] == query) if len(keys) else np.zeros(len(query), bool)
    return np.where(found, idx, -1)


class KneserNey:
    """A fitted model: ``fit`` it on a token array, then ``log_probs`` or ``distribution``."""

    def __init__(self, orders: Sequence[_Order], vocab_size: int, train_tokens: int):
        self.orders = list(orders)
        self.vocab_size = vocab_size
        self.train_tokens = train_tokens

    @property
    def order(self) -> int:
        return len(self.orders)

    @classmethod
    def fit(cls, tokens: Sequence[int] | np.ndarray, vocab_size: int, order: int = 5) -> KneserNey:
        """Count every k-gram (k = 1..order) of ``tokens`` and derive the model."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        t = _checked_tokens(tokens, vocab_size, "train tokens")
        if t.size == 0:
            raise ValueError("cannot fit an n-gram model on no tokens")
        if t.size > MAX_FIT_TOKENS:
            raise ValueError(f"{t.size:,} train tokens is more than the n-gram baseline fits "
                             f"({MAX_FIT_TOKENS:,}, ~{MAX_FIT_TOKENS * 85 / 1e9:.0f} GB of memory); "
                             "raise lexgpt.evaluation.ngram.MAX_FIT_TOKENS if the machine has the memory")
        keys, counts = [], []
        prefix_ids = np.zeros(t.size, np.int64)  # id of the k-1 tokens before each k-gram (k=1: empty)
        for k in range(1, order + 1):
            n = max(t.size - k + 1, 0)  # k-grams in the stream
            k_keys, ids, raw = _unique(prefix_ids[:n] * vocab_size + t[k - 1 :])
            if k > 1:  # continuation counts of order k-1: distinct tokens seen before each (k-1)-gram
                suffix = np.empty(len(k_keys), np.int64)
                suffix[ids] = prefix_ids[1 : n + 1]  # the (k-1)-gram that ends each k-gram
                counts[-1] = np.bincount(suffix, minlength=len(keys[-1]))
            keys.append(k_keys)
            counts.append(raw)
            prefix_ids = ids.reshape(-1)
        orders = []
        for k, (k_keys, k_counts) in enumerate(zip(keys, counts), start=1):
            n_contexts = 1 if k == 1 else len(keys[k - 2])
            d = modified_kn_discounts(k_counts)
            context = k_keys // vocab_size
            orders.append(_Order(
                keys=k_keys, counts=k_counts, discounts=d,
                context_total=np.bincount(context, weights=k_counts, minlength=n_contexts).astype(np.float64),
                context_backoff=np.bincount(context, weights=d[np.minimum(k_counts, 3)],
                                            minlength=n_contexts).astype(np.float64),
            ))
        return cls(orders, vocab_size, int(t.size))

    def _mix(self, o: _Order, context: np.ndarray, target: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interpolate one order into ``p``; returns (new p, id of each context+target k-gram or -1)."""
        known = context >= 0
        gram = np.full(len(target), -1, np.int64)
        gram[known] = _lookup(o.keys, context[known] * self.vocab_size + target[known])
        count = np.zeros(len(target), np.int64)
        count[gram >= 0] = o.counts[gram[gram >= 0]]
        total = np.where(known, o.context_total[np.maximum(context, 0)], 0.0)
        use = total > 0  # a context never seen with a follower leaves p as it is
        h = context[use]
        c = count[use]
        p = p.copy()
        p[use] = (c - o.discounts[np.minimum(c, 3)] + o.context_backoff[h] * p[use]) / total[use]
        return p, gram

    def log_probs(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """``ln p(tokens[i] | up to order-1 tokens before it)`` for every i (i=0: no context)."""
        t = _checked_tokens(tokens, self.vocab_size, "scored tokens")
        if t.size == 0:
            return np.zeros(0)
        p = np.full(t.size, 1.0 / self.vocab_size)
        context = np.zeros(t.size, np.int64)  # order 1: the empty context, id 0, for every target
        for o in self.orders:
            p, gram = self._mix(o, context, t, p)
            # The next order's context for target i is the k-gram ending at i-1.
            context = np.concatenate([[-1], gram[:-1]])
        return np.log(p)

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """``p(w | context)`` for every token ``w`` of the vocabulary (uses its last order-1 tokens)."""
        ctx = _checked_tokens(context, self.vocab_size, "context")
        targets = np.arange(self.vocab_size, dtype=np.int64)
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k, o in enumerate(self.orders, start=1):
            if k - 1 > ctx.size:
                break
            h = 0  # id of the last k-1 context tokens among the (k-1)-grams, found token by token
            for j, tok in enumerate(ctx[ctx.size - (k - 1):].tolist()):
                h = int(_lookup(self.orders[j].keys, np.array([h * self.vocab_size + tok]))[0])
                if h < 0:
                    break
            if h < 0:
                break  # a context never seen cannot have a longer seen context either
            p, _ = self._mix(o, np.full(self.vocab_size, h), targets, p)
        return p


def _checked_tokens(tokens: Sequence[int] | np.ndarray, vocab_size: int, what: str) -> np.ndarray:
    """``tokens`` as int64, after checking every id is in ``[0, vocab_size)``."""
    t = np.asarray(tokens)
    _check_ids(t, vocab_size, what)
    return t.astype(np.int64)


def _check_ids(t: np.ndarray, vocab_size: int, what: str) -> None:
    if t.ndim != 1 or (t.size and not np.issubdtype(t.dtype, np.integer)):
        raise ValueError(f"{what}: expected a 1-D array of token ids, got shape {t.shape} dtype {t.dtype}")
    if t.size == 0:
        return
    low, high = int(t.min()), int(t.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{what}: token id {high if high >= vocab_size else low} outside the vocabulary "
                         f"[0, {vocab_size}) (shards and tokenizer disagree: re-materialize token_shards)")


# ----------------------------------------------------------------------- the baseline
@dataclass(frozen=True)
class BaselineScore:
    """The n-gram baseline on the val shard, in the units the neural model reports."""

    order: int
    vocab_size: int
    train_tokens: int
    val_tokens: int  # every val token is a target, scored once
    val_chars: int  # characters those targets decode to
    val_nats: float  # summed -ln p over the targets
    val_loss: float  # nats per token
    val_bpc: float  # bits per character
    fit_seconds: float
    score_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def score(model: KneserNey, tokens: np.ndarray, token_chars: np.ndarray) -> tuple[float, int, int]:
    """``(total nats, targets, characters)`` over every token of ``tokens``, in bounded chunks.

    Each chunk starts with the order-1 tokens before it as context, so the result equals
    ``-model.log_probs(tokens).sum()`` whatever the chunk size.
    """
    nats, chars, lead = 0.0, 0, model.order - 1
    for start in range(0, len(tokens), SCORE_CHUNK):
        begin = max(0, start - lead)
        piece = np.asarray(tokens[begin : start + SCORE_CHUNK], dtype=np.int64)
        nats -= float(model.log_probs(piece)[start - begin :].sum())
        chars += int(token_chars[piece[start - begin :]].sum())
    return nats, len(tokens), chars


def fit_and_score(train: np.ndarray, val: np.ndarray, token_chars: np.ndarray, order: int = 5) -> BaselineScore:
    """Fit on ``train``, score every token of ``val``; ``token_chars[i]``: characters of token i."""
    token_chars = np.asarray(token_chars, dtype=np.int64)
    vocab_size = len(token_chars)
    started = time.perf_counter()
    model = KneserNey.fit(train, vocab_size, order)
    fitted = time.perf_counter()
    _check_ids(np.asarray(val), vocab_size, "val tokens")
    nats, targets, chars = score(model, val, token_chars)
    if targets == 0 or chars == 0:
        raise ValueError(f"the val tokens hold {targets} tokens and {chars} characters: nothing to score")
    return BaselineScore(
        order=order, vocab_size=vocab_size, train_tokens=model.train_tokens, val_tokens=targets,
        val_chars=chars, val_nats=nats, val_loss=nats / targets,
        val_bpc=nats / math.log(2) / chars,  # the definition lexgpt.training.train.bits_per_char uses
        fit_seconds=fitted - started, score_seconds=time.perf_counter() - fitted,
    )


def baseline_from_shards(shard_dir: str | os.PathLike[str], token_chars: np.ndarray, order: int = 5) -> BaselineScore:
    """The baseline for a ``token_shards`` folder (``train.bin`` and ``val.bin``, uint16 LE)."""
    from lexgpt.data.shards import open_shard, read_manifest

    folder = Path(shard_dir)
    manifest = read_manifest(folder)
    if manifest["vocab_size"] != len(token_chars):
        raise ValueError(f"{folder}: shards were made with vocab {manifest['vocab_size']} but the tokenizer "
                         f"has {len(token_chars)}: re-materialize token_shards")
    shard = {}
    for split in ("train", "val"):
        path = folder / manifest["splits"][split]["file"]
        shard[split] = open_shard(path) if path.stat().st_size else np.zeros(0, np.uint16)
        _check_ids(shard[split], len(token_chars), str(path))  # names the file if an id is out of range
    return fit_and_score(shard["train"], shard["val"], token_chars, order)
