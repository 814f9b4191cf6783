"""Scoring: bits per char, the sliding-window plan over val, and re-scoring raw texts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lexgpt.data import shards
from lexgpt.evaluation.loss_eval import bits_per_char, evaluate, score_texts, window_plan
from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.tokenizer.bpe import BPETokenizer

from test_train import model_config, write_shards


def test_bits_per_char_on_a_hand_checkable_case(tmp_path):
    assert bits_per_char(10 * math.log(2), 5) == pytest.approx(2.0)
    vocab, block = 16, 8
    val = (np.arange(36) * 5 % vocab).astype("<u2")  # 35 targets: 4 windows of 8 and a tail of 3
    val.tofile(tmp_path / "val.bin")
    token_chars = np.arange(vocab) % 3 + 1
    model = GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=1, n_head=1, n_embd=8))
    res = evaluate(model, tmp_path / "val.bin", block, 3, token_chars)  # zero-init head: uniform
    targets = val[1:].astype(np.int64)  # every target scored once
    assert res["val_tokens"] == 35 and res["val_fraction"] == 1.0
    assert res["val_loss"] == pytest.approx(math.log(16))
    assert res["val_bpc"] == pytest.approx(35 * 4 / token_chars[targets].sum())
    part = evaluate(model, tmp_path / "val.bin", block, 3, token_chars, max_windows=2)
    assert part["val_tokens"] == 8 + 3 and part["val_fraction"] == pytest.approx(11 / 35)


def test_every_val_target_is_scored_exactly_once():
    for n_tokens, block in [(2, 8), (9, 8), (10, 8), (1000, 64), (1001, 64), (5, 1), (1003, 64)]:
        T = min(block, n_tokens - 1)
        for stride in sorted({None, 1, max(1, T // 3), T}, key=lambda s: s or 0):
            starts, skips = window_plan(n_tokens, block, stride=stride)
            scored = [s + 1 + i for s, k in zip(starts, skips) for i in range(k, T)]
            assert sorted(scored) == list(range(1, n_tokens)), (n_tokens, block, stride)
            assert all(s + T < n_tokens for s in starts)


def test_the_sliding_eval_gives_every_target_past_the_first_window_its_context():
    # What the n-gram baseline always has (its order - 1 tokens) and generation has (its
    # recent tokens): a target is predicted from at least block - stride tokens before it.
    n_tokens, block = 1001, 64
    for stride, least in [(None, 32), (16, 48), (64, 0)]:
        starts, skips = window_plan(n_tokens, block, stride=stride)
        context = {s + 1 + i: i for s, k in zip(starts, skips) for i in range(k, block)}
        assert min(c for t, c in context.items() if t > block) >= least, stride
    with pytest.raises(ValueError, match="stride must be 1 .. 64"):
        window_plan(n_tokens, block, stride=65)


def test_quick_evals_spread_over_all_of_val():
    # A subset must not be the first episodes only (the old eval scored 45% of val, from the start).
    starts, _ = window_plan(100_001, 100, max_windows=10)
    assert len(starts) == 10 and starts[0] == 0 and starts[-1] >= 99_000
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 100


def test_eval_is_deterministic(tmp_path):
    token_chars = write_shards(tmp_path)
    model = GPT(model_config(dropout=0.2))
    a = evaluate(model, tmp_path / "val.bin", 16, 8, token_chars, max_windows=30)
    b = evaluate(model, tmp_path / "val.bin", 16, 8, token_chars, max_windows=30)
    assert a == b and model.training  # mode is restored


def test_score_texts_equals_evaluating_the_shard(tmp_path):
    # The champion gate re-scores a model on raw val texts: it must be the same number the
    # shard evaluation gives for those texts.
    texts = ["hello there, general kenobi " * 20, "you were the chosen one " * 30, "20 is val " * 10]
    tok = BPETokenizer.train(texts, vocab_size=300)
    shards.write_shards([1, 2, 20], texts, tok, tmp_path)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    direct = evaluate(model, tmp_path / "val.bin", 16, 4, tok.token_char_counts())
    assert score_texts(model, tok, [texts[2]])["val_bpc"] == pytest.approx(direct["val_bpc"], rel=1e-6)
