"""One writer per home: a second writer fails at once naming the first; a killed writer's
runs are marked failed by the next one, in Dagster and in MLflow."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, lexgpt_cli
from lexgpt.infra import lock

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOLD_SRC = """
import sys, time
from lexgpt.infra import lock
with lock.hold(sys.argv[1], "lexgpt refresh --config my.yaml"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder_process(tmp_path: Path):
    """Another process holding the writer lock of ``tmp_path / 'home'``."""
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SRC, str(home)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    yield home, proc
    proc.kill()
    proc.wait()


def test_second_writer_fails_at_once_naming_the_holder(holder_process):
    home, proc = holder_process
    started = time.monotonic()
    with pytest.raises(lock.LockBusy) as caught:
        with lock.hold(home, "lexgpt run"):
            pass
    assert time.monotonic() - started < 1
    message = str(caught.value)
    assert f"PID {proc.pid} (lexgpt refresh --config my.yaml" in message
    assert "\n" not in message


def test_lock_is_reentrant_in_a_process_and_released_after(tmp_path: Path):
    with lock.hold(tmp_path, "outer") as outer:
        with lock.hold(tmp_path, "inner (an asset of the same refresh)") as inner:
            assert inner is outer
        assert lock.current(tmp_path) is outer
    assert lock.current(tmp_path) is None and lock.holder(tmp_path) is None
    with lock.hold(tmp_path, "again") as again:
        assert again.abandoned is None  # a clean release leaves nothing to clean up


def test_killed_holder_releases_the_lock_and_leaves_its_record(holder_process):
    home, proc = holder_process
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with lock.hold(home, "lexgpt run") as held:  # the kernel dropped the flock
        assert held.abandoned["pid"] == proc.pid
        assert held.abandoned["command"] == "lexgpt refresh --config my.yaml"


KILLED_REFRESH_SRC = textwrap.dedent("""
    import sys, time
    import dagster as dg
    from lexgpt.infra import lock
    from pipelines.resources import DataLake
    from pipelines.writers import hold_home

    @dg.asset
    def slow(lake: DataLake):
        print("started", flush=True)
        time.sleep(120)

    defs = dg.Definitions(assets=[slow], resources={"lake": DataLake(root=sys.argv[1])})
    instance = dg.DagsterInstance.get()
    with hold_home("lexgpt refresh", instance) as held:
        run_id = "0123456789abcdef0123456789abcdef"
        held.record_run(run_id)
        defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance, run_id=run_id)
""")


def test_next_writer_fails_the_runs_a_killed_writer_left(lexgpt_home: Path):
    import dagster as dg
    from mlflow.tracking import MlflowClient

    from lexgpt.tracking import runs
    from pipelines.staleness import ensure_dagster_home
    from pipelines.writers import hold_home

    ensure_dagster_home()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_REFRESH_SRC, str(lexgpt_home / "data_lake")],
                            cwd=REPO, text=True, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "started"
        # Like trained_model, the run had opened an MLflow run tagged with its Dagster run.
        runs.configure()
        client = MlflowClient()
        mlflow_run = client.create_run(runs.get_or_create_experiment("lexgpt"),
                                       tags={"dagster_run_id": "0123456789abcdef0123456789abcdef"})
        other = client.create_run(mlflow_run.info.experiment_id, tags={"dagster_run_id": "another-run"})
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    run_id = "0123456789abcdef0123456789abcdef"
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_record_by_id(run_id).dagster_run.status == dg.DagsterRunStatus.STARTED
        lines: list[str] = []
        with hold_home("lexgpt status", instance, log=lines.append):
            pass
        assert instance.get_run_record_by_id(run_id).dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert lines[0].startswith(f"marked Dagster run 01234567 failed (left STARTED by PID {proc.pid}")
    assert lines[1].startswith(f"marked MLflow run {mlflow_run.info.run_id[:8]} failed")
    assert client.get_run(mlflow_run.info.run_id).info.status == "FAILED"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"  # not the killed writer's


def test_a_ui_materialization_takes_the_lock_too(holder_process, monkeypatch):
    """An asset run outside ``lexgpt refresh`` (the UI, the sensor) fails at once while a refresh writes."""
    import dagster as dg

    from pipelines.resources import DataLake

    home, proc = holder_process
    monkeypatch.setenv("LEXGPT_HOME", str(home))
    ran = []

    @dg.asset
    def writes(lake: DataLake):
        ran.append(1)

    defs = dg.Definitions(assets=[writes], resources={"lake": DataLake(root=str(home / "lake"))})
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, raise_on_error=False)
    assert not result.success and ran == []
    failure = next(e for e in result.all_events if e.is_failure and e.event_specific_data)
    assert f"another lexgpt writer is running in {home}: PID {proc.pid}" in str(failure.event_specific_data)


def test_the_checks_read_the_lake_without_the_lock(holder_process, monkeypatch):
    """Checks only read: while a writer holds the home (or a sibling check runs), they still run."""
    import dagster as dg

    from pipelines.definitions import RESOURCES
    from pipelines.resources import DataLake

    home, _ = holder_process
    monkeypatch.setenv("LEXGPT_HOME", str(home))
    assert RESOURCES["lake_reader"].read_only and not RESOURCES["lake"].read_only

    @dg.asset
    def thing():
        pass

    @dg.asset_check(asset=thing)
    def reads(lake_reader: DataLake) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    defs = dg.Definitions(assets=[thing], asset_checks=[reads],
                          resources={"lake_reader": DataLake(root=str(home / "lake"), read_only=True)})
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
    assert result.success and [e.passed for e in result.get_asset_check_evaluations()] == [True]


def test_cli_refresh_while_another_writes_says_who(lexgpt_home: Path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SRC, str(lexgpt_home)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "held"
        out = lexgpt_cli("refresh", check=False)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"lexgpt refresh: another lexgpt writer is running in {lexgpt_home}: "
                           f"PID {proc.pid} (lexgpt refresh --config my.yaml, since ")
    assert line.endswith("; wait for it to finish, or stop it")
    assert not (lexgpt_home / "data_lake").exists()  # nothing ran
