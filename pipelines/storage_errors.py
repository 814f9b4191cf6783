"""A store that cannot be written, in one line: a read-only, full or foreign home.

Dagster's and MLflow's sqlite stores fail deep inside SQLAlchemy with ~100 lines that name
neither the folder nor the fix (``unable to open database file``, ``attempt to write a
readonly database``, ``database or disk is full``). :func:`storage_error_line` recognises
those (and the plain ``OSError`` kinds: read-only file system, permission denied, no space),
works out which store and folder, asks the file system why, and says what to do::

    >>> import errno
    >>> err = OSError(errno.EROFS, "Read-only file system", "/ro/home/data_lake/x.tmp")
    >>> print(storage_error_line(err, home=Path("/ro/home"), stores={"the data lake": Path("/ro/home/data_lake")}))
    the data lake (/ro/home/data_lake) cannot be written: read-only file system. lexgpt writes its stores under its home /ro/home: use a writable copy (cp -a /ro/home NEW && LEXGPT_HOME=NEW lexgpt ...)
"""

from __future__ import annotations

import errno
import os
import sqlite3
import traceback
from pathlib import Path

_SQLITE_SIGNS = ("readonly database", "unable to open database file", "database or disk is full", "disk i/o error")
_OS_ERRNOS = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied", errno.ENOSPC: "no space left on the device",
              errno.EDQUOT: "disk quota exceeded"}


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _is_storage_error(err: BaseException) -> bool:
    for e in _chain(err):
        orig = getattr(e, "orig", None)  # SQLAlchemy wraps the driver's error
        for candidate in (e, orig):
            if isinstance(candidate, sqlite3.Error) and any(s in str(candidate).lower() for s in _SQLITE_SIGNS):
                return True
        if isinstance(e, OSError) and e.errno in _OS_ERRNOS:
            return True
    return False


def _which_store(err: BaseException, stores: dict[str, Path]) -> str:
    """The store whose code raised it (Dagster's or MLflow's), else the one a path names."""
    for e in _chain(err):
        names = getattr(e, "filename", None), getattr(e, "filename2", None)
        for label, folder in stores.items():
            if any(n and str(n).startswith(str(folder)) for n in names):
                return label
    files = " ".join(f.filename for e in _chain(err) for f in traceback.extract_tb(e.__traceback__))
    if "/dagster/" in files or "/dagster_" in files:
        return next((k for k in stores if "Dagster" in k), next(iter(stores)))
    if "/mlflow/" in files or "moved_home" in files:
        return next((k for k in stores if "MLflow" in k), next(iter(stores)))
    return next(iter(stores))


def _why(folder: Path, err: BaseException) -> str:
    probe = folder if folder.exists() else folder.parent
    try:
        st = os.statvfs(probe)
        if st.f_flag & os.ST_RDONLY:
            return "read-only file system"
        if st.f_bavail == 0:
            return "no space left on the device"
    except OSError:
        pass
    if probe.exists() and not os.access(probe, os.W_OK):
        return "permission denied"
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in _OS_ERRNOS:
            return _OS_ERRNOS[e.errno]
    return str(next(iter(_chain(err)))).splitlines()[0][:200]


def storage_error_line(err: BaseException, home: Path, stores: dict[str, Path]) -> str | None:
    """One line naming the store, its folder, the cause and the fix; None if ``err`` is not
    about a store that cannot be written."""
    if not _is_storage_error(err):
        return None
    label = _which_store(err, stores)
    folder = stores[label]
    why = _why(folder, err)
    if why.startswith(("no space", "disk quota")):
        fix = "free some space there (or point LEXGPT_HOME at a disk with room) and run it again"
    else:
        fix = f"use a writable copy (cp -a {home} NEW && LEXGPT_HOME=NEW lexgpt ...)"
    return f"{label} ({folder}) cannot be written: {why}. lexgpt writes its stores under its home {home}: {fix}"


def home_stores() -> tuple[Path, dict[str, Path]]:
    """This home and its three stores, by label."""
    from lexgpt.infra import paths

    return paths.home(), {"Dagster's store": paths.dagster_home(), "the MLflow store": paths.mlruns(),
                          "the data lake": paths.data_lake()}
