"""GGUF export: llama.cpp (through llama-cpp-python) runs our file with our token ids,
our logits and our greedy continuations."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import trained_looking_model

from lexgpt.data.vtt import parse_vtt
from lexgpt.tokenizer.bpe import BPETokenizer

gguf = pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

from lexgpt.modeling.gguf_export import GGUFTargetError, export_gguf

LEXICAP = Path(os.environ.get("LEXICAP_DIR", Path(__file__).resolve().parents[2] / "shared/lexicap/vtt"))

# Text the podcast never says: code, other scripts, emoji (with joiners and skin tones),
# digit runs, contractions in odd case, long whitespace runs, control characters.
FOREIGN = [
    "def f(x):\n    return x**2  # square\n\n\n\tif x != 0: print(f'{x:>10}')\r\n",
    "Привет, мир! Как дела? Ελληνικά κείμενα. עברית ועוד. العربية هنا.",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "emoji 👋🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ and 🎉🎉🎉",
    "digits 1 12 123 1234 12345678901234567890 3.14159 1,000,000 ١٢٣ ४५६",
    "I'M SURE THEY'LL say WE'VE, you'D, it'S... don't 'quote' ''",
    "spaces" + " " * 40 + "tabs\t\t\t\tnewlines\n\n\n\n\nmixed \n \n\t \r\n  end   ",
    "\x00\x01\x1f\x7f weird \u200b zero-width \u00a0nbsp \u2028 line sep \ufeff bom",
    "   leading and trailing   ",
    "",
]


def _episode_texts(n: int) -> list[str]:
    files = sorted(LEXICAP.glob("episode_*_large.vtt"))[:n]
    if not files:
        pytest.skip(f"no Lexicap VTT files in {LEXICAP}")
    return [" ".join(c.text for c in parse_vtt(f.read_bytes(), str(f))) for f in files]


@pytest.fixture(scope="module")
def real_tokenizer_and_texts() -> tuple[BPETokenizer, list[str]]:
    """A tokenizer trained on real episodes, and other episodes' text to encode."""
    texts = _episode_texts(12)
    return BPETokenizer.train(texts[:8], vocab_size=256 + 1024 + 1), texts[8:]


def small_model(tokenizer: BPETokenizer, tie: bool = False):
    return trained_looking_model(tokenizer.vocab_size, tie, block_size=128, n_head=4)


def load_llama(path: Path, vocab_only: bool = False):
    return llama_cpp.Llama(
        model_path=str(path), vocab_only=vocab_only, n_ctx=128, n_batch=128, n_threads=1, logits_all=True,
        type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, flash_attn=False, verbose=False,
    )  # fmt: skip


def llama_ids(llm, text: str) -> list[int]:
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)


def test_llama_cpp_tokenizes_exactly_like_us(tmp_path, real_tokenizer_and_texts):
    tok, held_out = real_tokenizer_and_texts
    path = export_gguf(small_model(tok), tok, tmp_path / "m.gguf")
    llm = load_llama(path, vocab_only=True)
    for text in [*held_out, *FOREIGN]:
        ours = tok.encode(text)
        assert llama_ids(llm, text) == ours, f"ids differ on {text[:60]!r}"
    assert llm.token_eos() == tok.special_tokens["<|endoftext|>"]
    whole = tok.encode(held_out[0])
    assert llm.detokenize(whole).decode("utf-8") == held_out[0]


@pytest.mark.parametrize("tie", [False, True])
def test_llama_cpp_logits_equal_ours_at_f32(tmp_path, real_tokenizer_and_texts, tie):
    tok, held_out = real_tokenizer_and_texts
    model = small_model(tok, tie)
    path = export_gguf(model, tok, tmp_path / "m.gguf", dtype="f32")
    ids = tok.encode(held_out[0])[:128]
    llm = load_llama(path)
    llm.eval(ids)
    theirs = np.asarray(llm.scores[: len(ids)], dtype=np.float32)  # (T, vocab)
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0][0].numpy()  # (T, vocab)
    assert np.abs(ours - theirs).max() <= 1e-3


def test_bf16_file_is_half_the_size_and_close(tmp_path, real_tokenizer_and_texts):
    tok, held_out = real_tokenizer_and_texts
    model = small_model(tok)
    f32 = export_gguf(model, tok, tmp_path / "f32.gguf", dtype="f32")
    bf16 = export_gguf(model, tok, tmp_path / "bf16.gguf", dtype="bf16")
    matrices = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    assert f32.stat().st_size - bf16.stat().st_size >= 2 * matrices * 0.99
    ids = tok.encode(held_out[0])[:64]
    llm = load_llama(bf16)
    llm.eval(ids)
    theirs = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0][0].numpy()
    assert (theirs.argmax(-1) == ours.argmax(-1)).mean() >= 0.9  # bf16 rounding flips a few near-ties
    assert np.abs(ours - theirs).max() <= 0.25


def test_greedy_continuations_match(tmp_path, real_tokenizer_and_texts):
    from lexgpt.generation.generate import generate

    tok, _ = real_tokenizer_and_texts
    model = small_model(tok)
    llm = load_llama(export_gguf(model, tok, tmp_path / "m.gguf"))
    for prompt in ("What is consciousness?", "I think that", "The meaning of life is"):
        ids = tok.encode(prompt)
        ours = [int(t) for t in generate(model, ids, 16, temperature=0.0)]
        llm.reset()
        theirs = []
        for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
            theirs.append(token)
            if len(theirs) == 16:
                break
        assert theirs == ours, prompt


def test_targets_that_are_not_ours_are_refused(tmp_path, real_tokenizer_and_texts):
    tok, _ = real_tokenizer_and_texts
    model = small_model(tok)
    (tmp_path / "notes.txt").write_text("mine")
    for target, words in ((tmp_path, "is a folder"), (tmp_path / "notes.txt", "not a GGUF file")):
        with pytest.raises(GGUFTargetError, match=words):
            export_gguf(model, tok, target)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    path = export_gguf(model, tok, tmp_path / "m.gguf")
    export_gguf(model, tok, path, dtype="bf16")  # a previous export is replaced
    assert gguf.GGUFReader(path).fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_BF16
