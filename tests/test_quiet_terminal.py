"""A quiet terminal (issue 19.6): MLflow's INFO chatter and registration notes stay off
stderr (its warnings do not), and a reader that leaves early (``| head -1``) ends the
command without a BrokenPipeError traceback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, lexgpt_cli


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """``lexgpt ARGS`` with stdout a pipe whose reader has already gone (the moment after
    ``head -1`` exits), so the command's first write fails: deterministic, no race."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=REPO, env=os.environ.copy(), timeout=600)
    finally:
        os.close(write_end)


@pytest.fixture
def store(tmp_path: Path, monkeypatch):
    """A fresh, empty MLflow store (its tables created by the first command using it).
    MLflow's process-global URIs and logger levels are put back after the test."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LEXGPT_HOME", str(tmp_path))
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    yield uri
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


def test_lineage_is_quiet_and_stops_quietly_when_the_reader_left(store, tmp_path, monkeypatch, capsys):
    # On a fresh store MLflow creates its tables, saying so at INFO: MLflow's own switch
    # still shows that (so the check below can fail) ...
    with monkeypatch.context() as chatty_env:
        chatty_env.setenv("MLFLOW_LOGGING_LEVEL", "INFO")
        chatty_env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'chatty' / 'mlflow.db'}")
        chatty = lexgpt_cli("lineage", "models:/lexgpt/1", check=False, timeout=300)
    assert chatty.returncode == 1 and " INFO mlflow" in chatty.stderr, chatty.stderr
    # ... and by default only lexgpt's own line is on stderr.
    missing = lexgpt_cli("lineage", "models:/lexgpt/1", check=False, timeout=300)
    assert missing.returncode == 1 and missing.stderr.startswith("lexgpt lineage: "), missing.stderr
    assert " INFO " not in missing.stderr and "alembic" not in missing.stderr, missing.stderr

    from lexgpt.tracking import runs

    runs.configure(store)
    runs.client().create_registered_model("lexgpt")
    runs.client().create_model_version("lexgpt", source=str(tmp_path), run_id=None)
    from pipelines.cli import main

    assert main(["lineage", "models:/lexgpt/1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) > 1  # so `| head -1` cuts it short
    proc = run_into_closed_pipe("lineage", "models:/lexgpt/1")
    assert (proc.returncode, proc.stderr) == (141, "")


def test_registration_notes_are_dropped_but_warnings_pass(store, tmp_path, capsys):
    import mlflow

    from lexgpt.tracking import runs
    from lexgpt.tracking.mlflow_quiet import registration_notes_dropped

    runs.configure(store)
    capsys.readouterr()
    with registration_notes_dropped():
        for _ in range(2):  # first "Successfully registered", then "already exists"
            mlflow.register_model(str(tmp_path), "lexgpt")
        logging.getLogger("mlflow.test").warning("a warning stays")
        logging.getLogger("mlflow.test").info("progress goes")
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith("WARNING mlflow.test: a warning stays"), err
    assert len(err.splitlines()) == 1, err
    assert [v.version for v in runs.client().search_model_versions("name = 'lexgpt'")] != []
