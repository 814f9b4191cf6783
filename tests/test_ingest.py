"""lexgpt.data.ingest: a folder of VTT files -> one exact, sorted Arrow table."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lexgpt.data.ingest import SCHEMA, FileCounts, ingest_folder, read_cues, summarize
from lexgpt.data.lexicap import SourceIntegrityError
from lexgpt.data.vtt import VTTParseError

FIXTURES = Path(__file__).parent / "fixtures" / "vtt"
FOLDER = FIXTURES / "lexicap_folder"  # holds the near miss episode_7_large.vtt: opted out below
REAL = Path(os.environ.get("LEXICAP_DIR", Path(__file__).resolve().parents[1] / "../shared/lexicap/vtt"))

EXPECTED = [
    (1, 0, 0.0, 1.5, " Hello.", "episode_001_large.vtt"),
    (1, 1, 1.5, 3.0, " World.", "episode_001_large.vtt"),
    (2, 0, 0.0, 2.0, " Only one.", "episode_002_large.vtt"),
    (10, 0, 3599.0, 3601.0, " Late\n and long.", "episode_010_large.vtt"),
    (10, 1, 3601.0, 3602.0, "", "episode_010_large.vtt"),
]


def _rows(table: pa.Table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


def test_schema_is_exact():
    assert SCHEMA.names == ["episode_id", "cue_index", "start_s", "end_s", "text", "source_file"]
    assert [str(t) for t in SCHEMA.types] == ["int32", "int32", "double", "double", "large_string", "string"]


@pytest.mark.parametrize("workers", [1, 2])  # 2 goes through the process pool
def test_fixture_folder_exact_table(workers):
    table = read_cues(FOLDER, workers=workers, allow_near_misses=True)
    assert table.schema == SCHEMA
    assert _rows(table) == EXPECTED


def test_other_variant():
    assert _rows(read_cues(FOLDER, "small", workers=1, allow_near_misses=True)) == [
        (1, 0, 0.0, 1.0, " other variant", "episode_001_small.vtt")
    ]


def test_summarize_fixture_folder():
    assert summarize(read_cues(FOLDER, workers=1, allow_near_misses=True)) == {
        "episodes": 3,
        "cues": 5,
        "hours": (3.0 + 2.0 + 3602.0) / 3600,
        "backwards_cues": 0,
    }


def test_summarize_empty_table():
    assert summarize(SCHEMA.empty_table()) == {"episodes": 0, "cues": 0, "hours": 0.0, "backwards_cues": 0}


def test_backwards_cues_are_kept_and_counted(tmp_path):
    shutil.copy(FIXTURES / "end_before_start.vtt", tmp_path / "episode_005_large.vtt")
    table = read_cues(tmp_path, workers=1)
    assert _rows(table)[-1] == (5, 1, 967.04, 949.44, " backwards", "episode_005_large.vtt")
    assert summarize(table)["backwards_cues"] == 1


def test_parse_error_crosses_the_pool_naming_file_and_line(tmp_path):
    for i in range(1, 10):  # enough files that the default uses a pool
        shutil.copy(FOLDER / "episode_001_large.vtt", tmp_path / f"episode_{i:03d}_large.vtt")
    broken = tmp_path / "episode_007_large.vtt"
    shutil.copy(FIXTURES / "truncated_timestamp.vtt", broken)
    for workers in (None, 1):
        with pytest.raises(VTTParseError) as info:
            read_cues(tmp_path, workers=workers)
        assert (info.value.path, info.value.line) == (str(broken), 6)


def test_fixture_folder_near_miss_is_refused_by_default(monkeypatch):
    monkeypatch.delenv("LEXICAP_ALLOW_NEAR_MISSES", raising=False)
    with pytest.raises(SourceIntegrityError, match="'episode_7_large.vtt': episode id must be exactly 3 ASCII digits"):
        read_cues(FOLDER, workers=1)


@pytest.mark.parametrize("body", [b"WEBVTT\n", b"WEBVTT\n\nNOTE only a comment\n", b"WEBVTT\n\nSTYLE\n::cue {}\n"])
def test_a_file_without_cues_is_an_error_naming_it(tmp_path, body):
    shutil.copy(FOLDER / "episode_001_large.vtt", tmp_path / "episode_001_large.vtt")
    empty = tmp_path / "episode_002_large.vtt"
    empty.write_bytes(body)
    with pytest.raises(VTTParseError, match="no cues") as info:
        read_cues(tmp_path, workers=1)
    assert info.value.path == str(empty)


def test_dropped_lines_are_counted_per_file(tmp_path):
    (tmp_path / "episode_001_large.vtt").write_text(
        "WEBVTT\nKind: captions\n\nNOTE made by hand\nsecond note line\n\n"
        "STYLE\n::cue { color: red }\n\n"
        "1\n00:00.000 --> 00:01.000\n first\n\n"
        "and then I said\n00:01.000 --> 00:02.000\n second\n"
    )
    shutil.copy(FOLDER / "episode_002_large.vtt", tmp_path / "episode_002_large.vtt")
    result = ingest_folder(tmp_path, workers=1)
    assert result.files[0] == FileCounts(
        "episode_001_large.vtt", cues=2, header_lines=1, identifier_lines=2, note_lines=2,
        style_lines=2, identifiers=((10, "1"), (14, "and then I said")),
    )
    assert result.dropped_lines() == {"header_lines": 1, "identifier_lines": 2, "note_lines": 2, "style_lines": 2}
    assert [f.name for f in result.files] == ["episode_001_large.vtt", "episode_002_large.vtt"]


def test_missing_folder():
    with pytest.raises(FileNotFoundError):
        read_cues(FOLDER / "nope")


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Lexicap folder {REAL} absent (set LEXICAP_DIR)")
def test_real_lexicap_folder():
    table = read_cues(REAL)
    stats = summarize(table)
    assert stats["episodes"] == 319
    assert stats["cues"] == table.num_rows == 802_299
    # Two Whisper glitches (episodes 153 and 276) end before they start; kept, not dropped.
    assert stats["backwards_cues"] == 2
    assert 700 < stats["hours"] < 710

    # Independent of the parser: every line holding "-->" is exactly one row.
    counts = table.group_by("source_file").aggregate([("cue_index", "count"), ("cue_index", "max")])
    by_file = {r["source_file"]: r for r in counts.to_pylist()}
    for path in sorted(REAL.glob("episode_*_large.vtt")):
        arrows = sum(b"-->" in line for line in path.read_bytes().splitlines())
        assert by_file[path.name]["cue_index_count"] == arrows, path.name
        assert by_file[path.name]["cue_index_max"] == arrows - 1, path.name

    keys = pc.add(pc.multiply(table["episode_id"].cast(pa.int64()), 1 << 32), table["cue_index"].cast(pa.int64()))
    assert pc.all(pc.greater(keys[1:], keys[:-1])).as_py()
