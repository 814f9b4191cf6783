"""Sampling: KV cache == full recompute (inside and past the window), filters, eos, streaming."""

from __future__ import annotations

import inspect

import pytest
import torch

from lexgpt.generate import _filter_logits, generate, qa_prompt, sample_next
from lexgpt.model import GPT, GPTConfig

BLOCK = 16


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32)
    # float64: cached and recomputed logits then agree far below any argmax tie.
    return GPT(cfg).double().eval()


PROMPT = [1, 5, 9, 2, 7]


@pytest.mark.parametrize("keep", [None, 4, BLOCK - 1])
def test_cache_equals_full_recompute_greedy_past_the_window(model, keep):
    n = 3 * BLOCK + 5  # crosses the window several times
    cached = list(generate(model, PROMPT, n, temperature=0, keep=keep))
    full = list(generate(model, PROMPT, n, temperature=0, keep=keep, use_cache=False))
    assert cached == full and len(cached) == n


@pytest.mark.parametrize("kw", [{}, {"top_k": 5}, {"top_p": 0.8}, {"temperature": 0.7, "top_k": 10, "top_p": 0.9}])
def test_cache_equals_full_recompute_seeded_sampling(model, kw):
    n = 2 * BLOCK + 3
    cached = list(generate(model, PROMPT, n, seed=123, **kw))
    full = list(generate(model, PROMPT, n, seed=123, use_cache=False, **kw))
    assert cached == full


def test_long_prompt_is_cropped(model):
    prompt = list(range(1, 40))  # longer than block_size
    cached = list(generate(model, prompt, 10, temperature=0))
    full = list(generate(model, prompt, 10, temperature=0, use_cache=False))
    assert cached == full and len(cached) == 10


def test_seed_is_reproducible_and_leaves_global_rng_alone(model):
    torch.manual_seed(7)
    before = torch.get_rng_state()
    a = list(generate(model, PROMPT, 20, seed=1))
    assert torch.equal(torch.get_rng_state(), before)
    assert a == list(generate(model, PROMPT, 20, seed=1))
    assert a != list(generate(model, PROMPT, 20, seed=2))


def test_top_k_1_and_tiny_top_p_are_greedy(model):
    greedy = list(generate(model, PROMPT, 20, temperature=0))
    assert list(generate(model, PROMPT, 20, top_k=1, seed=3)) == greedy
    assert list(generate(model, PROMPT, 20, top_p=1e-9, seed=3)) == greedy


def test_filters_on_a_hand_case():
    logits = torch.log(torch.tensor([0.05, 0.5, 0.15, 0.3]))
    kept = lambda out: torch.isfinite(out).nonzero().flatten().tolist()  # noqa: E731
    assert kept(_filter_logits(logits, 2, None)) == [1, 3]
    assert kept(_filter_logits(logits, None, 0.7)) == [1, 3]  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    assert kept(_filter_logits(logits, None, 0.5)) == [1]
    assert kept(_filter_logits(logits, None, 0.85)) == [1, 2, 3]
    assert kept(_filter_logits(logits, None, 1.0)) == [0, 1, 2, 3]
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, top_k=2, generator=g) for _ in range(200)}
    assert draws == {1, 3}
    assert sample_next(logits, temperature=0) == 1


def test_eos_stops_without_being_yielded(model):
    greedy = list(generate(model, PROMPT, 30, temperature=0))
    eos = greedy[4]
    first = greedy.index(eos)
    assert list(generate(model, PROMPT, 30, temperature=0, eos_id=eos)) == greedy[:first]


def test_streams_and_restores_training_mode(model):
    model.train()
    gen = generate(model, PROMPT, 5, temperature=0)
    assert inspect.isgenerator(gen)
    assert isinstance(next(gen), int)
    assert not model.training  # sampling runs without dropout
    gen.close()
    assert model.training
    model.eval()


def test_bad_arguments(model):
    with pytest.raises(ValueError):
        next(generate(model, [], 3))
    with pytest.raises(ValueError):
        next(generate(model, PROMPT, 3, keep=BLOCK))


def test_qa_prompt():
    p = qa_prompt("  What is consciousness?\n")
    assert "Lex Fridman podcast" in p
    assert "What is consciousness? That's such an interesting question." in p
    assert p.endswith("I think that ")
