"""MLflow tracking and model registry for lexgpt (plain MLflow, no Dagster).

Typical use from the training step::

    from lexgpt import tracking

    tracking.configure()
    with tracking.start_run(run_name="train", tags=lineage_tags) as run:
        tracking.log_training_run(
            config=cfg, history=result.history, tokenizer_path=tok_path,
            samples=[{"prompt": p, "completion": c} for p, c in pairs], tags=lineage_tags,
        )
        info = tracking.log_and_register_model(
            out_dir / "model.pt", out_dir / "config.json", tok_path,
            val_bpc=best_bpc, tags=lineage_tags,
        )
    tracking.promote(info.name, info.version, info.val_bpc)

Every helper that logs to a run takes an optional ``run_id``; without one it uses the
active run, or starts (and ends) a run in the ``lexgpt`` experiment.

Lineage tags use the keys in :data:`LINEAGE_KEYS` (``lexgpt.corpus_version`` ...); short
names (``corpus_version``) are accepted and prefixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import logging
import math
import numbers
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lexgpt import paths

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "lexgpt"
DEFAULT_MODEL_NAME = "lexgpt"
CHAMPION = "champion"
CHALLENGER = "challenger"
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
MODEL_ARTIFACT_NAME = "model"
LOSS_CURVE_ARTIFACT = "plots/loss_curve.png"
SAMPLES_ARTIFACT = "samples/samples.json"

# MLflow limits (mlflow/utils/validation.py): 1000 metrics / 100 params / 100 tags per
# log_batch call, and 6000 characters per param value.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_PARAM_VALUE_LENGTH = 6000

_PACKAGE_DIR = Path(__file__).resolve().parent
_MODEL_CODE = _PACKAGE_DIR / "mlflow_model.py"
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")


# --------------------------------------------------------------------------- setup


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow tracking *and* registry at ``tracking_uri`` (default
    :func:`lexgpt.paths.tracking_uri`) and return it. Creates the sqlite file's folder."""
    uri = tracking_uri or paths.tracking_uri()
    _ensure_sqlite_dir(uri)
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


def _client() -> MlflowClient:
    return MlflowClient(
        tracking_uri=mlflow.get_tracking_uri(), registry_uri=mlflow.get_registry_uri()
    )


def _ensure_configured() -> None:
    """Configure from the environment / lexgpt paths unless a URI is already set."""
    if mlflow.is_tracking_uri_set():
        _ensure_sqlite_dir(mlflow.get_tracking_uri())
    else:
        configure()


def get_or_create_experiment(name: str = DEFAULT_EXPERIMENT) -> str:
    """Experiment id for ``name``; creates it with artifacts under ``mlruns/artifacts/<name>``
    (restores it if it was deleted)."""
    _ensure_configured()
    client = _client()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = f"{paths.artifact_root().rstrip('/')}/{_safe_dir_name(name)}"
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created concurrently by another process
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
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
    _ensure_configured()
    if run_id is not None:
        ctx = mlflow.start_run(run_id=run_id)
    else:
        experiment_id = get_or_create_experiment(experiment)
        ctx = mlflow.start_run(run_name=run_name, experiment_id=experiment_id)
    with ctx as run:
        set_lineage_tags(tags or {}, run_id=run.info.run_id)
        yield run


@contextlib.contextmanager
def _using_run(run_id: str | None, experiment: str = DEFAULT_EXPERIMENT) -> Iterator[str]:
    """Yield a run id: ``run_id``, else the active run's, else a new run's (ended after)."""
    _ensure_configured()
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


def _param_value(value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = str(value)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        text = text[: MAX_PARAM_VALUE_LENGTH - 3] + "..."
    return text


def _key(key: str) -> str:
    return _BAD_KEY_CHARS.sub("_", str(key))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _lineage_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
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


# --------------------------------------------------------------------------- run logging


def log_params(params: Mapping[str, Any], *, run_id: str | None = None) -> dict[str, str]:
    """Log ``params`` flattened (``a.b.c``), in batches of 100; returns what was logged."""
    flat = {_key(k): _param_value(v) for k, v in flatten(params).items()}
    with _using_run(run_id) as rid:
        items = [Param(k, v) for k, v in sorted(flat.items())]
        client = _client()
        for chunk in _chunks(items, MAX_PARAMS_PER_BATCH):
            client.log_batch(rid, params=list(chunk))
    return flat


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


def log_history(
    history: Iterable[Mapping[str, Any]],
    *,
    run_id: str | None = None,
    step_key: str = "step",
    prefix: str = "",
    batch_size: int = MAX_METRICS_PER_BATCH,
) -> int:
    """Log a training history (list of dicts) as metrics with ``MlflowClient.log_batch``
    in chunks of at most 1000; returns the number of metric values logged."""
    batch_size = max(1, min(int(batch_size), MAX_METRICS_PER_BATCH))
    metrics = history_metrics(history, step_key=step_key, prefix=prefix)
    with _using_run(run_id) as rid:
        client = _client()
        for chunk in _chunks(metrics, batch_size):
            client.log_batch(rid, metrics=list(chunk))
    return len(metrics)


def log_metrics_final(run_id: str | None, metrics: Mapping[str, Any], *, step: int = 0) -> int:
    """Log scalar summary metrics (``final_val_bpc`` ...) in one batch; skips non-numbers."""
    now = int(time.time() * 1000)
    items = [
        Metric(_key(k), v, now, step)
        for k, raw in metrics.items()
        if (v := _metric_value(raw)) is not None
    ]
    with _using_run(run_id) as rid:
        client = _client()
        for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
            client.log_batch(rid, metrics=list(chunk))
    return len(items)


def loss_curve_figure(history: Sequence[Mapping[str, Any]]):
    """A matplotlib Figure (Agg, no pyplot state): train + val loss, val bpc on a 2nd axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def series(key: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for i, row in enumerate(history):
            value = _metric_value(row.get(key))
            if value is not None:
                xs.append(float(row.get("step", i)))
                ys.append(value)
        return xs, ys

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    handles = []
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        xs, ys = series(key)
        if xs:
            (h,) = ax.plot(xs, ys, style, label=key.replace("_", " "), markersize=3)
            handles.append(h)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(True, alpha=0.3)
    xs, ys = series("val_bpc")
    if xs:
        ax2 = ax.twinx()
        (h,) = ax2.plot(xs, ys, "s--", color="tab:green", label="val bpc", markersize=3)
        ax2.set_ylabel("val bits per character")
        handles.append(h)
    if handles:
        ax.legend(handles=handles, labels=[h.get_label() for h in handles], loc="upper right")
    else:
        ax.text(0.5, 0.5, "no loss values", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("lexgpt training")
    fig.tight_layout()
    return fig


def log_loss_curve(
    history: Sequence[Mapping[str, Any]],
    *,
    run_id: str | None = None,
    artifact_file: str = LOSS_CURVE_ARTIFACT,
) -> str:
    """Log the loss curve PNG; returns its artifact path."""
    fig = loss_curve_figure(history)
    with _using_run(run_id) as rid:
        _client().log_figure(rid, fig, artifact_file)
    return artifact_file


def logged_loss_curve(run_id: str) -> bytes | None:
    """The loss-curve PNG that :func:`log_loss_curve` logged to ``run_id`` (None if absent)."""
    _ensure_configured()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = _client().download_artifacts(run_id, LOSS_CURVE_ARTIFACT, tmp)
        except (OSError, MlflowException):
            return None
        return Path(path).read_bytes()


def log_tokenizer(
    tokenizer_path: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    artifact_path: str = "tokenizer",
) -> str:
    """Log the tokenizer file; returns its artifact path."""
    path = Path(tokenizer_path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    with _using_run(run_id) as rid:
        _client().log_artifact(rid, str(path), artifact_path)
    return f"{artifact_path}/{path.name}"


def log_samples(
    samples: Any,
    *,
    run_id: str | None = None,
    artifact_file: str = SAMPLES_ARTIFACT,
) -> str:
    """Log generated samples with ``mlflow.log_table``. ``samples``: a DataFrame, a dict of
    columns, a list of dicts (e.g. ``{"prompt": ..., "completion": ...}``) or a list of
    ``(prompt, completion)`` pairs."""
    import pandas as pd

    if isinstance(samples, pd.DataFrame):
        frame = samples
    elif isinstance(samples, Mapping):
        frame = pd.DataFrame(dict(samples))
    else:
        rows = list(samples)
        if rows and not isinstance(rows[0], Mapping):
            rows = [{"prompt": r[0], "completion": r[1]} for r in rows]
        frame = pd.DataFrame(rows)
    with _using_run(run_id) as rid:
        mlflow.log_table(frame, artifact_file, run_id=rid)
    return artifact_file


def set_lineage_tags(
    tags: Mapping[str, Any], *, run_id: str | None = None, add_git_commit: bool = True
) -> dict[str, str]:
    """Set lineage tags on the run (short names get the ``lexgpt.`` prefix) plus
    ``lexgpt.git_commit`` when not given; returns the tags set."""
    out = _lineage_tags(tags)
    if add_git_commit:
        out.setdefault(GIT_COMMIT_TAG, git_commit())
    with _using_run(run_id) as rid:
        client = _client()
        items = [RunTag(k, v) for k, v in sorted(out.items())]
        for chunk in _chunks(items, MAX_TAGS_PER_BATCH):
            client.log_batch(rid, tags=list(chunk))
    return out


def log_training_run(
    *,
    config: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    tokenizer_path: str | os.PathLike[str] | None = None,
    samples: Any = None,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """Log one training run: params (flattened ``config``), batched metrics from
    ``history``, the loss-curve PNG, the tokenizer file, a samples table and lineage tags.
    Uses ``run_id`` / the active run, else starts and ends a new run. Returns the run id."""
    _ensure_configured()
    if run_id is None and mlflow.active_run() is None:
        with start_run(run_name, experiment=experiment) as run:
            return log_training_run(
                config=config, history=history, tokenizer_path=tokenizer_path,
                samples=samples, tags=tags, run_id=run.info.run_id,
            )
    with _using_run(run_id, experiment) as rid:
        set_lineage_tags(tags or {}, run_id=rid)
        if config:
            log_params(config, run_id=rid)
        history = list(history)
        if history:
            log_history(history, run_id=rid)
            log_loss_curve(history, run_id=rid)
        if tokenizer_path is not None:
            log_tokenizer(tokenizer_path, run_id=rid)
        if samples is not None:
            log_samples(samples, run_id=rid)
        return rid


# --------------------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str | None
    model_uri: str  # models:/<name>/<version>
    logged_model_uri: str  # what log_model returned (models:/m-...)
    val_bpc: float
    tags: dict[str, str]


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def pip_requirements() -> list[str]:
    """Requirements of the logged pyfunc, from the installed versions (no inference)."""
    reqs = []
    for dist, exact in (("mlflow", True), ("torch", False), ("numpy", False),
                        ("regex", False), ("pandas", False)):
        version = _dist_version(dist)
        if version is None:
            if dist in ("mlflow", "torch", "numpy"):
                reqs.append(dist)
            continue
        version = version.split("+", 1)[0]  # torch "2.13.0+cpu" -> "2.13.0"
        reqs.append(f"{dist}=={version}" if exact else f"{dist}>={version}")
    return reqs


def model_signature():
    """list[str] -> list[str], with the generation params and their defaults."""
    from mlflow.models import infer_signature

    from lexgpt.mlflow_model import default_params

    return infer_signature(["Hello"], ["world"], params=default_params())


def _stage_package(dest: Path) -> Path:
    """Copy the lexgpt package (sources and package data, no caches) to ``dest/lexgpt``."""
    target = dest / "lexgpt"
    shutil.copytree(
        _PACKAGE_DIR, target,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*"),
    )
    return target


def log_and_register_model(
    weights_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    tokenizer_path: str | os.PathLike[str],
    *,
    registered_name: str = DEFAULT_MODEL_NAME,
    val_bpc: float,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    example_params: Mapping[str, Any] | None = None,
) -> ModelVersionInfo:
    """Log the models-from-code pyfunc (artifacts: weights, config.json, tokenizer; the
    lexgpt package via ``code_paths``; explicit pip requirements) to the run and register
    it as a new version of ``registered_name``, tagged with the lineage tags, the git
    commit, the run id and ``val_bpc``. Does not move aliases: call :func:`promote`."""
    for p in (weights_path, config_path, tokenizer_path):
        if not Path(p).is_file():
            raise FileNotFoundError(f"model file not found: {p}")
    val_bpc = float(val_bpc)
    version_tags = _lineage_tags(tags)
    version_tags.setdefault(GIT_COMMIT_TAG, git_commit())
    version_tags[VAL_BPC_TAG] = repr(val_bpc)
    artifacts = {
        "weights": str(Path(weights_path).resolve()),
        "config": str(Path(config_path).resolve()),
        "tokenizer": str(Path(tokenizer_path).resolve()),
    }
    example = (
        ["Lex: What is the meaning of life?"],
        dict(example_params or {"max_new_tokens": 4}),
    )
    with _using_run(run_id) as rid, tempfile.TemporaryDirectory(prefix="lexgpt-code-") as tmp:
        package = _stage_package(Path(tmp))
        model_info = _log_model_in_run(rid, artifacts=artifacts, package=package, example=example)
        version_tags[RUN_ID_TAG] = rid
        if math.isfinite(val_bpc):
            _client().log_metric(rid, "registered_val_bpc", val_bpc)
        mv = mlflow.register_model(model_info.model_uri, registered_name, tags=version_tags)
    return ModelVersionInfo(
        name=registered_name,
        version=str(mv.version),
        run_id=rid,
        model_uri=f"models:/{registered_name}/{mv.version}",
        logged_model_uri=model_info.model_uri,
        val_bpc=val_bpc,
        tags=dict(version_tags),
    )


def _log_model_in_run(rid: str, *, artifacts, package: Path, example):
    active = mlflow.active_run()
    if active is not None and active.info.run_id == rid:
        ctx = contextlib.nullcontext()
    else:  # nested: another run may be active in this thread
        ctx = mlflow.start_run(run_id=rid, nested=active is not None)
    with ctx:
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT_NAME,
            python_model=str(_MODEL_CODE),
            artifacts=artifacts,
            code_paths=[str(package)],
            pip_requirements=pip_requirements(),
            signature=model_signature(),
            input_example=example,
        )


def load_model_for_generation(model_uri: str):
    """``(GPT in eval mode, BPETokenizer)`` of a logged lexgpt pyfunc (``models:/lexgpt@champion``,
    ``models:/lexgpt/3``, ``runs:/<id>/model`` or a local model folder), for streaming
    generation with :func:`lexgpt.generate.generate`."""
    _ensure_configured()
    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    model, tokenizer = getattr(wrapper, "model", None), getattr(wrapper, "tokenizer", None)
    if model is None or tokenizer is None:
        raise TypeError(f"{model_uri} is not a lexgpt model (got {type(wrapper).__name__})")
    return model, tokenizer


# --------------------------------------------------------------------------- registry


def _version_bpc(mv) -> float | None:
    raw = (mv.tags or {}).get(VAL_BPC_TAG)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def set_alias(name: str, alias: str, version: int | str) -> None:
    """Point ``name@alias`` at ``version`` (manual promote / rollback)."""
    _ensure_configured()
    _client().set_registered_model_alias(name, alias, str(version))


def promote(registered_name: str, version: int | str, val_bpc: float) -> str:
    """Champion gate. ``champion`` moves to ``version`` only if ``val_bpc`` is strictly lower
    than the current champion's (its ``val_bpc`` tag); otherwise ``version`` becomes
    ``challenger``. A champion without a readable ``val_bpc`` tag is beaten by any finite
    score; a non-finite ``val_bpc`` never wins. Returns ``"champion"`` or ``"challenger"``."""
    _ensure_configured()
    client = _client()
    version = str(version)
    val_bpc = float(val_bpc)
    try:
        current = client.get_model_version_by_alias(registered_name, CHAMPION)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        current = None
    if current is not None and str(current.version) == version:
        return CHAMPION
    if math.isfinite(val_bpc):
        if current is None:
            wins = True
        else:
            best = _version_bpc(current)
            if best is None:
                log.warning(
                    "%s@%s (v%s) has no val_bpc tag; the new version replaces it",
                    registered_name, CHAMPION, current.version,
                )
            wins = best is None or val_bpc < best
    else:
        wins = False
    alias = CHAMPION if wins else CHALLENGER
    client.set_registered_model_alias(registered_name, alias, version)
    if wins and current is not None:
        log.info(
            "%s: champion v%s -> v%s (val_bpc %s)",
            registered_name, current.version, version, val_bpc,
        )
    return alias


def _parse_models_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` / ``models:/name/3`` / ``models:/name/latest``."""
    if not model_uri.startswith("models:/"):
        raise ValueError(f"expected a models:/ URI, got {model_uri!r}")
    rest = model_uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return name, None, alias
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        return name, version, None
    raise ValueError(f"{model_uri!r} names no version or alias (models:/NAME/VERSION or @ALIAS)")


def get_model_version(model_uri: str):
    _ensure_configured()
    client = _client()
    name, version, alias = _parse_models_uri(model_uri)
    if alias is not None:
        return client.get_model_version_by_alias(name, alias)
    if version.lower() == "latest":
        versions = client.search_model_versions(
            f"name = '{name}'", order_by=["version_number DESC"], max_results=1
        )
        if not versions:
            raise MlflowException(
                f"registered model {name!r} has no versions",
                error_code="RESOURCE_DOES_NOT_EXIST",
            )
        return versions[0]
    return client.get_model_version(name, version)


def lineage(model_uri: str) -> dict[str, Any]:
    """Where a registered version came from: its tags (corpus / vocab / shards versions,
    rules hash, git commit, run id, val_bpc) plus name, version, aliases, run id, source."""
    mv = get_model_version(model_uri)
    tags = dict(mv.tags or {})
    out: dict[str, Any] = {
        "model_uri": model_uri,
        "name": mv.name,
        "version": str(mv.version),
        "aliases": sorted(getattr(mv, "aliases", None) or []),
        "run_id": mv.run_id or tags.get(RUN_ID_TAG),
        "source": mv.source,
        "val_bpc": _version_bpc(mv),
    }
    for key in LINEAGE_KEYS:
        out.setdefault(key, tags.get(key))
    for key, value in sorted(tags.items()):
        if key != VAL_BPC_TAG:
            out[key] = value
    return out
