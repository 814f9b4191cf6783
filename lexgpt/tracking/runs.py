"""MLflow run logging for lexgpt (plain MLflow, no Dagster).

A training run is opened *before* training starts, so the MLflow UI shows its curve
while it runs and its duration is the training's::

    from lexgpt.tracking import runs

    with runs.start_run(run_name="cpu-tiny-1a2b", tags=lineage) as run:
        runs.log_params(config)
        live = runs.LiveMetrics(run.info.run_id)
        result = train(..., on_metrics=live)       # each row goes to MLflow as it comes
        live.close(result.history)                 # rows from a resumed checkpoint too
        run_artifacts.log_training_run(history=result.history, tokenizer_path=tok,
                                       rules_path=rules, log_metrics=False)

Every helper takes an optional ``run_id``; without one it uses the active run, or starts
(and ends) a run in the ``lexgpt`` experiment. MLflow batches and truncates what it is
given itself. A run's files are :mod:`lexgpt.tracking.run_artifacts`, packaging the model is
:mod:`lexgpt.tracking.packaging`, the champion gate is :mod:`lexgpt.tracking.registry`, the loss plot is
:mod:`lexgpt.tracking.plots`.

>>> flatten({"model": {"n_layer": 4}, "lr": 0.001})
{'model.n_layer': 4, 'lr': 0.001}
>>> lineage_tags({"corpus_version": "abc", "dagster_run_id": "r1", "missing": None})
{'lexgpt.corpus_version': 'abc', 'dagster_run_id': 'r1'}
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lexgpt.infra import paths
from lexgpt.tracking import moved_home
from lexgpt.tracking.mlflow_quiet import quiet_mlflow_logging

DEFAULT_EXPERIMENT = "lexgpt"
DEFAULT_MODEL_NAME = "lexgpt"
VAL_BPC_TAG = "val_bpc"
RUN_ID_TAG = "lexgpt.run_id"
GIT_COMMIT_TAG = "lexgpt.git_commit"
LINEAGE_KEYS = (
    "lexgpt.corpus_version",
    "lexgpt.vocab_version",
    "lexgpt.shards_version",
    "lexgpt.rules_hash",
    GIT_COMMIT_TAG,
)
# MLflow 3's UI opens an experiment with this tag on its model-training pages (runs,
# metrics), not on the GenAI traces overview.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # lexgpt/, above this subpackage
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")


# --------------------------------------------------------------------------- setup


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow tracking *and* registry at ``tracking_uri`` (default
    :func:`lexgpt.infra.paths.tracking_uri`) and return it. Creates the sqlite file's folder and
    re-points a copied or moved home's store at its own artifacts (:mod:`lexgpt.tracking.moved_home`)."""
    uri = tracking_uri or paths.tracking_uri()
    quiet_mlflow_logging()
    _ensure_sqlite_dir(uri)
    moved_home.repoint_artifacts(uri)  # a copied / moved home: its store points back at itself
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _ensure_sqlite_dir(uri: str) -> None:
    if not uri.startswith("sqlite:///"):
        return
    db_path = uri[len("sqlite:///") :].split("?", 1)[0]
    if not db_path or db_path == ":memory:":
        return
    if not os.path.isabs(db_path):
        raise ValueError(
            f"relative sqlite tracking URI {uri!r}: it would create a fresh, empty "
            "database whenever the current directory differs; use an absolute path"
        )
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)


def client() -> MlflowClient:
    """A client for the configured tracking and registry URIs."""
    return MlflowClient(tracking_uri=mlflow.get_tracking_uri(), registry_uri=mlflow.get_registry_uri())


def ensure_configured() -> None:
    """Configure from the environment / lexgpt paths unless a URI is already set."""
    if mlflow.is_tracking_uri_set():
        quiet_mlflow_logging()
        _ensure_sqlite_dir(mlflow.get_tracking_uri())
    else:
        configure()


def get_or_create_experiment(name: str = DEFAULT_EXPERIMENT) -> str:
    """Experiment id for ``name``; creates it with artifacts under ``mlruns/artifacts/<name>``
    (restores it if it was deleted) and marks it a model-training experiment."""
    ensure_configured()
    mlflow_client = client()
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        location = f"{paths.artifact_root().rstrip('/')}/{_safe_dir_name(name)}"
        try:
            exp_id = mlflow_client.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
            return exp_id
        except MlflowException:  # created concurrently by another process
            exp = mlflow_client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        mlflow_client.restore_experiment(exp.experiment_id)
    if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # a store from before the tag
        mlflow_client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


def _safe_dir_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "experiment"


@contextlib.contextmanager
def start_run(
    run_name: str | None = None,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """``mlflow.start_run`` in the lexgpt experiment, with lineage tags and the git commit."""
    ensure_configured()
    if run_id is not None:
        ctx = mlflow.start_run(run_id=run_id)
    else:
        experiment_id = get_or_create_experiment(experiment)
        ctx = mlflow.start_run(run_name=run_name, experiment_id=experiment_id)
    with ctx as run:
        set_lineage_tags(tags or {}, run_id=run.info.run_id)
        yield run


@contextlib.contextmanager
def using_run(run_id: str | None, experiment: str = DEFAULT_EXPERIMENT) -> Iterator[str]:
    """Yield a run id: ``run_id``, else the active run's, else a new run's (ended after)."""
    ensure_configured()
    if run_id is not None:
        yield run_id
        return
    active = mlflow.active_run()
    if active is not None:
        yield active.info.run_id
        return
    with start_run(experiment=experiment) as run:
        yield run.info.run_id


# --------------------------------------------------------------------------- helpers


def git_commit(repo: str | os.PathLike[str] | None = None) -> str:
    """``git rev-parse HEAD`` of the repository holding lexgpt (or ``repo``), with a
    ``-dirty`` suffix when the work tree has uncommitted changes; ``"unknown"`` when it is
    not a git repository, has no commit yet, or git is missing."""
    cwd = Path(repo) if repo is not None else _PACKAGE_DIR.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--verify", "HEAD"],
            cwd=cwd, capture_output=True, text=True, timeout=30, check=False,
        )
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        commit = head.stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if status.returncode != 0 or status.stdout.strip():
        return commit + "-dirty"
    return commit


def flatten(d: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"model": {"n_layer": 4}}`` -> ``{"model.n_layer": 4}`` (dataclasses too)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping):
            if value:
                out.update(flatten(value, name, sep))
            else:
                out[name] = "{}"
        else:
            out[name] = value
    return out


def _key(key: str) -> str:
    return _BAD_KEY_CHARS.sub("_", str(key))


def lineage_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """Prefix short lineage names with ``lexgpt.``; stringify values; drop ``None``."""
    out: dict[str, str] = {}
    for key, value in (tags or {}).items():
        if value is None:
            continue
        key = str(key)
        if f"lexgpt.{key}" in LINEAGE_KEYS:
            key = f"lexgpt.{key}"
        out[key] = str(value)
    return out


def _metric_value(value: Any) -> float | None:
    if value is None or isinstance(value, (str, bytes)):
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        try:
            return float(value.item())
        except (TypeError, ValueError):
            return None
    return None


# --------------------------------------------------------------------------- run logging


def set_lineage_tags(
    tags: Mapping[str, Any], *, run_id: str | None = None, add_git_commit: bool = True
) -> dict[str, str]:
    """Set lineage tags on the run (short names get the ``lexgpt.`` prefix) plus
    ``lexgpt.git_commit`` when not given; returns the tags set."""
    out = lineage_tags(tags)
    if add_git_commit:
        out.setdefault(GIT_COMMIT_TAG, git_commit())
    with using_run(run_id) as rid:
        client().log_batch(rid, tags=[RunTag(k, v) for k, v in sorted(out.items())])
    return out


def log_params(params: Mapping[str, Any], *, run_id: str | None = None) -> dict[str, str]:
    """Log ``params`` flattened (``a.b.c``); returns what was logged."""
    flat = {_key(k): os.fspath(v) if isinstance(v, os.PathLike) else str(v) for k, v in flatten(params).items()}
    with using_run(run_id) as rid:
        client().log_batch(rid, params=[Param(k, v) for k, v in sorted(flat.items())])
    return flat


def history_metrics(
    history: Iterable[Mapping[str, Any]], *, step_key: str = "step", prefix: str = ""
) -> list[Metric]:
    """One :class:`Metric` per numeric value of each history row (``step`` is the step;
    ``None`` and non-numeric values are skipped; NaN is kept so divergence is visible)."""
    metrics: list[Metric] = []
    now = int(time.time() * 1000)
    for i, row in enumerate(history):
        step = row.get(step_key, i)
        try:
            step = int(step)
        except (TypeError, ValueError):
            step = i
        ts = row.get("timestamp")  # optional: seconds (time.time()) or milliseconds
        if isinstance(ts, numbers.Real) and not isinstance(ts, bool) and math.isfinite(ts):
            ts = int(ts * 1000) if ts < 1e11 else int(ts)
        else:
            ts = now
        for key, raw in row.items():
            if key in (step_key, "timestamp"):
                continue
            value = _metric_value(raw)
            if value is None:
                continue
            metrics.append(Metric(_key(prefix + str(key)), value, ts, step))
    return metrics


def log_history(history: Iterable[Mapping[str, Any]], *, run_id: str | None = None,
                step_key: str = "step", prefix: str = "") -> int:
    """Log a training history (list of dicts) as metrics; returns how many values."""
    metrics = history_metrics(history, step_key=step_key, prefix=prefix)
    with using_run(run_id) as rid:
        client().log_batch(rid, metrics=metrics)
    return len(metrics)


def log_metrics_final(run_id: str | None, metrics: Mapping[str, Any], *, step: int = 0) -> int:
    """Log scalar summary metrics (``final_val_bpc`` ...) in one batch; skips non-numbers."""
    now = int(time.time() * 1000)
    items = [
        Metric(_key(k), v, now, step)
        for k, raw in metrics.items()
        if (v := _metric_value(raw)) is not None
    ]
    with using_run(run_id) as rid:
        client().log_batch(rid, metrics=items)
    return len(items)


def show_score_in_run_name(run_id: str, val_bpc: float) -> str:
    """Start the run's name with its score (``1.865 bpc cpu-tiny-1a2b3c4d``): MLflow 3's
    runs list shows no metric column until a user picks one, but always shows the start
    of the name. Returns the new name."""
    mlflow_client = client()
    name = mlflow_client.get_run(run_id).info.run_name or run_id[:8]
    name = f"{val_bpc:.3f} bpc {re.sub(r'^[0-9.]+ bpc ', '', name)}"
    mlflow_client.set_tag(run_id, "mlflow.runName", name)
    return name


class LiveMetrics:
    """The ``on_metrics`` callback of :func:`lexgpt.training.train.train`: each row of metrics goes
    to the run as soon as training produces it, through MLflow's asynchronous logging
    (which batches whatever is queued). ``on_row(step, metrics)`` is called too (the
    terminal line per evaluation). :meth:`close` logs the rows a resumed checkpoint
    brought along (produced before this run existed) and waits until all is stored."""

    def __init__(self, run_id: str, *, on_row: Callable[[int, dict[str, float]], None] | None = None):
        self.run_id = run_id
        self.on_row = on_row
        self.steps_logged: set[int] = set()
        self._client = client()
        self._pending: list[Any] = []

    def __call__(self, step: int, metrics: Mapping[str, Any]) -> None:
        batch = history_metrics([{"step": step, **metrics}])
        if batch:
            self._pending.append(self._client.log_batch(self.run_id, metrics=batch, synchronous=False))
            self.steps_logged.add(int(step))
        if self.on_row is not None:
            self.on_row(int(step), dict(metrics))

    def close(self, history: Sequence[Mapping[str, Any]] = ()) -> int:
        """Log history rows whose step was not logged live; wait for the queue. Returns
        how many rows were back-filled."""
        missing = [row for row in history if int(row.get("step", -1)) not in self.steps_logged]
        if missing:
            self._client.log_batch(self.run_id, metrics=history_metrics(missing))
        for operation in self._pending:
            if operation is not None:
                operation.wait()
        self._pending.clear()
        return len(missing)
