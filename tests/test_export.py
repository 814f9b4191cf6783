"""Hugging Face export: transformers loads our weights and tokenizer unchanged."""

from __future__ import annotations

import pytest
import torch
from conftest import trained_looking_model

from lexgpt.modeling.export import export_hf
from lexgpt.tokenizer.bpe import BPETokenizer

transformers = pytest.importorskip("transformers")

TEXT = ("Lex: What do you think about the meaning of life? I think it's love, and, you know, "
        "the 1,000 small things we do every day... 👋 Ça va?")  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    corpus = [TEXT * 3, "the quick brown fox jumps over the lazy dog " * 20]
    return BPETokenizer.train(corpus, vocab_size=256 + 60 + 1)


@pytest.mark.parametrize("tie", [False, True])
def test_transformers_runs_our_weights_with_equal_logits(tmp_path, tokenizer, tie):
    model = trained_looking_model(tokenizer.vocab_size, tie)
    export_hf(model, tokenizer, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert type(hf).__name__ == "Qwen3ForCausalLM"
    ids = torch.tensor([tokenizer.encode(TEXT)[:64]])
    with torch.no_grad():
        ours, _ = model(ids)
        theirs = hf(ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_transformers_tokenizer_gives_identical_ids(tmp_path, tokenizer):
    export_hf(trained_looking_model(tokenizer.vocab_size), tokenizer, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in (TEXT, "  two  spaces\nand lines\r\n", "numbers 1234567 and émoji 🎉🎉", ""):
        assert hf_tok.encode(text, add_special_tokens=False) == tokenizer.encode(text)
        assert hf_tok.decode(tokenizer.encode(text)) == text
    assert hf_tok.eos_token == "<|endoftext|>"


def test_hf_generate_continues_like_our_greedy_decoding(tmp_path, tokenizer):
    from lexgpt.generation.generate import generate

    model = trained_looking_model(tokenizer.vocab_size)
    export_hf(model, tokenizer, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    prompt = tokenizer.encode("the quick brown")
    ours = [int(t) for t in generate(model, prompt, 12, temperature=0.0)]
    theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                         pad_token_id=0)[0, len(prompt):].tolist()  # fmt: skip
    assert ours == theirs
