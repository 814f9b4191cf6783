"""Token shards: split rule, manifest, memory-mapped reads, exact decode."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lexgpt.infra.hashing import sha256_file
from lexgpt.tokenizer.bpe import BPETokenizer
from lexgpt.data.shards import (
    VAL_EVERY,
    ShardError,
    decode_check,
    max_token_id,
    open_shard,
    read_manifest,
    split_episodes,
    validate_shards,
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


def test_validate_shards_accepts_what_write_shards_wrote(shards, tok):
    out, manifest = shards
    assert validate_shards(out, tok.vocab_size, check_hashes=True) == manifest


def _edit_manifest(out, edit):
    m = json.loads((out / "manifest.json").read_text())
    edit(m)
    (out / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize(
    "edit, file, why",
    [
        (lambda m: m["splits"]["val"].__setitem__("file", "../../etc/passwd"), "manifest.json", "must name the file 'val.bin'"),
        (lambda m: m.__setitem__("vocab_size", 70_000), "manifest.json", "vocab_size must be an integer in [1, 65536]"),
        (lambda m: m.__setitem__("vocab_size", "320"), "manifest.json", "vocab_size must be an integer"),
        (lambda m: m.__setitem__("format", "uint32"), "manifest.json", "not a uint16-le shard manifest"),
        (lambda m: m["splits"]["train"].__setitem__("tokens", -1), "manifest.json", "tokens must be a non-negative integer"),
        (lambda m: m["splits"]["train"].__setitem__("episodes", ["1"]), "manifest.json", "episodes must be a list of integer ids"),
        (lambda m: m["splits"].pop("val"), "manifest.json", "must hold 'train' and 'val'"),
        (lambda m: m["splits"]["train"].__setitem__("tokens", 5), "train.bin", "tokens, but manifest.json says 5"),
        (lambda m: m.__setitem__("vocab_size", 100), "train.bin", "is not below vocab_size 100"),
    ],
)
def test_validate_shards_names_the_file_and_the_problem(shards, tok, edit, file, why):
    out, _ = shards
    _edit_manifest(out, edit)
    with pytest.raises(ShardError) as info:
        validate_shards(out)
    assert str(info.value).startswith(f"{out / file}: ") and why in str(info.value)


def test_validate_shards_catches_tampered_shards(shards, tok):
    out, _ = shards
    with pytest.raises(ShardError, match="shards were made for vocab_size 320, the tokenizer has 999"):
        validate_shards(out, 999)
    data = (out / "val.bin").read_bytes()
    (out / "val.bin").write_bytes(data + b"\x01")  # odd length: not whole uint16 ids
    with pytest.raises(ShardError, match=r"val\.bin: \d+ bytes is not a whole number"):
        validate_shards(out)
    (out / "val.bin").write_bytes(data[:-2] + b"\xff\xff")  # id 65535: beyond the vocab
    with pytest.raises(ShardError, match="token id 65535 is not below vocab_size 320"):
        validate_shards(out)
    (out / "val.bin").write_bytes(data[:-2] + bytes([data[-2] ^ 1, data[-1]]))  # same length, other id
    validate_shards(out)
    with pytest.raises(ShardError, match="SHA-256 differs"):
        validate_shards(out, check_hashes=True)
    (out / "val.bin").unlink()
    with pytest.raises(ShardError, match=r"val\.bin: missing"):
        validate_shards(out)


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"\xff"])
def test_read_manifest_refuses_what_is_not_a_manifest(tmp_path, raw):
    (tmp_path / "manifest.json").write_bytes(raw)
    with pytest.raises(ShardError, match=f"^{tmp_path / 'manifest.json'}: "):
        read_manifest(tmp_path)
    with pytest.raises(ShardError, match="cannot read"):
        read_manifest(tmp_path / "nowhere")
