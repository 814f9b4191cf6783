"""Code versions: a hash of the library code each asset runs, so an edit marks it stale."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lexgpt.hashing import sha256_bytes, sha256_json


def module_source_hash(*modules: str) -> str:
    """Hash of the source files of the given modules (``lexgpt.bpe`` etc.)."""
    parts = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(name)
        parts.append(name + "\0" + sha256_bytes(Path(spec.origin).read_bytes()))
    return sha256_bytes("\n".join(parts).encode())


def code_version(*modules: str, extra: object = None) -> str:
    """A short code version from module sources plus anything else the output depends on."""
    return sha256_json({"modules": module_source_hash(*modules), "extra": extra})[:16]
