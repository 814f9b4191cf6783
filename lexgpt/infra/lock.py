"""One writer at a time: an exclusive lock file per home folder.

``lexgpt run`` / ``refresh`` and every asset materialization (from the terminal or the
Dagster UI) hold it while they write. A second writer fails at once, in one line naming
the holder's PID and command, instead of training the same model twice.

The lock is an ``flock`` on ``<home>/.lexgpt-writer.lock``. The kernel drops it when its
process dies, even by ``kill -9``, so it can never be left stale. The file's *content*
does survive: the holder writes its PID, its command and the Dagster runs it starts, and
clears it on a clean release. So a new holder that finds a record left behind knows that
the writer before it was killed, and which runs it abandoned (:attr:`HomeLock.abandoned`).

The lock is re-entrant within a process: ``lexgpt refresh`` holds it, and the assets it
materializes in-process take it again without blocking themselves.

>>> import tempfile, pathlib
>>> home = pathlib.Path(tempfile.mkdtemp())
>>> with hold(home, "lexgpt refresh") as lock:
...     lock.record_run("run-1")
...     holder(home)["command"], holder(home)["runs"]
('lexgpt refresh', ['run-1'])
>>> holder(home) is None  # released cleanly: nothing left behind
True
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_NAME = ".lexgpt-writer.lock"
_MAX_RECORD_BYTES = 1 << 20  # a record is a few hundred bytes; never read an unbounded file


class LockBusy(RuntimeError):
    """Another process is writing to the same home."""


@dataclass
class HomeLock:
    path: Path
    fd: int
    record: dict[str, Any]
    abandoned: dict[str, Any] | None = None  # what a killed previous holder left behind
    depth: int = 1

    def record_run(self, run_id: str) -> None:
        """Note a Dagster run this writer starts, so a later writer can fail it if we die."""
        if run_id not in self.record["runs"]:
            self.record["runs"].append(run_id)
            _write(self.fd, self.record)


_held: dict[Path, HomeLock] = {}  # this process's locks, by lock file path


def lock_path(home: str | os.PathLike[str]) -> Path:
    return Path(home).resolve() / LOCK_NAME


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(fd: int) -> dict[str, Any] | None:
    raw = os.pread(fd, _MAX_RECORD_BYTES, 0)
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return {"pid": 0, "command": "unknown (unreadable lock record)", "runs": []}
    return record if isinstance(record, dict) else None


def _write(fd: int, record: dict[str, Any]) -> None:
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def holder(home: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of the current (or last, if it was killed) holder, or None."""
    try:
        fd = os.open(lock_path(home), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "an unknown process"
    since = record.get("started")
    when = f", since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else ""
    return f"PID {record.get('pid')} ({record.get('command')}{when})"


@contextlib.contextmanager
def hold(home: str | os.PathLike[str], command: str) -> Iterator[HomeLock]:
    """Hold the home's writer lock for the duration of the block; raise :class:`LockBusy` at once
    if another process holds it."""
    path = lock_path(home)
    held = _held.get(path)
    if held is not None:  # re-entry from the same process (refresh -> in-process asset run)
        held.depth += 1
        try:
            yield held
        finally:
            held.depth -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        current = _read(fd)
        os.close(fd)
        raise LockBusy(f"another lexgpt writer is running in {path.parent}: {describe(current)}; "
                       "wait for it to finish, or stop it") from None
    left_behind = _read(fd)
    if left_behind is not None and left_behind.get("pid") == os.getpid():
        left_behind = None  # our own record (a fork's parent released without clearing)
    lock = HomeLock(path, fd, {"pid": os.getpid(), "command": command, "started": time.time(), "runs": []},
                    abandoned=left_behind)
    try:
        _write(fd, lock.record)
        _held[path] = lock
        yield lock
    finally:
        _held.pop(path, None)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a clean release leaves no record behind
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def current(home: str | os.PathLike[str]) -> HomeLock | None:
    """The lock this process holds on ``home``, if any."""
    return _held.get(lock_path(home))
