import polars as pl
import pyarrow as pa
import pytest

from lexgpt.data.cleaning import Rule, RuleError
from lexgpt.data.corpus import CorpusValidationError, MixedEpisodeError, build_corpus, content_hash, validate


def cues(rows):
    cols = ["episode_id", "cue_index", "start_s", "end_s", "text", "source_file"]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})


RULES = [Rule("ws", r"\s+", " "), Rule("strip", r"^ | $", "")]


def test_cues_are_joined_per_episode_in_cue_order():
    table = cues([
        (2, 1, 2.0, 3.0, "world", "episode_002_large.vtt"),
        (1, 0, 0.0, 1.5, " Hello\nthere ", "episode_001_large.vtt"),
        (2, 0, 0.0, 2.0, "Hi", "episode_002_large.vtt"),
    ])
    df, hits = build_corpus(table, RULES)
    assert df.rows() == [
        (1, "Hello there", 11, 1, 1.5, "episode_001_large.vtt"),
        (2, "Hi world", 8, 2, 3.0, "episode_002_large.vtt"),
    ]
    assert hits == {"ws": 2, "strip": 0}  # cues are stripped before joining
    validate(df)


def test_empty_text_and_duplicate_ids_are_rejected_with_failure_cases():
    df = pl.DataFrame({
        "episode_id": [1, 1], "text": ["fine", ""], "n_chars": [4, 0], "n_cues": [1, 1],
        "duration_s": [1.0, 1.0], "source_file": ["a", "b"],
    })
    with pytest.raises(CorpusValidationError) as err:
        validate(df)
    checks = set(err.value.failure_cases["check"].to_list())
    assert "field_uniqueness" in checks
    assert any(c.startswith("str_length") for c in checks)
    assert "failed validation" in str(err.value)


def test_n_chars_must_match_text():
    df = pl.DataFrame({
        "episode_id": [1], "text": ["four"], "n_chars": [5], "n_cues": [1],
        "duration_s": [1.0], "source_file": ["a"],
    })
    with pytest.raises(CorpusValidationError, match="n_chars_matches_text"):
        validate(df)


def test_content_hash_tracks_text_only():
    base = build_corpus(cues([(1, 0, 0.0, 1.0, "a b", "x")]), RULES)[0]
    same = build_corpus(cues([(1, 0, 0.0, 9.0, "a  b", "y")]), RULES)[0]
    other = build_corpus(cues([(1, 0, 0.0, 1.0, "a c", "x")]), RULES)[0]
    assert content_hash(base) == content_hash(same)
    assert content_hash(base) != content_hash(other)


@pytest.mark.parametrize("bad", ["\x00", "\x1b", "\r", "\x85", "\ufffe", "\uffff", "\U0010ffff", "\ufdd0"])
def test_control_characters_and_noncharacters_are_rejected(bad):
    text = f"a{bad}b"
    df = pl.DataFrame({
        "episode_id": [1, 2], "text": [text, "fine\tand\nfine"], "n_chars": [len(text), 13], "n_cues": [1, 1],
        "duration_s": [1.0, 1.0], "source_file": ["a", "b"],
    })
    with pytest.raises(CorpusValidationError, match="no_control_characters") as err:
        validate(df)
    assert err.value.failure_cases["index"].to_list() == [0]  # tab and newline are fine


def test_cues_of_one_episode_from_two_files_are_refused():
    table = cues([
        (1, 0, 0.0, 1.0, "real", "episode_001_large.vtt"),
        (1, 1, 1.0, 2.0, "intruder", "episode_\u0660\u0660\u0661_large.vtt"),
        (2, 0, 0.0, 1.0, "other", "episode_002_large.vtt"),
    ])
    with pytest.raises(MixedEpisodeError, match="episode 1 has cues from 2 files .*'episode_001_large.vtt'"):
        build_corpus(table, RULES)


def test_a_rule_past_its_time_limit_names_the_episode(monkeypatch):
    import lexgpt.data.cleaning

    monkeypatch.setattr(lexgpt.data.cleaning, "RULE_TIMEOUT_S", 0.2)
    table = cues([(1, 0, 0.0, 1.0, "fine", "episode_001_large.vtt"),
                  (7, 0, 0.0, 1.0, "a" * 60 + "b", "episode_007_large.vtt")])
    with pytest.raises(RuleError, match=r"rule 'slow' ran longer than 0.2 s on episode 7 \(episode_007_large.vtt\)"):
        build_corpus(table, [Rule("slow", r"(a|aa)+$", "")])
