"""Repo-wide safety: no unpickling of untrusted files, servers bound to localhost.

The sources are scanned, so a new ``pickle.load`` or ``torch.load`` without
``weights_only=True`` anywhere in ``lexgpt/`` or ``pipelines/`` fails here.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SOURCE_DIRS = [REPO / "lexgpt", REPO / "pipelines"]


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _unsafe_loads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases = {}  # local name -> module, for `import pickle as pk` / `from torch import load`
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = aliases.get(head, head) + (f".{rest}" if rest else "")
        kwargs = {k.arg: k.value for k in node.keywords}
        where = f"{path.relative_to(REPO)}:{node.lineno} {full}"
        if full in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "joblib.load",
                    "pickle.Unpickler", "_pickle.load", "_pickle.loads", "pandas.read_pickle"):
            found.append(where)
        elif full == "torch.load":
            w = kwargs.get("weights_only")
            if not (isinstance(w, ast.Constant) and w.value is True):
                found.append(where + " without weights_only=True")
        elif full in ("numpy.load", "np.load"):
            a = kwargs.get("allow_pickle")
            if isinstance(a, ast.Constant) and a.value is True:
                found.append(where + " with allow_pickle=True")
    return found


def test_no_unsafe_deserialization_in_sources():
    files = [p for d in SOURCE_DIRS for p in d.rglob("*.py")]
    assert len(files) > 10
    problems = [hit for path in files for hit in _unsafe_loads(path)]
    assert problems == [], "unsafe loads:\n" + "\n".join(problems)


def test_unsafe_load_scanner_catches_the_patterns(tmp_path: Path):
    sample = tmp_path / "lexgpt_sample.py"
    sample.write_text(textwrap.dedent(
        """
        import pickle, torch
        import pickle as pk
        from torch import load as tload
        import numpy as np
        pickle.load(open("a", "rb"))
        pk.loads(b"")
        torch.load("x")
        torch.load("x", weights_only=False)
        tload("x")
        np.load("x.npy", allow_pickle=True)
        torch.load("ok", weights_only=True)
        np.load("ok.npy")
        """
    ))
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        hits = _unsafe_loads(sample)
    finally:
        REPO = saved
    assert len(hits) == 6, hits


def test_servers_default_to_localhost():
    from pipelines.cli import build_parser

    parser = build_parser()
    for command in ("ui", "mlflow-ui"):
        args = parser.parse_args([command])
        assert args.host == "127.0.0.1", command
    # ... and no source file binds to every interface.
    for path in (p for d in SOURCE_DIRS for p in d.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "0.0.0.0" not in text and '"::"' not in text, path
