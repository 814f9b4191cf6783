"""Packaging the GPT as an MLflow pyfunc, registering it, and loading it back.

The logged model carries *no code*: its MLmodel names ``lexgpt.tracking.mlflow_model`` as the
pyfunc ``loader_module`` (imported from the installed package) and its data is the three
files of :mod:`lexgpt.modeling.model_files` (weights, ``config.json``, tokenizer). Their sha256s
go into the model version's ``lexgpt.model_files`` tag in the registry, and every lexgpt
load checks the downloaded copies against them before reading anything::

    info = packaging.log_and_register_model(weights, config_json, tokenizer_json,
                                            val_bpc=1.74, tags=lineage, run_id=run_id)
    registry.promote(info.name, info.version, info.val_bpc)
    model, tokenizer = packaging.load_model_for_generation("models:/lexgpt@champion")
    served = packaging.stage_for_serving("models:/lexgpt@champion", private_tmp_dir)

Nothing here calls ``mlflow.pyfunc.load_model`` on a stored model: the stored MLmodel is
never read, so editing it (or adding code beside it) in the artifact store changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_STATE

from lexgpt.modeling import model_files
from lexgpt.tracking.runs import (
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
from lexgpt.tracking.mlflow_quiet import registration_notes_dropped

MODEL_ARTIFACT_NAME = "model"
LOADER_MODULE = "lexgpt.tracking.mlflow_model"


class ModelRefused(MlflowException):
    """A model that lexgpt will not load (changed since registration, corrupt, or not a
    lexgpt model). An ``MlflowException``, so the CLI prints it as one line."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_STATE)


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

    from lexgpt.tracking.mlflow_model import default_params

    return infer_signature(["Hello"], ["world"], params=default_params())


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
    """Log the data-only pyfunc to the run and register it as a new version of
    ``registered_name``, tagged with the lineage tags, the git commit, the run id,
    ``val_bpc`` and the files' hashes. Does not move aliases: call
    :func:`lexgpt.tracking.registry.promote`."""
    val_bpc = float(val_bpc)
    version_tags = lineage_tags(tags)
    version_tags.setdefault(GIT_COMMIT_TAG, git_commit())
    version_tags[VAL_BPC_TAG] = repr(val_bpc)
    example = (
        ["Lex: What is the meaning of life?"],
        dict(example_params or {"max_new_tokens": 4}),
    )
    with tempfile.TemporaryDirectory(prefix="lexgpt-model-") as tmp:
        data = Path(tmp) / "lexgpt"  # MLflow copies it to data/lexgpt (model_files.DATA_DIR)
        manifest = model_files.stage(weights_path, config_path, tokenizer_path, data)
        model_files.load(data)  # refuse to register files lexgpt could not load back
        version_tags[model_files.MANIFEST_TAG] = json.dumps(manifest, sort_keys=True)
        with using_run(run_id) as rid:
            model_info = _log_model_in_run(rid, data=data, example=example)
            version_tags[RUN_ID_TAG] = rid
            if math.isfinite(val_bpc):
                client().log_metric(rid, "registered_val_bpc", val_bpc)
            with registration_notes_dropped():
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


def _pyfunc_args(data: Path) -> dict[str, Any]:
    """What both the logged model and the serving copy are made of: no code, no pickle."""
    return dict(loader_module=LOADER_MODULE, data_path=str(data), pip_requirements=pip_requirements(),
                signature=model_signature())


def _log_model_in_run(rid: str, *, data: Path, example):
    active = mlflow.active_run()
    if active is not None and active.info.run_id == rid:
        ctx = contextlib.nullcontext()
    else:  # nested: another run may be active in this thread
        ctx = mlflow.start_run(run_id=rid, nested=active is not None)
    with ctx:
        return mlflow.pyfunc.log_model(name=MODEL_ARTIFACT_NAME, input_example=example, **_pyfunc_args(data))


def fetch_verified_files(model_uri: str, dest: str | os.PathLike[str]) -> tuple[Path, str]:
    """Download the three data files of a registered version (``models:/lexgpt@champion``,
    ``models:/lexgpt/3``, ``models:/lexgpt/latest``) into ``dest`` and check each against
    the sha256 and size recorded in the registry at registration. Returns the folder of
    checked copies and the stored folder they came from (for messages). Raises
    :class:`ModelRefused` naming the stored file that differs."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from lexgpt.tracking import registry

    if not model_uri.startswith("models:/"):
        raise ModelRefused(f"{model_uri}: give a registered model (models:/NAME/VERSION or models:/NAME@ALIAS); "
                           "only those carry the hashes lexgpt checks")
    try:
        registry.parse_models_uri(model_uri)
    except ValueError as err:
        raise ModelRefused(str(err)) from None
    mv = registry.get_model_version(model_uri)
    where = f"{model_uri} (version {mv.version})"
    try:
        manifest = model_files.parse_manifest((mv.tags or {}).get(model_files.MANIFEST_TAG), where)
        root = client().get_model_version_download_uri(mv.name, mv.version).rstrip("/")
        stored_dir = f"{_display(root)}/{model_files.DATA_DIR}"
        stored = {name: f"{stored_dir}/{name}" for name in model_files.FILE_NAMES}
        repo = get_artifact_repository(root)
        sizes = {Path(f.path).name: f.file_size for f in repo.list_artifacts(model_files.DATA_DIR) if not f.is_dir}
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for name in model_files.FILE_NAMES:
            if name not in sizes:
                raise model_files.ModelFileError(f"{stored[name]}: missing from the artifact store")
            model_files.check_size(name, sizes[name], manifest, stored[name])
        with _no_progress_bars():  # a bar per file is noise on the CLI's stderr
            for name in model_files.FILE_NAMES:  # these three only: nothing else there is read
                repo.download_artifacts(f"{model_files.DATA_DIR}/{name}", dst_path=str(dest))
        folder = dest / model_files.DATA_DIR  # the download keeps the artifact path
        model_files.verify(folder, manifest, stored)
    except model_files.ModelFileError as err:
        raise ModelRefused(str(err)) from None
    return folder, stored_dir


@contextlib.contextmanager
def _no_progress_bars():
    """MLflow reads ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` at each download; a user's
    own setting wins."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        yield
        return
    os.environ[key] = "false"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def _display(uri: str) -> str:
    """A ``file://`` URI as the path a user can open; other URIs as they are."""
    from mlflow.utils.uri import is_local_uri
    from mlflow.utils.file_utils import local_file_uri_to_path

    return local_file_uri_to_path(uri) if uri.startswith("file:") and is_local_uri(uri) else uri


def load_model_for_generation(model_uri: str):
    """``(GPT in eval mode, BPETokenizer)`` of a registered lexgpt model
    (``models:/lexgpt@champion``, ``models:/lexgpt/3``), for
    :func:`lexgpt.generation.generate.stream_text`; or of a local folder holding ``model.pt``,
    ``config.json`` and ``tokenizer.json`` (your own files: no hashes to check). The one
    place a model is loaded: data files only, built by the installed lexgpt package."""
    ensure_configured()
    with tempfile.TemporaryDirectory(prefix="lexgpt-load-") as tmp:
        local = Path(model_uri)
        if local.is_dir():  # a folder of the three files, or a saved MLflow model's
            folder = local / model_files.DATA_DIR if (local / model_files.DATA_DIR).is_dir() else local
            return _load_files(folder, str(folder))
        return _load_files(*fetch_verified_files(model_uri, tmp))


def _load_files(folder: Path, shown_as: str):
    """:func:`lexgpt.modeling.model_files.load`; a refusal names the file where it is stored
    (``shown_as``), not the temporary copy that was read."""
    try:
        return model_files.load(folder)
    except model_files.ModelFileError as err:
        raise ModelRefused(str(err).replace(str(folder), shown_as)) from None


def stage_for_serving(model_uri: str, dest: str | os.PathLike[str]) -> Path:
    """A local MLflow model for ``mlflow models serve -m``: the verified data files of
    ``model_uri`` plus an MLmodel written here (``loader_module`` lexgpt.tracking.mlflow_model from
    the installed package). ``dest`` must be a new or empty private folder."""
    dest = Path(dest)
    files, stored_dir = fetch_verified_files(model_uri, dest / "verified")
    _load_files(files, stored_dir)  # refuse in one line here rather than in the server's log
    local = dest / "model"
    mlflow.pyfunc.save_model(path=str(local), **_pyfunc_args(files))
    return local
