"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Each write goes to a temporary file in the destination folder, is flushed and fsynced,
then renamed over the destination with ``os.replace`` (atomic on POSIX). A process killed
mid-write leaves at most a hidden ``.NAME.<pid>.*.tmp`` file; the next write of the same
destination removes such a leftover at once when no process has that PID any more (its
writer is gone), and any leftover once it is older than ``STALE_TEMP_SECONDS`` (in case
the PID was reused).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_text(d / "a.txt", "hello")
>>> (d / "a.txt").read_text()
'hello'
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


STALE_TEMP_SECONDS = 600
_UMASK = os.umask(0)
os.umask(_UMASK)


class LakeWriteError(OSError):
    """A write into the data lake failed for a reason the user can act on."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def _explain(err: OSError, dest: Path) -> LakeWriteError:
    if err.errno == errno.ENOSPC:
        why = "the disk is full"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied (is the folder writable?)"
    else:
        why = err.strerror or str(err)
    return LakeWriteError(err.errno or 0, f"cannot write {dest}: {why}")


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success rename it onto ``dest``.

    Use it for writers that want a path (``pyarrow.parquet.write_table``, ``torch.save``).
    On any exception the temporary file is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(dest)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get ordinary permissions
        os.close(fd)
    except OSError as err:
        raise _explain(err, dest) from err
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, LakeWriteError):
            raise
        raise _explain(err, dest) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _writer_pid(temp: Path, dest: Path) -> int | None:
    """The PID in ``.NAME.<pid>.<random>.tmp``, or None for a name without one."""
    middle = temp.name[len(dest.name) + 2:].split(".", 1)[0]
    return int(middle) if middle.isdigit() else None


def _remove_stale_temps(dest: Path) -> None:
    """Remove leftovers of killed writers: at once if their PID is gone, else by age."""
    from lexgpt.infra.lock import pid_alive

    now = time.time()
    for leftover in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
        pid = _writer_pid(leftover, dest)
        writer_gone = pid is not None and pid != os.getpid() and not pid_alive(pid)
        with contextlib.suppress(OSError):
            if writer_gone or now - leftover.stat().st_mtime > STALE_TEMP_SECONDS:
                leftover.unlink()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text(dest: str | os.PathLike[str], text: str) -> None:
    write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as stable, human-readable JSON (sorted keys, so equal objects give equal bytes)."""
    write_text(dest, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_torch(dest: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` atomically. Saving into an open file (not a path) makes a full disk
    surface as ``OSError(ENOSPC)`` instead of torch's opaque ``RuntimeError``."""
    import torch

    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def write_parquet(dest: str | os.PathLike[str], table: Any) -> None:
    """Write a pyarrow Table (or anything with ``to_arrow()``, e.g. a polars DataFrame)."""
    import pyarrow.parquet as pq

    if hasattr(table, "to_arrow"):
        table = table.to_arrow()
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")
