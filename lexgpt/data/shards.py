"""Token shards: the corpus as two flat uint16 files, ``train.bin`` and ``val.bin``.

Each split is its episodes in id order, each preceded by ``<|endoftext|>`` (as in
GPT-2's data prep), so a sequence that crosses an episode boundary sees the separator.
Files are raw little-endian uint16 (vocab must fit: <= 65535 ids) and are read back
as a memory map, never copied whole into RAM. ``manifest.json`` lists what went where.

Reading back trusts nothing: :func:`read_manifest` checks every field it returns,
:func:`open_shard` the file's length, and :func:`validate_shards` that the shards match
the manifest (length, optionally hash) and that every id is below the vocab size. Each
problem is a ShardError naming the file.

Validation split: the episodes whose id is divisible by ``VAL_EVERY`` (20), a fixed set
that does not move when episodes are added. A corpus with none of those (a tiny test
corpus) uses its highest-numbered episode instead.

>>> split_episodes([1, 2, 20, 21, 40])
([1, 2, 21], [20, 40])
>>> split_episodes([3, 1, 2])
([1, 2], [3])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lexgpt.infra.atomic import atomic_path, write_json
from lexgpt.infra.hashing import sha256_file
from lexgpt.tokenizer.bpe import BPETokenizer

VAL_EVERY = 20
VAL_RULE = (
    f"val = episodes with id % {VAL_EVERY} == 0; if there are none, the highest episode id; "
    "train = the rest"
)
FORMAT = "uint16-le"
TOKEN_DTYPE = np.dtype("<u2")  # the one token dtype: shards, sampler, evaluation
MANIFEST = "manifest.json"
_MAX_IDS = np.iinfo(TOKEN_DTYPE).max + 1
_MAX_MANIFEST_BYTES = 16 << 20


def split_episodes(episode_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(train_ids, val_ids)``, each sorted. Raises if either split would be empty."""
    ids = sorted(int(e) for e in episode_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate episode ids")
    if len(ids) < 2:
        raise ValueError(f"a val split needs at least 2 episodes (one stays for train), got {len(ids)}")
    val = [e for e in ids if e % VAL_EVERY == 0] or [ids[-1]]
    train = [e for e in ids if e not in set(val)]
    if not train:
        raise ValueError(f"every episode id is divisible by {VAL_EVERY}: nothing left for train")
    return train, val


def write_shards(
    episode_ids: Sequence[int],
    texts: Sequence[str],
    tokenizer: BPETokenizer,
    out_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
) -> dict:
    """Encode every episode and write ``train.bin``, ``val.bin`` and ``manifest.json``.

    ``tokens`` in the manifest counts the ``<|endoftext|>`` separators too; ``chars``
    is the episodes' text length, the denominator for bits per character.
    The manifest is written last, so its presence means the shards are complete.
    """
    if len(episode_ids) != len(texts):
        raise ValueError(f"{len(episode_ids)} episode ids but {len(texts)} texts")
    if tokenizer.vocab_size > _MAX_IDS:
        raise ValueError(f"vocab_size {tokenizer.vocab_size} does not fit in uint16 (max 65536 ids)")
    train_ids, val_ids = split_episodes(episode_ids)
    by_id = {int(e): t for e, t in zip(episode_ids, texts)}
    order = train_ids + val_ids
    arrays = dict(zip(order, tokenizer.encode_arrays([by_id[e] for e in order], workers=workers)))

    out = Path(out_dir)
    eot = np.array([tokenizer.eot_id], dtype=TOKEN_DTYPE)
    splits = {}
    for name, ids in (("train", train_ids), ("val", val_ids)):
        parts = [p for e in ids for p in (eot, arrays[e].astype(TOKEN_DTYPE))]
        tokens = np.concatenate(parts)
        path = out / f"{name}.bin"
        with atomic_path(path) as tmp:
            tokens.tofile(tmp)
        splits[name] = {
            "file": path.name,
            "episodes": ids,
            "tokens": int(tokens.size),
            "chars": sum(len(by_id[e]) for e in ids),
            "sha256": sha256_file(path),
        }
    manifest = {
        "format": FORMAT,
        "vocab_size": tokenizer.vocab_size,
        "tokenizer_sha256": tokenizer.sha256,
        "splits": splits,
        "val_rule": VAL_RULE,
    }
    write_json(out / MANIFEST, manifest)
    return manifest


class ShardError(ValueError):
    """A shard or manifest is malformed or disagrees with another; the message names the file."""


def _is_int(v: object) -> bool:
    return type(v) is int


def read_manifest(out_dir: str | os.PathLike[str]) -> dict:
    """``manifest.json``, with every field checked (ShardError names what is wrong)."""
    path = Path(out_dir) / MANIFEST

    def bad(why: str) -> ShardError:
        return ShardError(f"{path}: {why}")

    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_MANIFEST_BYTES + 1)
        if len(raw) > _MAX_MANIFEST_BYTES:
            raise bad(f"larger than {_MAX_MANIFEST_BYTES >> 20} MiB; not a manifest")
        m = json.loads(raw.decode("utf-8"))
    except OSError as err:
        raise bad(f"cannot read the manifest ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise bad(f"not valid JSON ({err})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} shard manifest")
    vocab = m.get("vocab_size")
    if not (_is_int(vocab) and 0 < vocab <= _MAX_IDS):
        raise bad(f"vocab_size must be an integer in [1, {_MAX_IDS}], got {str(vocab)[:40]}")
    splits = m.get("splits")
    if not (isinstance(splits, dict) and {"train", "val"} <= splits.keys()):
        raise bad("'splits' must hold 'train' and 'val'")
    for name in ("train", "val"):
        info = splits[name]
        if not isinstance(info, dict) or info.get("file") != f"{name}.bin":
            raise bad(f"split {name!r} must name the file '{name}.bin'")
        for key in ("tokens", "chars"):
            if not (_is_int(info.get(key)) and info[key] >= 0):
                raise bad(f"split {name!r}: {key} must be a non-negative integer")
        episodes = info.get("episodes")
        if not (isinstance(episodes, list) and all(map(_is_int, episodes))):
            raise bad(f"split {name!r}: episodes must be a list of integer ids")
        if not isinstance(info.get("sha256"), str):
            raise bad(f"split {name!r}: sha256 must be a string")
    return m


def open_shard(path: str | os.PathLike[str]) -> np.ndarray:
    """The shard as a read-only uint16 memory map (pages are read on access).

    A file whose length is not a whole number of uint16 ids is refused (ShardError).
    """
    size = os.path.getsize(path)
    if size % TOKEN_DTYPE.itemsize:
        raise ShardError(f"{path}: {size} bytes is not a whole number of {FORMAT} token ids")
    if size == 0:
        return np.empty(0, TOKEN_DTYPE)  # np.memmap refuses empty files
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")


def max_token_id(path: str | os.PathLike[str]) -> int:
    """The largest id in a shard (-1 if empty): must be < the tokenizer's vocab_size."""
    tokens = open_shard(path)
    return int(tokens.max()) if tokens.size else -1


def validate_shards(
    out_dir: str | os.PathLike[str], vocab_size: int | None = None, *, check_hashes: bool = False
) -> dict:
    """Check the shards against their manifest and return it; raise ShardError naming the file.

    Each shard must exist and hold exactly the manifest's ``tokens`` ids, all below the
    manifest's vocab size, which must equal ``vocab_size`` (the tokenizer's) if given.
    ``check_hashes`` also compares each file's SHA-256 with the manifest (reads it whole).
    """
    out = Path(out_dir)
    manifest = read_manifest(out)
    if vocab_size is not None and manifest["vocab_size"] != vocab_size:
        raise ShardError(
            f"{out / MANIFEST}: shards were made for vocab_size {manifest['vocab_size']}, "
            f"the tokenizer has {vocab_size}; rebuild the shards"
        )
    for name, info in manifest["splits"].items():
        path = out / info["file"]
        if not path.is_file():
            raise ShardError(f"{path}: missing (listed in {out / MANIFEST})")
        tokens = open_shard(path)
        if tokens.size != info["tokens"]:
            raise ShardError(f"{path}: {tokens.size} tokens, but {MANIFEST} says {info['tokens']}")
        top = int(tokens.max()) if tokens.size else -1
        if top >= manifest["vocab_size"]:
            raise ShardError(f"{path}: token id {top} is not below vocab_size {manifest['vocab_size']}")
        if check_hashes and sha256_file(path) != info["sha256"]:
            raise ShardError(f"{path}: SHA-256 differs from {MANIFEST}; the file was changed")
    return manifest


def decode_check(
    out_dir: str | os.PathLike[str],
    tokenizer: BPETokenizer,
    texts_by_episode: dict[int, str],
    split: str = "val",
) -> list[int]:
    """Episode ids of ``split`` whose decoded tokens differ from their text ([] = all good).

    The shard is cut at ``<|endoftext|>``; ordinary text never encodes to that id, so
    the pieces are exactly the episodes, in manifest order. A shard with the wrong
    number of pieces fails every episode.
    """
    info = read_manifest(out_dir)["splits"][split]
    tokens = open_shard(Path(out_dir) / info["file"])
    starts = np.flatnonzero(tokens == tokenizer.eot_id)
    episodes = info["episodes"]
    if len(starts) != len(episodes) or (len(starts) and starts[0] != 0):
        return list(episodes)
    ends = [*starts[1:], tokens.size]
    return [
        e
        for e, s, t in zip(episodes, starts, ends)
        if tokenizer.decode(tokens[s + 1 : t].tolist()) != texts_by_episode.get(e)
    ]
