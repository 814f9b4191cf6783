"""Token shards: split rule, manifest, memory-mapped reads, exact decode."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lexgpt.bpe import BPETokenizer
from lexgpt.hashing import sha256_file
from lexgpt.shards import (
    VAL_EVERY,
    decode_check,
    max_token_id,
    open_shard,
    read_manifest,
    split_episodes,
    write_shards,
)

from conftest import WORDS

EPISODES = [1, 2, 3, 20, 21, 40, 41]


def episode_text(e: int) -> str:
    rng = random.Random(e)
    return f"Episode {e}: " + " ".join(rng.choice(WORDS) for _ in range(300)) + " café 👍"


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.train([episode_text(e) for e in EPISODES], vocab_size=320)


@pytest.fixture()
def shards(tmp_path, tok):
    texts = [episode_text(e) for e in EPISODES]
    manifest = write_shards(EPISODES[::-1], texts[::-1], tok, tmp_path)  # input order must not matter
    return tmp_path, manifest


def test_split_rule():
    assert VAL_EVERY == 20
    assert split_episodes(EPISODES) == ([1, 2, 3, 21, 41], [20, 40])
    assert split_episodes([5, 3, 9]) == ([3, 5], [9])  # none divisible: the highest is val
    with pytest.raises(ValueError, match="at least 2 episodes"):
        split_episodes([7])
    with pytest.raises(ValueError, match="duplicate"):
        split_episodes([1, 1, 2])


def test_manifest(shards, tok):
    out, manifest = shards
    assert read_manifest(out) == manifest
    assert manifest["format"] == "uint16-le"
    assert manifest["vocab_size"] == tok.vocab_size
    assert manifest["tokenizer_sha256"] == tok.sha256
    assert "20" in manifest["val_rule"]
    for name, eps in (("train", [1, 2, 3, 21, 41]), ("val", [20, 40])):
        info = manifest["splits"][name]
        assert info["file"] == f"{name}.bin" and info["episodes"] == eps
        assert info["chars"] == sum(len(episode_text(e)) for e in eps)
        assert info["tokens"] == sum(len(tok.encode(episode_text(e))) + 1 for e in eps)
        assert info["sha256"] == sha256_file(out / info["file"])


def test_memmap_reads_back(shards, tok):
    out, _ = shards
    val = open_shard(out / "val.bin")
    assert isinstance(val, np.memmap) and val.dtype == np.dtype("<u2") and not val.flags.writeable
    expected = [tok.eot_id, *tok.encode(episode_text(20)), tok.eot_id, *tok.encode(episode_text(40))]
    assert val.tolist() == expected
    assert (out / "val.bin").stat().st_size == 2 * len(expected)


def test_decode_check(shards, tok):
    out, _ = shards
    texts = {e: episode_text(e) for e in EPISODES}
    assert decode_check(out, tok, texts) == []
    assert decode_check(out, tok, texts, split="train") == []
    assert decode_check(out, tok, {**texts, 40: "something else"}) == [40]


def test_ids_below_vocab_size(shards, tok):
    out, _ = shards
    for name in ("train", "val"):
        assert 0 <= max_token_id(out / f"{name}.bin") < tok.vocab_size


def test_rejects_vocab_over_uint16(tmp_path, monkeypatch, tok):
    monkeypatch.setattr(BPETokenizer, "vocab_size", property(lambda self: 70_000))
    with pytest.raises(ValueError, match="uint16"):
        write_shards([1, 2], ["a", "b"], tok, tmp_path)
