"""lexgpt.data.lexicap.scan_source: every entry of the source folder is ingested or reported."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from lexgpt.data import ingest, lexicap
from lexgpt.data.lexicap import IgnoredEntry, SourceIntegrityError, near_miss_reason, scan_source, source_fingerprint

VTT = b"WEBVTT\n\n00:00.000 --> 00:01.000\n hi\n"
OTHER = b"WEBVTT\n\n00:00.000 --> 00:01.000\n intruder\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Episodes 1 and 2, a README, the small variant of episode 1, and a small-only episode 3."""
    f = tmp_path / "vtt"
    f.mkdir()
    for name in ("episode_001_large.vtt", "episode_001_small.vtt", "episode_003_small.vtt"):
        (f / name).write_bytes(VTT)
    (f / "episode_002_large.vtt").write_bytes(VTT.replace(b" hi", b" hello"))  # two episodes never share bytes
    (f / "README.txt").write_text("about")
    return f


def reasons(scan) -> dict[str, tuple[str, bool]]:
    return {e.name: (e.reason, e.near_miss) for e in scan.ignored}


def test_every_entry_is_ingested_or_ignored_with_a_reason(folder: Path):
    scan = scan_source(folder)
    assert scan.episodes == [(1, folder / "episode_001_large.vtt"), (2, folder / "episode_002_large.vtt")]
    assert reasons(scan) == {
        "README.txt": ("not an episode file", False),
        "episode_001_small.vtt": ("other variant (small)", False),
        "episode_003_small.vtt": ("other variant (small); episode 3 has no large file", False),
    }
    assert len(scan.episodes) + len(scan.ignored) == len(os.listdir(folder))
    scan.check(allow_near_misses=False)  # nothing suspicious: no error


ARABIC_ONE = "episode_\u0660\u0660\u0661_large.vtt"  # Arabic-Indic digits: \d matches them


@pytest.mark.parametrize(
    "name, why",
    [
        (ARABIC_ONE, "non-ASCII character '\u0660'"),
        ("episode_5_large.vtt", "exactly 3 ASCII digits"),
        ("episode_0001_large.vtt", "exactly 3 ASCII digits"),
        ("episode_001_large.vtt ", "leading or trailing whitespace"),
        ("Episode_004_Large.VTT", "wrong letter case"),
        ("episode_004_medium.vtt", "unknown variant 'medium'"),
        ("episode_004_large.vtt.bak", "not named episode_NNN"),
        ("notes.vtt", "not named episode_NNN"),
    ],
)
def test_near_misses_are_reported_then_refused(folder: Path, name: str, why: str, monkeypatch):
    (folder / name).write_bytes(OTHER)
    scan = scan_source(folder)
    reason, near = reasons(scan)[name]
    assert near and why in reason
    # The Arabic-Indic file must not be read as episode 1 and merged into it.
    assert [e for e, _ in scan.episodes] == [1, 2]
    monkeypatch.delenv(lexicap.ALLOW_NEAR_MISSES_ENV, raising=False)
    with pytest.raises(SourceIntegrityError) as info:
        scan.check()
    message = str(info.value)
    assert "\n" not in message and repr(name) in message and lexicap.ALLOW_NEAR_MISSES_ENV in message
    with pytest.raises(SourceIntegrityError):
        ingest.ingest_folder(folder, workers=1)
    # Opting out (argument or environment) ingests the real episodes and keeps the report.
    scan.check(allow_near_misses=True)
    monkeypatch.setenv(lexicap.ALLOW_NEAR_MISSES_ENV, "1")
    result = ingest.ingest_folder(folder, workers=1)
    assert result.cues["text"].to_pylist() == [" hi", " hello"]
    assert IgnoredEntry(name, reason, True) in result.scan.ignored


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.symlink_to(p.parent / "gone.vtt"), "is a broken symlink"),
        (lambda p: os.mkfifo(p), "is not a regular file"),
    ],
)
def test_entries_named_like_an_episode_that_are_not_files(folder: Path, make, why: str):
    make(folder / "episode_004_large.vtt")
    scan = scan_source(folder)
    assert reasons(scan)["episode_004_large.vtt"] == (why, True)
    assert [e for e, _ in scan.episodes] == [1, 2]
    with pytest.raises(SourceIntegrityError, match=why):
        scan.check(allow_near_misses=False)


def test_symlink_to_a_file_is_ingested(folder: Path, tmp_path: Path):
    target = tmp_path / "elsewhere.vtt"
    target.write_bytes(VTT)
    (folder / "episode_004_large.vtt").symlink_to(target)
    assert [e for e, _ in scan_source(folder).episodes] == [1, 2, 4]


def test_hidden_files_are_ignored_but_listed(folder: Path):
    (folder / ".episode_001_large.vtt.swp").write_bytes(b"x")
    assert reasons(scan_source(folder))[".episode_001_large.vtt.swp"] == ("not an episode file", False)


def test_two_files_for_one_episode_name_both(folder: Path, monkeypatch):
    # The strict pattern cannot produce duplicates; a looser one (as before the fix) can.
    monkeypatch.setattr(lexicap, "EPISODE_FILE_RE", re.compile(r"episode_(\d+)_(large|small)\.vtt"))
    (folder / "episode_1_large.vtt").write_bytes(OTHER)
    with pytest.raises(SourceIntegrityError, match=r"two files for episode 1: 'episode_001_large\.vtt' and 'episode_1_large\.vtt'"):
        scan_source(folder)


def test_near_misses_change_the_fingerprint_other_files_do_not(folder: Path):
    base = source_fingerprint(folder)
    (folder / "notes.txt").write_text("x")
    assert source_fingerprint(folder) == base
    (folder / "episode_7_large.vtt").write_bytes(VTT)
    assert source_fingerprint(folder) != base


def test_near_miss_reason_leaves_other_names_alone():
    for name in ("README.md", "data.zip", "episode_001_large.vtt", "episode_001_small.vtt", ".DS_Store"):
        assert near_miss_reason(name) is None, name


def test_missing_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_source(tmp_path / "nope")
