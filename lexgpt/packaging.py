"""Packaging the GPT as an MLflow pyfunc, registering it, and loading it back.

The pyfunc is logged as *models from code* (``lexgpt/mlflow_model.py`` runs at load time;
nothing is pickled), with the weights, ``config.json`` and the tokenizer as artifacts and
the ``lexgpt`` package itself in ``code/``, so it loads in a fresh environment::

    info = packaging.log_and_register_model(weights, config_json, tokenizer_json,
                                            val_bpc=1.74, tags=lineage, run_id=run_id)
    registry.promote(info.name, info.version, info.val_bpc)
    model, tokenizer = packaging.load_model_for_generation("models:/lexgpt@champion")
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow

from lexgpt.tracking import (
    DEFAULT_MODEL_NAME,
    GIT_COMMIT_TAG,
    RUN_ID_TAG,
    VAL_BPC_TAG,
    client,
    ensure_configured,
    git_commit,
    lineage_tags,
    using_run,
)

MODEL_ARTIFACT_NAME = "model"
_PACKAGE_DIR = Path(__file__).resolve().parent
_MODEL_CODE = _PACKAGE_DIR / "mlflow_model.py"


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
    """Log the models-from-code pyfunc to the run and register it as a new version of
    ``registered_name``, tagged with the lineage tags, the git commit, the run id and
    ``val_bpc``. Does not move aliases: call :func:`lexgpt.registry.promote`."""
    for p in (weights_path, config_path, tokenizer_path):
        if not Path(p).is_file():
            raise FileNotFoundError(f"model file not found: {p}")
    val_bpc = float(val_bpc)
    version_tags = lineage_tags(tags)
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
    with using_run(run_id) as rid, tempfile.TemporaryDirectory(prefix="lexgpt-code-") as tmp:
        package = _stage_package(Path(tmp))
        model_info = _log_model_in_run(rid, artifacts=artifacts, package=package, example=example)
        version_tags[RUN_ID_TAG] = rid
        if math.isfinite(val_bpc):
            client().log_metric(rid, "registered_val_bpc", val_bpc)
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
    ``models:/lexgpt/3``, ``runs:/<id>/model`` or a local model folder), for
    :func:`lexgpt.generate.stream_text`. The one place a registered model is loaded."""
    ensure_configured()
    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    model, tokenizer = getattr(wrapper, "model", None), getattr(wrapper, "tokenizer", None)
    if model is None or tokenizer is None:
        raise TypeError(f"{model_uri} is not a lexgpt model (got {type(wrapper).__name__})")
    return model, tokenizer
