"""One writer per home, and the cleanup after a writer that was killed.

Every command that writes (``lexgpt run`` / ``refresh``) and every asset materialization
(the :class:`~pipelines.resources.DataLake` resource, so runs from the Dagster UI too)
holds :func:`lexgpt.infra.lock.hold` on ``LEXGPT_HOME``. The writer records the Dagster runs it
starts in the lock file; if it is killed, the next writer finds that record and marks the
runs it left in progress as failed, in Dagster and in MLflow. (Dagster's own run
monitoring cannot: the default run launcher has no worker health check, and runs started
by ``execute_in_process`` have no worker at all.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from lexgpt.infra import lock, paths

IN_PROGRESS = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
MLFLOW_DAGSTER_RUN_TAG = "dagster_run_id"  # trained_model tags its MLflow run with the Dagster run


@contextlib.contextmanager
def hold_home(command: str, instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> Iterator[lock.HomeLock]:
    """Hold the home's writer lock (raises :class:`lexgpt.infra.lock.LockBusy` at once if taken);
    first clean up after a killed previous holder."""
    with lock.hold(paths.home(), command) as held:
        if held.abandoned is not None:
            left = held.abandoned
            held.abandoned = None
            try:
                for line in fail_abandoned_runs(instance, left):
                    log(line)
            except Exception as err:  # a cleanup problem must not stop the work itself
                log(f"could not mark the runs of a killed writer ({lock.describe(left)}) failed: {err}")
        yield held


def fail_abandoned_runs(instance: dg.DagsterInstance, record: dict[str, Any]) -> list[str]:
    """Mark the runs a killed writer left in progress as failed; one line per run marked."""
    runs = [r for r in record.get("runs", []) if isinstance(r, str)]
    who = lock.describe(record)
    lines = []
    for run_id in runs:
        run_record = instance.get_run_record_by_id(run_id)
        if run_record is None or run_record.dagster_run.status not in IN_PROGRESS:
            continue
        instance.report_run_failed(run_record.dagster_run, f"its process, {who}, was killed")
        lines.append(f"marked Dagster run {run_id[:8]} failed (left {run_record.dagster_run.status.value} "
                     f"by {who}, which was killed)")
    lines += _fail_mlflow_runs(runs, who)
    return lines


def _fail_mlflow_runs(dagster_runs: list[str], who: str) -> list[str]:
    """MLflow runs still RUNNING that a killed Dagster run had opened -> FAILED."""
    db = paths.mlruns() / "mlflow.db"
    if not dagster_runs or (paths.tracking_uri().startswith("sqlite:") and not db.exists()):
        return []  # nothing was ever logged: don't create a store just to look
    from mlflow.tracking import MlflowClient

    from lexgpt.tracking import runs

    runs.configure()
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    lines = []
    for run in client.search_runs(experiments, "attributes.status = 'RUNNING'"):  # MLflow can't IN on tags
        if run.data.tags.get(MLFLOW_DAGSTER_RUN_TAG) not in dagster_runs:
            continue
        client.set_terminated(run.info.run_id, status="FAILED")
        lines.append(f"marked MLflow run {run.info.run_id[:8]} failed (left RUNNING by {who}, which was killed)")
    return lines
