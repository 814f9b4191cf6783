"""A training run's files in MLflow: the loss curve, the tokenizer (ours and its Hugging
Face export), the cleaning rules file, a table of samples; and :func:`log_training_run`,
which logs a whole finished run at once (params, metrics, files, tags).

    run_artifacts.log_training_run(history=result.history, tokenizer_path=tok,
                                   rules_path=rules, run_id=run_id, log_metrics=False)
    png = run_artifacts.logged_loss_curve(run_id)    # what Dagster shows too
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from lexgpt.tracking.runs import (
    DEFAULT_EXPERIMENT,
    client,
    ensure_configured,
    log_history,
    log_params,
    set_lineage_tags,
    start_run,
    using_run,
)

LOSS_CURVE_ARTIFACT = "plots/loss_curve.png"
SAMPLES_ARTIFACT = "samples/samples.json"
RULES_ARTIFACT_DIR = "cleaning_rules"
TOKENIZER_ARTIFACT_DIR = "tokenizer"
HF_TOKENIZER_ARTIFACT = "tokenizer/hf/tokenizer.json"


def log_loss_curve(history: Sequence[Mapping[str, Any]], *, run_id: str | None = None,
                   artifact_file: str = LOSS_CURVE_ARTIFACT) -> str:
    """Log the loss curve PNG (:func:`lexgpt.tracking.plots.loss_curve_figure`); returns its path."""
    from lexgpt.tracking.plots import loss_curve_figure

    with using_run(run_id) as rid:
        client().log_figure(rid, loss_curve_figure(history), artifact_file)
    return artifact_file


def logged_loss_curve(run_id: str) -> bytes | None:
    """The loss-curve PNG that :func:`log_loss_curve` logged to ``run_id`` (None if absent)."""
    ensure_configured()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client().download_artifacts(run_id, LOSS_CURVE_ARTIFACT, tmp)
        except (OSError, MlflowException):
            return None
        return Path(path).read_bytes()


def log_tokenizer(tokenizer_path: str | os.PathLike[str], *, run_id: str | None = None) -> list[str]:
    """Log the tokenizer file and its Hugging Face ``tokenizers`` export
    (:func:`lexgpt.tokenizer.tokenizer_export.export_hf`); returns both artifact paths."""
    from lexgpt.tokenizer.bpe import BPETokenizer
    from lexgpt.tokenizer.tokenizer_export import export_hf

    path = Path(tokenizer_path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    with using_run(run_id) as rid, tempfile.TemporaryDirectory() as tmp:
        mlflow_client = client()
        mlflow_client.log_artifact(rid, str(path), TOKENIZER_ARTIFACT_DIR)
        hf = Path(tmp) / "tokenizer.json"
        export_hf(BPETokenizer.load(path), hf)
        mlflow_client.log_artifact(rid, str(hf), str(Path(HF_TOKENIZER_ARTIFACT).parent))
    return [f"{TOKENIZER_ARTIFACT_DIR}/{path.name}", HF_TOKENIZER_ARTIFACT]


def log_rules(rules_path: str | os.PathLike[str], *, run_id: str | None = None) -> str:
    """Log the cleaning rules file itself (not only its hash); returns its artifact path."""
    path = Path(rules_path)
    if not path.is_file():
        raise FileNotFoundError(f"cleaning rules file not found: {path}")
    with using_run(run_id) as rid:
        client().log_artifact(rid, str(path), RULES_ARTIFACT_DIR)
    return f"{RULES_ARTIFACT_DIR}/{path.name}"


def log_samples(samples: Any, *, run_id: str | None = None, artifact_file: str = SAMPLES_ARTIFACT) -> str:
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
    with using_run(run_id) as rid:
        mlflow.log_table(frame, artifact_file, run_id=rid)
    return artifact_file


def log_training_run(
    *,
    config: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    tokenizer_path: str | os.PathLike[str] | None = None,
    rules_path: str | os.PathLike[str] | None = None,
    samples: Any = None,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    log_metrics: bool = True,
) -> str:
    """Log one training run after the fact: params (flattened ``config``), metrics from
    ``history`` (unless ``log_metrics=False``: :class:`LiveMetrics` sent them already), the
    loss-curve PNG, the tokenizer (and its HF export), the rules file, a samples table and
    lineage tags. Uses ``run_id`` / the active run, else starts and ends a new run."""
    ensure_configured()
    if run_id is None and mlflow.active_run() is None:
        with start_run(run_name, experiment=experiment) as run:
            return log_training_run(
                config=config, history=history, tokenizer_path=tokenizer_path, rules_path=rules_path,
                samples=samples, tags=tags, run_id=run.info.run_id, log_metrics=log_metrics,
            )
    with using_run(run_id, experiment) as rid:
        set_lineage_tags(tags or {}, run_id=rid)
        if config:
            log_params(config, run_id=rid)
        history = list(history)
        if history:
            if log_metrics:
                log_history(history, run_id=rid)
            log_loss_curve(history, run_id=rid)
        if tokenizer_path is not None:
            log_tokenizer(tokenizer_path, run_id=rid)
        if rules_path is not None:
            log_rules(rules_path, run_id=rid)
        if samples is not None:
            log_samples(samples, run_id=rid)
        return rid
