"""A home that cannot be written ends in one line naming the store, the folder and the fix."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, lexgpt_cli

from pipelines.storage_errors import storage_error_line


def test_sqlites_read_only_error_is_recognised_and_named(tmp_path):
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    sqlite3.connect(db).execute("create table t (x)").connection.commit()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as err:
        con.execute("insert into t values (1)")
    line = storage_error_line(err.value, tmp_path, {"the MLflow store": db.parent})
    assert line.startswith(f"the MLflow store ({db.parent}) cannot be written: attempt to write a readonly database")
    assert "\n" not in line and f"cp -a {tmp_path} NEW" in line


def test_other_errors_are_not_storage_errors():
    assert storage_error_line(ValueError("bad value"), Path("/h"), {"x": Path("/h/x")}) is None
    assert storage_error_line(sqlite3.OperationalError("no such table: t"), Path("/h"), {"x": Path("/h/x")}) is None


@pytest.mark.slow  # a small refresh first
def test_commands_on_a_read_only_home_say_so_in_one_line(lexgpt_home, tmp_path):
    lexgpt_cli("refresh", "--only", "raw_subtitles", timeout=600)
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(lexgpt_home), str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        env = {**os.environ, "LEXGPT_HOME": str(ro), "DAGSTER_HOME": str(ro / ".dagster"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{ro / 'mlruns' / 'mlflow.db'}",
               "LEXGPT_DATA_LAKE": str(ro / "data_lake")}
        for args in (["status"], ["refresh"]):
            proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 1
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
            assert "cannot be written: read-only file system" in lines[0] and f"cp -a {ro} NEW" in lines[0]
    finally:
        subprocess.run(["umount", str(ro)])
        shutil.rmtree(ro, ignore_errors=True)
