"""Byte-level BPE tokenizer: train, encode, decode, save, load.

Text is first cut into *chunks* with the GPT-4 (cl100k) split pattern (words with their
leading space, runs of 1-3 digits, punctuation, whitespace). Each chunk is UTF-8 encoded
and merged independently, so a token never spans two words. Merges are learned on bytes,
so any Unicode string round-trips exactly.

Ids: 0..255 are the raw bytes, 256..256+n_merges-1 the merges in the order they were
learned (a merge's id is also its rank), then the special tokens. ``vocab_size`` counts
all of them, specials included.

>>> tok = BPETokenizer.train(["aaabdaaabac"], vocab_size=256 + 3, special_tokens=())
>>> tok.merges                      # 'aa' -> 256, 'ab' -> 257, 'aa'+'ab' -> 258
[(97, 97), (97, 98), (256, 257)]
>>> tok.encode("aaabdaaabac")       # 'aaab' 'd' 'aaab' 'a' 'c'
[258, 100, 258, 97, 99]
>>> tok.decode(tok.encode("héllo wörld 👋"))
'héllo wörld 👋'

Training tie rule: the pair with the highest count wins; among equal counts, the
smallest pair of ids ``(a, b)`` (compared as a tuple). A pair whose merged bytes already
are a token is never merged (it would give two ids for the same bytes, which neither
HF ``tokenizers`` nor ``tiktoken`` can represent).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import regex

from lexgpt.infra.atomic import write_text
from lexgpt.infra.hashing import sha256_bytes
from lexgpt.infra.workers import fork_pool
from lexgpt.tokenizer.bpe_merges import learn_merges
from lexgpt.tokenizer.tokenizer_file import FORMAT_VERSION, TokenizerFileError, read_tokenizer_file

GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
EOT = "<|endoftext|>"

_SPLIT = regex.compile(GPT4_SPLIT_PATTERN)

# The same pattern for pure-ASCII text, spelled for the stdlib ``re`` engine (Python
# 3.11+ has possessive quantifiers), which runs it ~2.5x faster than ``regex``. On ASCII
# \p{L} is [A-Za-z], \p{N} is [0-9] and regex's \s is [\t\n\v\f\r ] (it excludes
# \x1c-\x1f, unlike re's \s, hence the explicit class). Tests check both agree.
_W = r"\t\n\v\f\r "
_ASCII_SPLIT = re.compile(
    rf"""'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?+[A-Za-z]+|[0-9]{{1,3}}| ?[^{_W}A-Za-z0-9]++[\r\n]*"""
    rf"""|[{_W}]*[\r\n]|[{_W}]+(?![^{_W}])|[{_W}]+"""
)
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_SPACE = regex.compile(r"\s")

_CACHE_MAX = 1 << 20  # chunks; bounds memory on adversarial input

_PARALLEL_MIN_CHARS = 2_000_000  # below this a process pool costs more than it saves


def _is_cut(text: str, i: int) -> bool:
    # No chunk of the pattern contains "non-space, then U+0020" (chunks are a word with
    # one leading char, digits, punctuation, or all whitespace), and the pattern only
    # looks ahead, so the text can be split at such a point and each side split alone.
    return text[i] == " " and _SPACE.match(text, i - 1) is None


def split_text(text: str) -> list[str]:
    """Cut ``text`` into chunks with the GPT-4 pattern; ``"".join`` of them is ``text``.

    >>> split_text("Hello world's  123456 ok!!\\n")
    ['Hello', ' world', "'s", ' ', ' ', '123', '456', ' ok', '!!\\n']

    ASCII stretches go through the fast ``re`` spelling; only the words around non-ASCII
    characters go through ``regex``.
    """
    if text.isascii():
        return _ASCII_SPLIT.findall(text)
    out: list[str] = []
    pos, n = 0, len(text)
    while m := _NON_ASCII.search(text, pos):
        lo, hi = m.start(), m.end()
        while lo > pos and not _is_cut(text, lo):
            lo -= 1
        while hi < n and not _is_cut(text, hi):
            hi += 1
        out += _ASCII_SPLIT.findall(text, pos, lo)
        out += _SPLIT.findall(text[lo:hi])
        pos = hi
    out += _ASCII_SPLIT.findall(text, pos)
    return out


def _merge(ids: list[int], a: int, b: int, new: int) -> list[int]:
    """Replace every non-overlapping (a, b), left to right, by ``new``."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if ids[i] == a and i + 1 < n and ids[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


# ---------------------------------------------------------------------------- workers
# Pool workers get their inputs through these globals: with the fork start method they
# are inherited for free instead of being pickled per task.
_WORKER_TEXTS: Sequence[str] = ()
_WORKER_TOK: BPETokenizer | None = None


def _count_range(bounds: tuple[int, int]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in _WORKER_TEXTS[bounds[0] : bounds[1]]:
        counts.update(split_text(text))
    return counts


def _encode_range(bounds: tuple[int, int]) -> list[np.ndarray]:
    assert _WORKER_TOK is not None
    return [_WORKER_TOK._encode_array(t) for t in _WORKER_TEXTS[bounds[0] : bounds[1]]]


def _ranges(texts: Sequence[str], parts: int) -> list[tuple[int, int]]:
    """Split ``texts`` into ``parts`` contiguous index ranges of about equal total length."""
    sizes = np.cumsum([len(t) for t in texts])
    cuts = np.searchsorted(sizes, sizes[-1] * np.arange(1, parts) / parts) + 1
    edges = [0, *sorted(set(int(c) for c in cuts if 0 < c < len(texts))), len(texts)]
    return list(zip(edges, edges[1:]))


def _pool_map(fn, texts: Sequence[str], workers: int, tok: BPETokenizer | None = None) -> list:
    """Run ``fn`` over about ``2 * workers`` ranges of ``texts`` in a fork pool, in order."""
    global _WORKER_TEXTS, _WORKER_TOK
    _WORKER_TEXTS, _WORKER_TOK = texts, tok
    try:
        # A forked worker must not run the parent's (Dagster's) handlers: lexgpt.infra.workers.
        with fork_pool(workers) as pool:
            return pool.map(fn, _ranges(texts, 2 * workers), chunksize=1)
    finally:
        _WORKER_TEXTS, _WORKER_TOK = (), None


def _workers(workers: int | None, texts: Sequence[str]) -> int:
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        if sum(len(t) for t in texts) < _PARALLEL_MIN_CHARS:
            workers = 1
    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        workers = 1  # no fork start method (Windows), or already inside a pool worker
    return max(1, min(workers, len(texts)))


# -------------------------------------------------------------------------- tokenizer
class BPETokenizer:
    """A trained byte-level BPE: ``merges[k] = (a, b)`` makes token ``256 + k``."""

    pattern = GPT4_SPLIT_PATTERN

    def __init__(self, merges: Iterable[tuple[int, int]], special_tokens: Iterable[str] = (EOT,)):
        self.merges: list[tuple[int, int]] = [(int(a), int(b)) for a, b in merges]
        vocab = [bytes([i]) for i in range(256)]
        for k, (a, b) in enumerate(self.merges):
            if not (0 <= a < 256 + k and 0 <= b < 256 + k):
                raise ValueError(f"merge {k} uses a token that does not exist yet: {(a, b)}")
            vocab.append(vocab[a] + vocab[b])
        if len(set(vocab)) != len(vocab):
            raise ValueError("two tokens have the same bytes")
        specials = list(special_tokens)
        if len(set(specials)) != len(specials):
            raise ValueError(f"duplicate special tokens: {specials}")
        self.special_tokens: dict[str, int] = {s: len(vocab) + i for i, s in enumerate(specials)}
        vocab += [s.encode("utf-8") for s in specials]
        self.vocab: dict[int, bytes] = dict(enumerate(vocab))
        self._bytes = vocab  # list: faster than the dict in decode
        # A merge's new id is 256 + its rank, so the id itself orders pairs by rank.
        self._ranks: dict[tuple[int, int], int] = {p: 256 + k for k, p in enumerate(self.merges)}
        self._cache: dict[str, tuple[int, ...]] = {}

    # --------------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        """Bytes + merges + special tokens."""
        return len(self._bytes)

    @property
    def eot_id(self) -> int:
        """The id of ``<|endoftext|>``, which separates documents."""
        try:
            return self.special_tokens[EOT]
        except KeyError:
            raise KeyError(f"this tokenizer has no {EOT} special token") from None

    def token_char_counts(self) -> np.ndarray:
        """How many characters each token contributes to decoded text, as ``int64[vocab_size]``.

        A character starts at every UTF-8 byte that is not a continuation byte
        (``0b10xxxxxx``), so a token holding the first byte of 'é' counts 1 and the token
        holding its second byte 0. Special tokens count 0: they are not text.

        >>> BPETokenizer([]).token_char_counts()[[ord("a"), 0xC3, 0xA9]].tolist()
        [1, 1, 0]
        """
        specials = set(self.special_tokens.values())
        return np.array(
            [0 if i in specials else sum((c & 0xC0) != 0x80 for c in b) for i, b in enumerate(self._bytes)],
            dtype=np.int64,
        )

    @property
    def sha256(self) -> str:
        """Hash of the saved file's bytes: equal tokenizers have equal hashes."""
        return sha256_bytes(self._dumps().encode("utf-8"))

    # ----------------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        special_tokens: Sequence[str] = (EOT,),
        workers: int | None = None,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``texts``.

        Counting works on unique chunks with their counts (Lexicap's ~38M characters hold
        only ~56k distinct chunks). After each merge only the chunks that contain the
        merged pair are rewritten and their pair counts adjusted; a lazy max-heap finds
        the next pair. ``workers`` processes split the texts for counting (default: all
        cores, or 1 for small inputs). If the texts run out of pairs, fewer merges are
        learned and ``vocab_size`` is smaller than asked.
        """
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(f"vocab_size {vocab_size} < 256 bytes + {len(special_tokens)} special tokens")
        texts = list(texts)
        n_workers = _workers(workers, texts)
        if n_workers == 1:
            counts: Counter[str] = Counter()
            for text in texts:
                counts.update(split_text(text))
        else:
            counts = Counter()
            for part in _pool_map(_count_range, texts, n_workers):
                counts.update(part)
        return cls(learn_merges(counts, n_merges), special_tokens)

    # ----------------------------------------------------------------------- encoding
    def _encode_chunk(self, chunk: str) -> tuple[int, ...]:
        """Apply merges to one chunk, lowest rank first (the order training learned them)."""
        ids = list(chunk.encode("utf-8"))
        ranks = self._ranks
        get = ranks.get
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: get(p, 1 << 30))
            new = get(pair)
            if new is None:
                break
            ids = _merge(ids, pair[0], pair[1], new)
        return tuple(ids)

    def _chunk_ids(self, chunks: list[str]) -> Iterable[tuple[int, ...]]:
        cache = self._cache
        missing = set(chunks).difference(cache)
        if missing:
            if len(cache) + len(missing) > _CACHE_MAX:
                cache.clear()
                missing = set(chunks)
            for c in missing:
                cache[c] = self._encode_chunk(c)
        return map(cache.__getitem__, chunks)

    def encode(self, text: str) -> list[int]:
        """Encode ordinary text. Special-token strings in it are plain bytes, never specials.

        >>> tok = BPETokenizer([])
        >>> tok.encode("hi<|endoftext|>")[:3]
        [104, 105, 60]
        """
        return list(chain.from_iterable(self._chunk_ids(split_text(text))))

    def _encode_array(self, text: str) -> np.ndarray:
        ids = chain.from_iterable(self._chunk_ids(split_text(text)))
        return np.fromiter(ids, dtype=np.int32)

    def encode_arrays(self, texts: Sequence[str], *, workers: int | None = None) -> list[np.ndarray]:
        """Like :meth:`encode_batch` but returns ``int32`` arrays (cheaper to pass between processes)."""
        texts = list(texts)
        if not texts:
            return []
        n_workers = _workers(workers, texts)
        if n_workers == 1:
            return [self._encode_array(t) for t in texts]
        # Each worker warms its own chunk cache; a chunk's merges cost ~10 us once,
        # cheaper than shipping a shared cache around.
        return list(chain.from_iterable(_pool_map(_encode_range, texts, n_workers, self)))

    def encode_batch(self, texts: Sequence[str], *, workers: int | None = None) -> list[list[int]]:
        """``[encode(t) for t in texts]``, spread over processes for large inputs."""
        return [a.tolist() for a in self.encode_arrays(texts, workers=workers)]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text. A special id decodes to its string (e.g. ``<|endoftext|>``).

        Bytes that are not valid UTF-8 (a slice that cuts a character in half) become
        U+FFFD; any full encoding decodes exactly.

        >>> tok = BPETokenizer([])
        >>> tok.decode(tok.encode("é")), tok.decode(tok.encode("é")[:1])
        ('é', '�')
        """
        b = self._bytes
        return b"".join([b[i] for i in ids]).decode("utf-8", errors="replace")

    # ----------------------------------------------------------------- save and load
    def _dumps(self) -> str:
        # One merge per line keeps the file readable and diffable; json.dumps would put
        # every number on its own line.
        head = {
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "vocab_size": self.vocab_size,
            "special_tokens": self.special_tokens,
        }
        lines = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in head.items()]
        merges = ",\n".join(f"    [{a}, {b}]" for a, b in self.merges)
        return "{\n" + "\n".join(lines) + '\n  "merges": [\n' + merges + ("\n" if merges else "") + "  ]\n}\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as JSON (atomically; equal tokenizers give equal bytes)."""
        write_text(path, self._dumps())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """Read a saved tokenizer; a file that is not exactly what ``save`` writes raises
        TokenizerFileError naming it (no partially valid tokenizer is ever returned)."""
        d = read_tokenizer_file(Path(path), cls.pattern)
        specials = sorted(d["special_tokens"], key=d["special_tokens"].get)
        try:
            tok = cls([tuple(m) for m in d["merges"]], specials)
        except ValueError as err:
            raise TokenizerFileError(f"{path}: {err}") from None
        if tok.special_tokens != d["special_tokens"] or tok.vocab_size != d["vocab_size"]:
            raise TokenizerFileError(f"{path}: special token ids or vocab_size are inconsistent with the merges")
        return tok

    # Exports to HF ``tokenizers`` and ``tiktoken``: lexgpt.tokenizer.tokenizer_export (which imports us).

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, special_tokens={self.special_tokens})"
