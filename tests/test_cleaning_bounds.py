"""Cleaning rules with bounds (issue 20, item 6): how much one rule may grow a text, a
hard per-episode cap, a whole-run time bound, and a rules file that is not a regular file."""

from __future__ import annotations

import os
import tracemalloc

import pyarrow as pa
import pytest

from lexgpt.data import cleaning
from lexgpt.data.cleaning import (
    Rule,
    RuleError,
    RunBudget,
    clean,
    load_rules,
    rules_version,
)
from lexgpt.data.corpus import build_corpus

WHERE = "episode 3 (episode_003_large.vtt)"


def one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


def test_a_rule_that_multiplies_the_text_is_stopped_naming_rule_and_episode(monkeypatch):
    calls = []
    real_apply = cleaning._apply
    monkeypatch.setattr(cleaning, "_apply", lambda *a: calls.append(a[0].name) or real_apply(*a))
    text = "It was. Then it was not. " * 100  # 200 periods
    with pytest.raises(RuleError) as err:
        clean(text, [Rule("dots", r"\.", "x" * 200_000)], where=WHERE)
    message = one_line(err)
    assert message.startswith(f"rule 'dots' would make {WHERE} longer than {4 * len(text) + 4096} characters")
    assert "at most 4x" in message and message.endswith("shorten its replacement")
    assert calls == ["dots"]


def test_the_growth_bound_stops_before_the_text_is_built():
    rule = Rule("dots", r"\.", "y" * 100_000)
    assert rule.max_growth > cleaning.MAX_RULE_GROWTH  # takes the guarded path
    text = "a." * 1000  # unguarded, this builds a 100M-character string (100 MB)
    tracemalloc.start()
    try:
        with pytest.raises(RuleError):
            clean(text, [rule], where=WHERE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20


@pytest.mark.parametrize("replacement, expected_growth", [(" - ", 4), ("...", 4), (r"\1\1", 2), ("", 1)])
def test_rules_that_cannot_pass_the_bound_take_the_fast_path(replacement, expected_growth):
    rule = Rule("r", r"(x)", replacement)
    assert rule.max_growth == expected_growth <= cleaning.MAX_RULE_GROWTH


def test_a_guarded_rule_gives_the_same_text_as_plain_substitution():
    rule = Rule("spell_out", r"\b(\w)\.(\w)\.", r"\1 dot \2 dot \g<0>")  # may grow: guarded
    assert rule.max_growth > cleaning.MAX_RULE_GROWTH
    text = "the U.S. and the U.K. agreed on e.g. this"
    assert clean(text, [rule]) == (rule.compiled.subn(rule.replacement, text)[0], {"spell_out": 3})


def test_no_episode_grows_past_the_hard_cap(monkeypatch):
    monkeypatch.setattr(cleaning, "MAX_EPISODE_CHARS", 100)
    with pytest.raises(RuleError) as err:
        clean("ab" * 40, [Rule("double", r"(a)", r"\1\1")], where=WHERE)
    assert one_line(err).startswith(f"rule 'double' would make {WHERE} longer than 100 characters (80 before it")
    assert "an episode is capped at 100" in str(err.value)
    assert clean("ab" * 40, [Rule("shrink", r"b", "")])[0] == "a" * 40  # shrinking is always fine


def cues(n_episodes: int) -> pa.Table:
    rows = [(e, 0, 0.0, 1.0, f" text of episode {e}.", f"episode_{e:03d}_large.vtt") for e in range(1, n_episodes + 1)]
    cols = ["episode_id", "cue_index", "start_s", "end_s", "text", "source_file"]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})


def test_the_whole_run_is_time_bounded_and_names_the_slowest_rule(monkeypatch):
    now = [0.0]
    cost = {"quick": 0.1, "slow": 3.0}  # seconds each rule takes per episode, on a fake clock
    real_apply = cleaning._apply

    def timed_apply(rule, *args):
        now[0] += cost[rule.name]
        return real_apply(rule, *args)

    monkeypatch.setattr(cleaning, "_apply", timed_apply)
    rules = [Rule("quick", "x", "y"), Rule("slow", "e", "E")]
    with pytest.raises(RuleError) as err:
        build_corpus(cues(10), rules, budget=RunBudget(seconds=10, clock=lambda: now[0]))
    assert one_line(err) == (
        "the cleaning rules ran longer than 10 s in all and were stopped at episode 4 "
        "(episode_004_large.vtt); the slowest rule is 'slow' (12.0 s): simplify its pattern, "
        "or raise LEXGPT_CLEANING_TIMEOUT_S"
    )
    now[0] = 0.0
    df, _ = build_corpus(cues(10), rules, budget=RunBudget(seconds=100, clock=lambda: now[0]))
    assert df.height == 10


def test_the_whole_run_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LEXGPT_CLEANING_TIMEOUT_S", "42.5")
    assert RunBudget().seconds == 42.5
    monkeypatch.delenv("LEXGPT_CLEANING_TIMEOUT_S")
    assert RunBudget().seconds == cleaning.RUN_TIMEOUT_S
    for bad in ("soon", "0", "-3", "inf"):
        monkeypatch.setenv("LEXGPT_CLEANING_TIMEOUT_S", bad)
        with pytest.raises(RuleError) as err:
            build_corpus(cues(1), [])
        assert one_line(err) == f"LEXGPT_CLEANING_TIMEOUT_S must be a positive number of seconds, got {bad!r}"


@pytest.mark.timeout(60)  # opening a FIFO for reading would block forever
def test_a_rules_file_that_is_a_fifo_is_refused_without_opening_it(tmp_path, monkeypatch):
    fifo = tmp_path / "rules.toml"
    os.mkfifo(fifo)
    monkeypatch.setenv("LEXGPT_CLEANING_RULES", str(fifo))
    with pytest.raises(RuleError) as err:
        load_rules()
    assert one_line(err) == (f"{fifo}: cleaning rules file is a FIFO (named pipe), not a regular file; replace "
                             "it with a regular file (LEXGPT_CLEANING_RULES names the file)")
    assert rules_version().startswith("unreadable:")  # the definitions still load


def test_an_oversized_rules_file_is_refused_from_its_size(tmp_path, monkeypatch):
    big = tmp_path / "rules.toml"
    with open(big, "wb") as fh:
        fh.truncate(10 << 30)  # sparse
    with pytest.raises(RuleError, match=r"larger than the 1048576-byte bound, so it was not read"):
        load_rules(big)
    assert rules_version(big).startswith("unreadable:")
