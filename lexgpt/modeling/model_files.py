"""The three data files a registered lexgpt model is, their hashes, and loading them.

A registered model carries *data only*: ``model.pt`` (a state dict, read with
``torch.load(weights_only=True)``), ``config.json`` (a ``GPTConfig``, checked before any
tensor is allocated) and ``tokenizer.json``. The code that turns them into a model is the
installed ``lexgpt`` package. At registration each file's sha256 and size go into the
model version's ``lexgpt.model_files`` tag (the registry, not the artifact store), and a
load checks the downloaded copies against it before reading them::

    manifest = stage(weights, config, tokenizer, folder)   # copies + hashes
    verify(folder, manifest, "models:/lexgpt/3")           # raises ModelFileError on a change
    model, tokenizer = load(folder)

>>> parse_manifest('{"model.pt": {"sha256": "' + "0" * 64 + '", "bytes": 3}}', "v1")
Traceback (most recent call last):
...
lexgpt.modeling.model_files.ModelFileError: v1: tag lexgpt.model_files lists ['model.pt'], expected ['config.json', 'model.pt', 'tokenizer.json']
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from lexgpt.infra.hashing import sha256_file
from lexgpt.modeling.checkpoint import CONFIG, WEIGHTS, ModelLoadError, load_model

TOKENIZER = "tokenizer.json"
FILE_NAMES = (WEIGHTS, CONFIG, TOKENIZER)
MANIFEST_TAG = "lexgpt.model_files"
# Where the files sit inside the logged MLflow model: MLflow copies ``data_path`` (a folder
# named ``lexgpt``) to ``data/lexgpt``.
DATA_DIR = "data/lexgpt"
# Bounds on what a load reads, checked before downloading or parsing: a GPTConfig caps the
# parameter count, so weights beyond 16 GiB are not a model this project writes.
MAX_BYTES = {WEIGHTS: 16 << 30, CONFIG: 64 << 10, TOKENIZER: 64 << 20}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelFileError(ValueError):
    """A model file that is missing, changed since registration, or unreadable; the
    message is one line that names the file and what to do."""


def stage(weights: str | os.PathLike[str], config: str | os.PathLike[str],
          tokenizer: str | os.PathLike[str], dest: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Copy the three files into ``dest`` under their canonical names and return the
    manifest of the copies (the bytes that get logged are the bytes that get hashed)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for source, name in zip((weights, config, tokenizer), FILE_NAMES):
        if not Path(source).is_file():
            raise FileNotFoundError(f"model file not found: {source}")
        shutil.copyfile(source, dest / name)
    return {name: {"sha256": sha256_file(dest / name), "bytes": (dest / name).stat().st_size}
            for name in FILE_NAMES}


def parse_manifest(raw: str | None, where: str) -> dict[str, dict[str, Any]]:
    """The ``lexgpt.model_files`` tag's value as a checked manifest."""
    if raw is None:
        raise ModelFileError(
            f"{where}: has no {MANIFEST_TAG} tag (registered before lexgpt recorded file hashes), "
            "so its files cannot be verified; retrain with `lexgpt run` to register a verifiable version")
    try:
        manifest = json.loads(raw)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict):
        raise ModelFileError(f"{where}: tag {MANIFEST_TAG} is not a JSON object")
    if sorted(manifest) != sorted(FILE_NAMES):
        raise ModelFileError(f"{where}: tag {MANIFEST_TAG} lists {sorted(manifest)[:5]}, expected {sorted(FILE_NAMES)}")
    for name, entry in manifest.items():
        ok = (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
              and _SHA256.fullmatch(entry["sha256"]) is not None
              and type(entry.get("bytes")) is int and 0 <= entry["bytes"] <= MAX_BYTES[name])
        if not ok:
            raise ModelFileError(f"{where}: tag {MANIFEST_TAG} has a bad entry for {name}")
    return manifest


def check_size(name: str, size: int | None, manifest: dict[str, dict[str, Any]], where: str) -> None:
    """Refuse a stored file whose size differs from the recorded one (before downloading it)."""
    if size is not None and size != manifest[name]["bytes"]:
        raise ModelFileError(f"{where}: {size} bytes, but {manifest[name]['bytes']} were registered; "
                             "the file was changed or truncated in the artifact store")


def verify(folder: str | os.PathLike[str], manifest: dict[str, dict[str, Any]], where: dict[str, str]) -> None:
    """Check each file in ``folder`` against ``manifest``; ``where[name]`` names the
    stored file in the message."""
    for name in FILE_NAMES:
        path = Path(folder) / name
        if not path.is_file():
            raise ModelFileError(f"{where[name]}: missing from the artifact store")
        check_size(name, path.stat().st_size, manifest, where[name])
        if sha256_file(path) != manifest[name]["sha256"]:
            raise ModelFileError(f"{where[name]}: its sha256 differs from the one recorded at registration; "
                                 "the file was changed in the artifact store (roll back with `lexgpt promote`)")


def load(folder: str | os.PathLike[str]):
    """``(GPT in eval mode, BPETokenizer)`` from a folder of the three files. The config is
    parsed into a ``GPTConfig`` (which caps the model's size) before any weights are read."""
    from lexgpt.tokenizer.bpe import BPETokenizer
    from lexgpt.tokenizer.tokenizer_file import TokenizerFileError

    folder = Path(folder)
    for name in FILE_NAMES:
        path = folder / name
        if not path.is_file():
            raise ModelFileError(f"{path}: not found (a lexgpt model folder holds {', '.join(FILE_NAMES)})")
        if path.stat().st_size > MAX_BYTES[name]:
            raise ModelFileError(f"{path}: larger than {MAX_BYTES[name]} bytes; not a file lexgpt writes")
    try:
        model = load_model(folder / WEIGHTS, config=folder / CONFIG)
        tokenizer = BPETokenizer.load(folder / TOKENIZER)
    except (ModelLoadError, TokenizerFileError) as err:
        raise ModelFileError(str(err).splitlines()[0]) from None
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ModelFileError(f"{folder / TOKENIZER}: {tokenizer.vocab_size} tokens, more than the model's "
                             f"vocab_size {model.config.vocab_size} in {folder / CONFIG}")
    return model, tokenizer
