"""The byte-level BPE tokenizer: merges, round trips, persistence, HF/tiktoken agreement."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lexgpt.tokenizer.bpe import EOT, GPT4_SPLIT_PATTERN, BPETokenizer, split_text
from lexgpt.tokenizer.tokenizer_export import export_hf, to_tiktoken

from conftest import REAL_LEXICAP, WORDS

ODD_TEXTS = {
    "ascii": "Hello, world! It's 2024; we've got 12345 tokens... don't we?",
    "accents": "Café crème, naïve façade, Ångström, Øresund, Dvořák, İstanbul",
    "cjk": "人工知能と機械学習。这是一个测试。한국어 텍스트입니다.",
    "emoji": "ok 👍🏽 family 👨‍👩‍👧‍👦 flag 🇺🇦 heart ❤️ x",
    "whitespace": "a  b\t\tc\n\nd\r\ne   \n  \t f \r\n\r\n   ",
    "empty": "",
    "eot": f"one{EOT}two <|endoftext|> three",
}


def corpus(n_words: int = 6000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(n_words // 10)) for _ in range(10)]
    return texts + list(ODD_TEXTS.values())


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.train(corpus(), vocab_size=400)


def test_wikipedia_example():
    # aa (count 4) first; then 'ab' and (aa, a) tie at 2 and the smaller pair (97, 98)
    # wins; then (aa, ab) -> 'aaab'.
    tok = BPETokenizer.train(["aaabdaaabac"], vocab_size=256 + 3, special_tokens=())
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert [tok.vocab[i] for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.special_tokens == {} and tok.vocab_size == 259


def test_vocab_size_includes_specials(tok):
    assert tok.vocab_size == 400 == len(tok.vocab)
    assert len(tok.merges) == 400 - 256 - 1
    assert tok.special_tokens == {EOT: 399} and tok.eot_id == 399
    assert len(set(tok.vocab.values())) == tok.vocab_size  # every token's bytes are unique


@pytest.mark.parametrize("name", ODD_TEXTS)
def test_round_trip(tok, name):
    text = ODD_TEXTS[name]
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_special_tokens_never_come_from_text(tok):
    ids = tok.encode(ODD_TEXTS["eot"] + EOT * 3)
    assert tok.eot_id not in ids
    assert tok.decode([tok.eot_id]) == EOT


def test_decode_replaces_only_broken_utf8(tok):
    ids = list("é".encode())  # two byte tokens
    assert tok.decode(ids) == "é"
    assert tok.decode(ids[:1]) == "\ufffd"


def test_token_char_counts(tok):
    counts = tok.token_char_counts()
    assert counts.shape == (tok.vocab_size,)
    assert counts[tok.eot_id] == 0
    for text in ODD_TEXTS.values():
        assert counts[tok.encode(text)].sum() == len(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u3000aZ9'sS!.-_é中²👍\u200d")), max_size=40))
def test_split_equals_gpt4_regex(text):
    assert split_text(text) == regex.findall(GPT4_SPLIT_PATTERN, text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_round_trip_any_text(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_training_is_deterministic(tmp_path):
    texts = corpus(seed=1)
    a = BPETokenizer.train(texts, vocab_size=350, workers=1)
    b = BPETokenizer.train(texts, vocab_size=350, workers=2)
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_save_load(tok, tmp_path):
    tok.save(tmp_path / "tok.json")
    doc = json.loads((tmp_path / "tok.json").read_text())
    assert doc["version"] == 1 and doc["pattern"] == GPT4_SPLIT_PATTERN
    assert doc["special_tokens"] == {EOT: 399} and len(doc["merges"]) == 143
    back = BPETokenizer.load(tmp_path / "tok.json")
    assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
    for text in corpus(seed=2):
        assert back.encode(text) == tok.encode(text)
    assert back.sha256 == tok.sha256


def _tampered(tok, tmp_path, edit) -> Path:
    tok.save(tmp_path / "tok.json")
    doc = json.loads((tmp_path / "tok.json").read_text())
    edit(doc)
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    return tmp_path / "bad.json"


@pytest.mark.parametrize(
    "edit, why",
    [
        (lambda d: d["merges"].__setitem__(0, [97, 1.0]), "merge 0 is [97, 1.0]; expected a pair of integer ids"),
        (lambda d: d["merges"].__setitem__(0, [True, 97]), "expected a pair of integer ids"),
        (lambda d: d["merges"].__setitem__(0, [97, 98, 99]), "expected a pair of integer ids"),
        (lambda d: d["merges"].__setitem__(0, "ab"), "expected a pair of integer ids"),
        (lambda d: d["merges"].__setitem__(3, [-1, 97]), "merge 3 uses id -1; ids must be in [0, 259)"),
        (lambda d: d["merges"].__setitem__(3, [97, 259]), "merge 3 uses id 259; ids must be in [0, 259)"),
        (lambda d: d.__setitem__("merges", {"a": 1}), "'merges' must be a list"),
        (lambda d: d.__setitem__("special_tokens", {EOT: "399"}), "'special_tokens' must map"),
        (lambda d: d.__setitem__("special_tokens", {EOT: 7}), "inconsistent with the merges"),
        (lambda d: d.__setitem__("vocab_size", 400.0), "'vocab_size' must be an integer"),
        (lambda d: d.__setitem__("vocab_size", 401), "inconsistent with the merges"),
        (lambda d: d.__setitem__("merges", [[97, 98], [97, 98]]), "two tokens have the same bytes"),
        # Each merge doubles a token: 40 of them would ask for 2**40 bytes.
        (lambda d: d.__setitem__("merges", [[97, 97]] + [[256 + k, 256 + k] for k in range(40)]), "would take more than"),
    ],
)
def test_load_validates_every_field_and_names_the_file(tok, tmp_path, edit, why):
    from lexgpt.tokenizer.tokenizer_file import TokenizerFileError

    path = _tampered(tok, tmp_path, edit)
    with pytest.raises(TokenizerFileError) as info:
        BPETokenizer.load(path)
    assert str(info.value).startswith(f"{path}: ") and why in str(info.value)


@pytest.mark.parametrize("raw", [b"", b"{not json", b"\xff\xfe", b"[1, 2]", b"[" * 100_000])
def test_load_refuses_what_is_not_a_tokenizer(tmp_path, raw):
    from lexgpt.tokenizer.tokenizer_file import TokenizerFileError

    path = tmp_path / "tok.json"
    path.write_bytes(raw)
    with pytest.raises(TokenizerFileError, match=f"^{path}: "):
        BPETokenizer.load(path)
    with pytest.raises(TokenizerFileError, match="cannot read"):
        BPETokenizer.load(tmp_path / "missing.json")


def test_load_rejects_other_versions(tok, tmp_path):
    tok.save(tmp_path / "tok.json")
    doc = json.loads((tmp_path / "tok.json").read_text())
    doc["version"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="version"):
        BPETokenizer.load(tmp_path / "bad.json")


def test_encode_batch_matches_encode(tok):
    texts = corpus(seed=3)
    expected = [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts) == expected
    fresh = BPETokenizer(tok.merges)  # cold cache in each worker process
    assert fresh.encode_batch(texts, workers=2) == expected
    assert tok.encode_batch([]) == []


def real_texts(n: int = 3) -> list[str]:
    """A few real Lexicap episodes if they are around, else the synthetic corpus."""
    files = sorted(REAL_LEXICAP.glob("*.vtt"))[:n] if REAL_LEXICAP.is_dir() else []
    texts = []
    for f in files:
        lines = [s.strip() for s in f.read_text(encoding="utf-8").splitlines()]
        texts.append(" ".join(s for s in lines if s and s != "WEBVTT" and "-->" not in s)[:60_000])
    return texts or corpus(seed=4)


def test_hf_export_encodes_identically(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    # Without the special token's text: HF matches specials in text, ours encodes text as text.
    texts = [t for t in real_texts() + list(ODD_TEXTS.values()) if EOT not in t]
    ours = BPETokenizer.train(texts, vocab_size=600)
    export_hf(ours, tmp_path / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert [e.ids for e in hf.encode_batch(texts)] == ours.encode_batch(texts)
    assert hf.decode(ours.encode(texts[0])) == texts[0]


def test_tiktoken_with_our_merges(tok):
    pytest.importorskip("tiktoken")
    enc = to_tiktoken(tok)
    for text in corpus(seed=5):
        assert enc.encode_ordinary(text) == tok.encode(text)


def test_pool_workers_do_not_inherit_the_callers_signal_handlers(capfd):
    """A Dagster run installs SIGTERM/SIGINT handlers; pool shutdown must not run them."""
    import signal

    def dagster_like(signum, frame):
        raise RuntimeError("inherited handler ran in a pool worker")

    tok = BPETokenizer.train(["hello world"] * 4, 270)
    previous = signal.signal(signal.SIGTERM, dagster_like), signal.signal(signal.SIGINT, dagster_like)
    try:
        for _ in range(3):  # terminate() races with idle workers: give it a few chances
            assert len(tok.encode_arrays(["hello there world"] * 8, workers=2)) == 8
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert "inherited handler ran" not in capfd.readouterr().err
