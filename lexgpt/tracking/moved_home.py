"""A copied or moved home keeps working: its MLflow store is re-pointed at its own artifacts.

MLflow's sqlite store records artifact locations as absolute ``file://`` URIs (it resolves
relative ones when it stores them), so after ``cp -a orig moved`` the store in ``moved``
still sends new runs to ``orig/mlruns/artifacts`` and loads models from there. When the
store lives in this home, :func:`repoint_artifacts` (called by
:func:`lexgpt.tracking.runs.configure`) rewrites those URIs from the old home's
``mlruns/artifacts`` to this home's, once, in one transaction::

    moved/mlruns/mlflow.db: file:///orig/mlruns/artifacts/lexgpt/...
                         -> file:///moved/mlruns/artifacts/lexgpt/...

A store copied *without* its artifacts (the old folder is there, this home's is not) is
refused in one line that says what to copy where.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_STATE

from lexgpt.infra import paths

log = logging.getLogger(__name__)

ROOT_SUFFIX = "/mlruns/artifacts"
# The columns where MLflow keeps artifact URIs (a column a store's schema lacks is skipped).
ARTIFACT_URI_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
    ("workspaces", "default_artifact_root"),
)
_settled: set[tuple[Path, str]] = set()  # (store, artifact root) pairs found consistent


class MovedStoreError(MlflowException):
    """A store whose artifacts are in another home and not in this one."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_STATE)


def _sqlite_file(tracking_uri: str) -> Path | None:
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(db) if db and db != ":memory:" else None


def _uri_path(uri: str) -> Path:
    from mlflow.utils.file_utils import local_file_uri_to_path

    return Path(local_file_uri_to_path(uri))


def _old_roots(con: sqlite3.Connection, new_root: str) -> set[str]:
    """Artifact roots (``file:///…/mlruns/artifacts``) of this store's experiments that are
    not this home's."""
    try:
        rows = con.execute("SELECT artifact_location FROM experiments").fetchall()
    except sqlite3.Error:  # not an MLflow store (yet)
        return set()
    roots = set()
    for (location,) in rows:
        root = str(location or "").rsplit("/", 1)[0]
        if root.startswith("file://") and root.endswith(ROOT_SUFFIX) and root != new_root:
            roots.add(root)
    return roots


def repoint_artifacts(tracking_uri: str) -> list[str]:
    """If the sqlite store at ``tracking_uri`` lies inside this home but records artifacts
    under another home's ``mlruns/artifacts``, rewrite them to this home's; return the
    old roots rewritten (usually none)."""
    db = _sqlite_file(tracking_uri)
    home = paths.home()
    if db is None or not db.is_file() or not db.resolve().is_relative_to(home):
        return []
    new_root = paths.artifact_root().rstrip("/")
    if (db, new_root) in _settled:  # a home does not move under a running process
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=60, isolation_level=None)) as con:
        old_roots = _old_roots(con, new_root)
        if not old_roots:
            _settled.add((db, new_root))
            return []
        for old in sorted(old_roots):
            if _uri_path(old).exists() and not _uri_path(new_root).exists():
                raise MovedStoreError(
                    f"{db}: keeps its artifacts in {_uri_path(old)}, outside this home {home}; copy that "
                    f"folder to {_uri_path(new_root)} (or set LEXGPT_HOME to the home it belongs to)")
        con.execute("BEGIN IMMEDIATE")  # one writer; a second process then finds nothing to do
        try:
            old_roots = _old_roots(con, new_root)
            _rewrite(con, old_roots, new_root)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    _settled.add((db, new_root))
    for old in sorted(old_roots):
        log.warning("lexgpt: this home was copied or moved from %s; its MLflow store now keeps "
                    "artifacts in %s", _uri_path(old).parent.parent, _uri_path(new_root))
    return sorted(old_roots)


def _rewrite(con: sqlite3.Connection, old_roots: set[str], new_root: str) -> None:
    """``old_root/...`` -> ``new_root/...`` in every artifact-URI column the schema has."""
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table, column in ARTIFACT_URI_COLUMNS:
        if table not in tables or column not in {c[1] for c in con.execute(f"PRAGMA table_info({table})")}:
            continue
        for old in old_roots:
            con.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                (new_root + "/", len(old) + 2, len(old) + 1, old + "/"),
            )
