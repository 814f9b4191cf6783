"""Where lexgpt keeps its local state.

Everything lives under one *home* folder, by default the repository root (the folder
that holds ``pyproject.toml``), so that ``make run``, ``dagster dev`` and the tests all
agree without anybody remembering an ``export``. ``LEXGPT_HOME`` moves it.

>>> from lexgpt.infra import paths
>>> paths.data_lake().name
'data_lake'
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # lexgpt/, above this subpackage


def home() -> Path:
    """The folder holding ``data_lake/``, ``mlruns/`` and ``.dagster/``."""
    env = os.environ.get("LEXGPT_HOME")
    if env:
        return Path(env).expanduser().resolve()
    repo = _PACKAGE_DIR.parent
    if (repo / "pyproject.toml").exists():
        return repo
    return Path.cwd().resolve()


def data_lake() -> Path:
    return Path(os.environ.get("LEXGPT_DATA_LAKE", home() / "data_lake")).resolve()


def mlruns() -> Path:
    return home() / "mlruns"


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME", home() / ".dagster")).resolve()


def tracking_uri() -> str:
    """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` or an absolute sqlite path.

    The path must be absolute: a relative sqlite URI silently creates an empty database
    whenever the current directory differs.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{mlruns() / 'mlflow.db'}"


def artifact_root() -> str:
    return (mlruns() / "artifacts").as_uri()


def lexicap_dir() -> Path | None:
    """The local folder of VTT files, or None (download Lexicap's data.zip).

    ``LEXICAP_DIR`` if set; otherwise ``shared/lexicap/vtt`` beside the home folder, where
    the team's machines and CI keep a copy, if it exists. ``make run``, ``lexgpt`` and
    ``dagster dev`` thus all read the same files without anybody exporting anything.
    """
    env = os.environ.get("LEXICAP_DIR")
    if env:
        return Path(env).expanduser().resolve()
    shared = home().parent / "shared" / "lexicap" / "vtt"
    return shared if shared.is_dir() else None


def cache_dir() -> Path:
    """Downloads (the Lexicap ``data.zip``), the throughput probe and compiled kernels are cached here."""
    return Path(os.environ.get("LEXGPT_CACHE", Path.home() / ".cache" / "lexgpt")).resolve()


def persist_compile_cache() -> Path:
    """Point torch.compile's on-disk caches (inductor's kernels, FX graphs, AOTAutograd) at
    ``cache_dir() / "inductor"`` unless ``TORCHINDUCTOR_CACHE_DIR`` is set; returns the folder.

    torch's default is ``/tmp/torchinductor_$USER``, which systems with /tmp on tmpfs empty
    at every boot; a cold compile costs 40-70 s of an 8-minute CPU budget. Call it at a
    process's entry, before ``torch._dynamo`` is imported: that import writes torch's default
    into the environment, where it would look like the user's choice (and children inherit it).
    """
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir() / "inductor")
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
