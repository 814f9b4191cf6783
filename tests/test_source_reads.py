"""Each source file is read once, bounded, regular files only (issue 20, items 1-3).

The bytes hashed are the bytes parsed; a file that changes while it is read, a file over
the size bound, a FIFO, and two episodes with the same bytes are each refused in one line
naming the file(s).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import write_episode
from lexgpt.data import ingest, lexicap, vtt
from lexgpt.data.lexicap import SourceIntegrityError, source_fingerprint
from lexgpt.infra import stable_read
from lexgpt.infra.stable_read import UnreadableFileError, read_regular_file


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    f = tmp_path / "vtt"
    f.mkdir()
    for episode in (1, 2, 3):
        write_episode(f, episode, n_cues=20)
    return f


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def writer_during_read(monkeypatch, change) -> None:
    """Run ``change(path)`` (a writer) while stable_read reads ``path``: deterministic, no threads."""
    real_open = open

    class ReadWhileWriting:
        def __init__(self, fd: int, *args, **kwargs) -> None:
            self.fh = real_open(fd, *args, **kwargs)
            self.path = Path(os.readlink(f"/proc/self/fd/{fd}"))

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.fh.close()

        def read(self, n: int = -1) -> bytes:
            data = self.fh.read(n)  # what the reader got; then the writer moves on
            change(self.path)
            return data

    monkeypatch.setattr(stable_read, "open", ReadWhileWriting, raising=False)


def test_ingestion_versions_the_bytes_it_parsed(folder: Path):
    ingested = ingest.ingest_folder(folder, workers=1)
    assert ingested.source_fingerprint() == source_fingerprint(folder)
    before = ingested.source_fingerprint()
    episode = folder / "episode_002_large.vtt"
    episode.write_bytes(episode.read_bytes() + b"\n00:59:00.000 --> 00:59:01.000\n x\n")
    assert ingest.ingest_folder(folder, workers=1).source_fingerprint() == source_fingerprint(folder) != before


@pytest.mark.parametrize("writer", [
    pytest.param(lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), id="truncated"),
    pytest.param(lambda p: p.open("ab").write(b"\n00:59:00.000 --> 00:59:01.000\n more\n"), id="appended"),
    pytest.param(lambda p: os.replace(p.with_name("spare"), p), id="replaced"),
])
def test_a_file_that_changes_while_it_is_read_is_refused(folder: Path, monkeypatch, writer):
    write_episode(folder, 9).rename(folder / "spare")
    target = folder / "episode_002_large.vtt"
    writer_during_read(monkeypatch, lambda p: writer(p) if p == target.resolve() else None)
    for read in (lambda: source_fingerprint(folder), lambda: ingest.ingest_folder(folder, workers=1)):
        with pytest.raises(UnreadableFileError) as err:
            read()
        message = one_line(err)
        assert message.startswith(f"{target}: episode file changed while it was read")
        assert "run again when the writer has finished" in message
        if "spare" not in os.listdir(folder):  # the replacement is done once; restore a spare
            write_episode(folder, 9).rename(folder / "spare")


def test_an_oversized_episode_is_refused_before_it_is_read(folder: Path, monkeypatch):
    huge = folder / "episode_004_large.vtt"
    with open(huge, "wb") as fh:
        fh.truncate(20 << 30)  # sparse: 20 GiB that take no disk
    opened = []
    real_os_open = os.open
    monkeypatch.setattr(stable_read.os, "open", lambda p, *a: opened.append(p) or real_os_open(p, *a))
    for read in (lambda: source_fingerprint(folder), lambda: ingest.ingest_folder(folder, workers=1)):
        with pytest.raises(UnreadableFileError) as err:
            read()
        assert one_line(err).startswith(f"{huge}: episode file is {20 << 30} bytes, larger than the "
                                        f"{vtt.MAX_FILE_BYTES}-byte bound, so it was not read")
    assert str(huge) not in opened


@pytest.mark.timeout(60)  # a FIFO opened for reading would block forever
def test_a_fifo_is_refused_without_being_opened(folder: Path, tmp_path: Path, monkeypatch):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFileError) as err:
        read_regular_file(fifo, 100, "episode file")
    assert one_line(err) == f"{fifo}: episode file is a FIFO (named pipe), not a regular file; replace it with a regular file"
    # Named like an episode: the scan reports it, ingestion refuses it, status does not hang.
    os.mkfifo(folder / "episode_004_large.vtt")
    monkeypatch.delenv(lexicap.ALLOW_NEAR_MISSES_ENV, raising=False)
    assert source_fingerprint(folder)  # listed as a near miss, never opened
    with pytest.raises(SourceIntegrityError, match=r"'episode_004_large\.vtt': is not a regular file"):
        ingest.ingest_folder(folder, workers=1)


@pytest.mark.timeout(60)
def test_a_fifo_swapped_in_after_the_stat_does_not_block(tmp_path: Path, monkeypatch):
    regular, fifo = tmp_path / "a.vtt", tmp_path / "pipe"
    regular.write_bytes(b"WEBVTT\n")
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(stable_read.os, "stat", lambda p: real_stat(regular if p == str(fifo) else p))
    with pytest.raises(UnreadableFileError, match="changed while it was read"):
        read_regular_file(fifo, 100)


@pytest.mark.parametrize("make_copy", [
    pytest.param(lambda src, dst: dst.write_bytes(src.read_bytes()), id="copy"),
    pytest.param(lambda src, dst: dst.symlink_to(src.name), id="symlink"),
])
def test_the_same_content_under_two_episode_ids_is_refused(folder: Path, make_copy):
    make_copy(folder / "episode_001_large.vtt", folder / "episode_020_large.vtt")
    for read in (lambda: source_fingerprint(folder), lambda: ingest.ingest_folder(folder, workers=1)):
        with pytest.raises(SourceIntegrityError) as err:
            read()
        message = one_line(err)
        assert "'episode_001_large.vtt' and 'episode_020_large.vtt' have identical contents" in message
        assert message.endswith("remove one")


def test_read_regular_file_reads_through_a_symlink_and_refuses_a_directory(tmp_path: Path):
    (tmp_path / "real.txt").write_bytes(b"abc")
    (tmp_path / "link.txt").symlink_to("real.txt")
    assert read_regular_file(tmp_path / "link.txt", 3) == b"abc"
    with pytest.raises(UnreadableFileError, match="is a directory, not a regular file"):
        read_regular_file(tmp_path, 3)
    with pytest.raises(UnreadableFileError, match="cannot read file: No such file"):
        read_regular_file(tmp_path / "missing", 3)
