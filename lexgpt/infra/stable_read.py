"""Read a whole input file once: regular files only, size bounded before reading, and a
file that changes while it is read is an error, never a torn read.

Callers hash and parse the *same* bytes this returns, so the version they record is the
version of what they used. A FIFO, device or directory is refused from its ``stat``,
without opening it for reading (opening a FIFO blocks until a writer appears).

>>> read_regular_file("/dev/null", max_bytes=1 << 20, what="rules file")
Traceback (most recent call last):
...
lexgpt.infra.stable_read.UnreadableFileError: /dev/null: rules file is a character device, not a regular file; replace it with a regular file
"""

from __future__ import annotations

import os
import stat

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class UnreadableFileError(ValueError):
    """A file is not a regular file, is over its size bound, cannot be opened, or changed while read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when a file is rewritten in place or replaced: device, inode, size, mtime."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def read_regular_file(path: str | os.PathLike[str], max_bytes: int, what: str = "file") -> bytes:
    """All bytes of ``path``, read once; UnreadableFileError (one line, naming ``path``) if it
    is not a regular file, is larger than ``max_bytes``, or changed while it was read.

    ``what`` names the file's role in messages ("episode file", "cleaning rules file").
    Symlinks are followed: a link to a regular file is that file.
    """
    name = os.fspath(path)
    retry = "run again when the writer has finished"
    try:
        before = os.stat(name)
    except OSError as err:
        raise UnreadableFileError(name, f"cannot read {what}: {err.strerror or err}") from None
    if not stat.S_ISREG(before.st_mode):
        raise UnreadableFileError(name, f"{what} is {_kind(before.st_mode)}, not a regular file; "
                                        "replace it with a regular file")
    if before.st_size > max_bytes:
        raise UnreadableFileError(name, f"{what} is {before.st_size} bytes, larger than the "
                                        f"{max_bytes}-byte bound, so it was not read; replace or remove it")
    try:
        # O_NONBLOCK: if a FIFO was swapped in after the stat, opening it must not hang.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise UnreadableFileError(name, f"cannot read {what}: {err.strerror or err}") from None
    with open(fd, "rb") as fh:
        opened = os.fstat(fd)
        if _identity(opened) != _identity(before):
            raise UnreadableFileError(name, f"{what} changed while it was read; {retry}")
        data = fh.read(max_bytes + 1)
        after = os.fstat(fd)
    try:
        now = os.stat(name)
    except OSError:
        now = None  # removed or renamed away mid-read
    if len(data) != before.st_size or _identity(after) != _identity(before) or now is None \
            or _identity(now) != _identity(before):
        raise UnreadableFileError(name, f"{what} changed while it was read; {retry}")
    return data
