"""Sampling: KV cache == full recompute (inside and past the window), filters, eos, streaming;
the one text path (``stream_text`` / ``complete``) and its validated params."""

from __future__ import annotations

import inspect

import pytest
import torch

import math
import time

from lexgpt.tokenizer.bpe import BPETokenizer
from lexgpt.generation.generate import (
    GenerationParamError,
    GenerationParams,
    _filter_logits,
    complete,
    generate,
    qa_prompt,
    sample_next,
    stream_text,
)
from lexgpt.modeling.model import GPT, GPTConfig

BLOCK = 16


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg)
    with torch.no_grad():  # zero-initialised projections would make every logit equal
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    # float64: cached and recomputed logits then agree far below any argmax tie.
    return model.double().eval()


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


# ------------------------------------------------------------------ the one text path


@pytest.fixture(scope="module")
def tok_model():
    tok = BPETokenizer.train(["I think that love is the answer. Héllo wörld, naïve café."] * 20, 290)
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    return tok, model


@pytest.mark.parametrize("values, says", [
    ({"max_new_tokens": 1e30}, "max_new_tokens must be a whole number from 0 to 1024"),
    ({"max_new_tokens": 1025}, "max_new_tokens must be a whole number from 0 to 1024"),
    ({"max_new_tokens": -1}, "max_new_tokens must be a whole number from 0 to 1024"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be a whole number"),
    ({"max_new_tokens": "many"}, "max_new_tokens must be a whole number, got 'many'"),
    ({"temperature": -0.1}, "temperature must be 0 (greedy) or a finite number >= 0.001, got -0.1"),
    ({"temperature": math.inf}, "temperature must be 0 (greedy) or a finite number >= 0.001"),
    ({"temperature": "nan"}, "temperature must be 0 (greedy) or a finite number >= 0.001"),
    ({"temperature": "1e-45"}, "temperature must be 0 (greedy) or a finite number >= 0.001, got 1e-45"),
    ({"temperature": 0.0009}, "temperature must be 0 (greedy) or a finite number >= 0.001, got 0.0009"),
    ({"top_k": -1}, "top_k must be >= 0"),
    ({"top_p": 0}, "top_p must be from 1e-06 to 1 (1 switches it off), got 0.0"),
    ({"top_p": 1.5}, "top_p must be from 1e-06 to 1"),
    ({"top_p": "nan"}, "top_p must be from 1e-06 to 1"),
    ({"top_p": 1e-45}, "top_p must be from 1e-06 to 1 (1 switches it off), got 1e-45"),
    ({"seed": -1}, "seed must be a whole number from 0 to 2**63-1"),
    ({"seed": 2**64}, "seed must be a whole number from 0 to 2**63-1"),
    ({"qa": "maybe"}, "qa must be true or false"),
    ({"max_tokens": 5}, "unknown generation parameter max_tokens"),
])  # fmt: skip
def test_bad_params_are_refused_in_one_line(values, says):
    with pytest.raises(GenerationParamError) as err:
        GenerationParams.from_mapping(values)
    assert str(err.value).startswith(says), str(err.value)
    assert "\n" not in str(err.value)


def test_the_floors_are_where_float32_sampling_breaks():
    """What the temperature and top_p floors guard against, measured on float32 logits of a
    trained model's size: far below a floor sampling fails; at the floor it is greedy."""
    from lexgpt.generation.generation_params import MIN_TEMPERATURE, MIN_TOP_P

    logits = torch.randn(300, generator=torch.Generator().manual_seed(0)) * 30
    g = torch.Generator().manual_seed(0)
    for bad in ({"temperature": 1e-45}, {"top_p": 1e-46}):  # inf / NaN probabilities
        with pytest.raises(RuntimeError, match="probability tensor contains"):
            sample_next(logits, generator=g, **bad)
    greedy = int(torch.argmax(logits))
    assert {sample_next(logits, temperature=MIN_TEMPERATURE, generator=g) for _ in range(20)} == {greedy}
    assert {sample_next(logits, top_p=MIN_TOP_P, generator=g) for _ in range(20)} == {greedy}
    assert GenerationParams(temperature=MIN_TEMPERATURE, top_p=MIN_TOP_P).temperature == MIN_TEMPERATURE


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "1.5", "1000001"])
def test_a_bad_max_new_tokens_ceiling_is_one_line_with_the_range(monkeypatch, raw):
    monkeypatch.setenv("LEXGPT_MAX_NEW_TOKENS", raw)
    with pytest.raises(GenerationParamError) as err:
        GenerationParams()
    assert str(err.value) == (f"LEXGPT_MAX_NEW_TOKENS={raw!r}: set it to a whole number from 1 to 1000000 "
                              "(or unset it for 1024)")


def test_params_convert_and_keep_defaults():
    p = GenerationParams.from_mapping({"max_new_tokens": "12", "temperature": "0", "top_p": 1,
                                       "seed": 3.0, "qa": "true", "top_k": None})
    assert p == GenerationParams(max_new_tokens=12, temperature=0.0, top_p=1.0, seed=3, qa=True)
    assert GenerationParams.from_mapping(None) == GenerationParams()


def test_ceiling_is_configurable(monkeypatch):
    monkeypatch.setenv("LEXGPT_MAX_NEW_TOKENS", "5000")
    assert GenerationParams(max_new_tokens=5000).max_new_tokens == 5000
    monkeypatch.setenv("LEXGPT_MAX_NEW_TOKENS", "8")
    with pytest.raises(GenerationParamError, match="from 0 to 8 "):
        GenerationParams(max_new_tokens=9)


def test_stream_equals_complete_equals_token_path(tok_model):
    tok, model = tok_model
    params = GenerationParams(max_new_tokens=40, seed=5)
    pieces = list(stream_text(model, tok, "I think", params))
    assert len(pieces) > 1  # streamed, not one blob
    text = complete(model, tok, "I think", params)
    assert "".join(pieces) == text
    ids = list(generate(model, tok.encode("I think"), 40, temperature=0.8, top_k=50,
                        eos_id=tok.eot_id, seed=5))
    assert text == tok.decode(ids)
    assert complete(model, tok, "I think", GenerationParams(max_new_tokens=0)) == ""


def test_qa_and_empty_prompt(tok_model):
    tok, model = tok_model
    p = GenerationParams(max_new_tokens=6, temperature=0, qa=True)
    assert complete(model, tok, "Why?", p) == tok.decode(
        list(generate(model, tok.encode(qa_prompt("Why?")), 6, temperature=0, eos_id=tok.eot_id)))
    assert isinstance(complete(model, tok, "", GenerationParams(max_new_tokens=3)), str)
    with pytest.raises(GenerationParamError, match="characters; the limit is"):
        complete(model, tok, "x" * 20_001)


def test_time_limit_stops_generation(tok_model, monkeypatch):
    tok, model = tok_model
    monkeypatch.setenv("LEXGPT_MAX_NEW_TOKENS", "100000")
    t = time.monotonic()
    text = complete(model, tok, "I", GenerationParams(max_new_tokens=100000, temperature=1.0, top_k=0),
                    time_limit_s=0.3)
    assert time.monotonic() - t < 5
    assert 0 < len(tok.encode(text)) < 100000
    assert complete(model, tok, "I", time_limit_s=0) == ""


def test_generation_thread_count_is_restored(tok_model, monkeypatch):
    tok, model = tok_model
    original = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's setting, which generation must give back
    before = torch.get_num_threads()
    seen = []
    real = torch.get_num_threads

    def spy_forward(*a, **k):
        seen.append(real())
        return orig(*a, **k)

    orig = model.forward
    monkeypatch.setattr(model, "forward", spy_forward)
    try:
        complete(model, tok, "I think", GenerationParams(max_new_tokens=3))
        assert torch.get_num_threads() == before == 2
    finally:
        torch.set_num_threads(original)
    assert seen and set(seen) == {1}


def test_the_pyfunc_uses_the_same_path_and_refuses_bad_params_with_400(tok_model, monkeypatch):
    from mlflow.exceptions import MlflowException

    from lexgpt.generation.generation_params import seed_for
    from lexgpt.tracking.mlflow_model import LexGPTModel, default_params

    tok, model = tok_model
    pyfunc = LexGPTModel()
    pyfunc.model, pyfunc.tokenizer = model, tok
    params = {"max_new_tokens": 7, "seed": 4, "qa": True}
    # each prompt draws with its own seed (seed_for), as `lexgpt generate` does
    assert pyfunc.predict(None, ["Why?", "Love"], params=params) == [
        complete(model, tok, q, GenerationParams(**{**params, "seed": seed_for(4, q)})) for q in ("Why?", "Love")]
    assert default_params() == GenerationParams().to_dict()  # the signature's defaults
    for bad, says in (({"max_new_tokens": 10**9}, "max_new_tokens must be"), ({"top_p": 0}, "top_p must be"),
                      ({"temperature": float("nan")}, "temperature must be")):
        with pytest.raises(MlflowException) as err:
            pyfunc.predict(None, ["hi"], params=bad)
        assert err.value.get_http_status_code() == 400 and says in err.value.message
    # inside the scoring server, the request timeout bounds the work of every request
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")
    monkeypatch.setenv("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "0")
    assert pyfunc.predict(None, ["hi", "there"], params={"max_new_tokens": 50}) == ["", ""]
