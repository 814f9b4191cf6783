import polars as pl
import pyarrow as pa
import pytest

from lexgpt.cleaning import Rule
from lexgpt.corpus import CorpusValidationError, build_corpus, content_hash, validate


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
