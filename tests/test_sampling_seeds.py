"""Answers depend on the question (issue 19.4): the sampler's seed is ``seed_for(seed,
prompt)``, so two questions asked with one seed draw different random numbers, the same
question and seed give the same text, and a chat never repeats a turn's seed."""

from __future__ import annotations

import io

import pytest
import torch

from lexgpt.generation.generate import qa_prompt
from lexgpt.generation.generation_params import MAX_SEED, GenerationParams, seed_for
from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.tokenizer.bpe import BPETokenizer

QUESTIONS = ["Is there free will?", "What is love?"]


def test_seed_for_is_deterministic_per_prompt_and_seed():
    assert seed_for(0, QUESTIONS[0]) == seed_for(0, QUESTIONS[0])
    seeds = {seed_for(s, q) for s in (0, 1, MAX_SEED) for q in [*QUESTIONS, "", "\udcff"]}
    assert len(seeds) == 12 and all(0 <= s <= MAX_SEED for s in seeds)
    assert seed_for(None, QUESTIONS[0]) is None
    # the separator keeps (seed, prompt) pairs apart: "1" + "2..." is not "12" + "..."
    assert seed_for(1, "2x") != seed_for(12, "x")


@pytest.fixture(scope="module")
def blind_model():
    """A model that ignores its input (every weight 0: uniform logits), so what it samples
    depends on the sampler's seed alone."""
    tok = BPETokenizer.train(["I think that love is the answer to free will."] * 20, 280)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model, tok


def test_different_prompts_with_one_seed_continue_differently(blind_model):
    from lexgpt.generation.generate import complete

    model, tok = blind_model
    same_seed = [complete(model, tok, q, GenerationParams(max_new_tokens=12, seed=7)) for q in QUESTIONS]
    assert same_seed[0] == same_seed[1]  # the old behaviour: the seed alone decides
    mixed = [complete(model, tok, q, GenerationParams(max_new_tokens=12, seed=seed_for(7, q))) for q in QUESTIONS]
    assert mixed[0] != mixed[1]


@pytest.fixture
def commands(blind_model, monkeypatch, capsys):
    """``lexgpt ARGS...`` in process on ``blind_model``, with ``stdin``; returns stdout."""
    from pipelines.cli import main

    monkeypatch.setattr("pipelines.model_commands.load_for_generation", lambda uri: blind_model)

    def run(*args: str, stdin: str = "") -> str:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        assert main(list(args)) == 0
        return capsys.readouterr().out

    return run


def test_generate_mixes_the_prompt_into_the_seed(commands):
    short = ("--max-new-tokens", "12")
    texts = [commands("generate", q, *short).removeprefix(q) for q in QUESTIONS]
    assert texts[0] != texts[1]
    assert commands("generate", QUESTIONS[0], *short).removeprefix(QUESTIONS[0]) == texts[0]
    # sample 2 of --num-samples is what --seed 1 draws alone
    both = commands("generate", QUESTIONS[0], "--num-samples", "2", *short)
    second = both.split("--- sample 2/2 (seed 1) ---\n")[1]
    assert second == commands("generate", QUESTIONS[0], "--seed", "1", *short)


def answers(out: str) -> list[str]:
    return [chunk for chunk in out.split("you> ") if chunk.startswith("lex> ")]


def test_chat_never_repeats_an_answer_yet_replays_the_same(commands):
    session = f"{QUESTIONS[0]}\n{QUESTIONS[0]}\n"
    first = answers(commands("chat", "--max-new-tokens", "12", stdin=session))
    assert len(first) == 2 and first[0] != first[1]  # the same question, a new answer
    assert answers(commands("chat", "--max-new-tokens", "12", stdin=session)) == first
    assert answers(commands("chat", "--max-new-tokens", "12", "--seed", "5", stdin=session)) != first
    # the first turn answers as `lexgpt generate QUESTION --qa` does: the prompt is in the seed
    generated = commands("generate", QUESTIONS[0], "--qa", "--max-new-tokens", "12")
    assert first[0] == "lex> I think that " + generated.removeprefix(qa_prompt(QUESTIONS[0]))


def test_compare_seeds_each_prompt_like_generate(commands, monkeypatch, tmp_path):
    import lexgpt.generation.generate

    seen = []
    real = lexgpt.generation.generate.complete

    def spy(model, tok, prompt, params, **kw):
        seen.append((prompt, params.seed))
        return real(model, tok, prompt, params, **kw)

    monkeypatch.setattr("lexgpt.generation.generate.complete", spy)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(QUESTIONS) + "\n")
    out = commands("compare", "a", "b", "--prompts", str(prompts), "--seed", "3", "--max-new-tokens", "4")
    assert seen == [(q, seed_for(3, q)) for q in QUESTIONS for _ in "AB"]
    assert all(f"{q}  (seed 3)" in out for q in QUESTIONS)
