"""Code versions: a hash of the code each asset runs, so an edit that can change its output
marks it stale, and one that cannot (a comment, a docstring, formatting) does not.

The hash is over the parsed code (:func:`semantic_hash`): comments and formatting never
reach the syntax tree, and docstrings are dropped from it. So are asset checks (functions
decorated with ``asset_check``): an asset's module holds its checks, and a check only reads
the asset, it never decides its output, so editing one leaves the asset fresh (the edited
check runs with the asset's next materialization, or from the UI's Checks tab).

>>> semantic_hash("x = 1  # one") == semantic_hash('''
... x = (
...     1
... )''')
True
>>> semantic_hash("def f():\\n    '''Doc.'''\\n    return 1") == semantic_hash("def f():\\n    return 1")
True
>>> semantic_hash("x = 1") == semantic_hash("x = 2")
False
>>> semantic_hash("x = 1\\n@dg.asset_check(asset=a)\\ndef c():\\n    return 2") == semantic_hash("x = 1")
True
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from lexgpt.infra.hashing import sha256_bytes, sha256_json


def _drop_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _is_check(node: ast.stmt) -> bool:
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("asset_check", "multi_asset_check"):
            return True
    return False


def semantic_hash(source: str) -> str:
    """Hash of Python source as parsed: comments, docstrings, layout and asset checks do not count."""
    tree = ast.parse(source)
    tree.body = [node for node in tree.body if not _is_check(node)]
    tree = _drop_docstrings(tree)
    return sha256_bytes(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())


def module_source_hash(*modules: str) -> str:
    """Semantic hash of the given modules' sources (``lexgpt.tokenizer.bpe`` etc.)."""
    parts = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(name)
        parts.append(name + "\0" + semantic_hash(Path(spec.origin).read_text(encoding="utf-8")))
    return sha256_bytes("\n".join(parts).encode())


_MODULES: dict[str, tuple[str, ...]] = {}  # code version -> the modules it hashes


def code_version(*modules: str, extra: object = None) -> str:
    """A short code version from module code plus anything else the output depends on."""
    version = sha256_json({"modules": module_source_hash(*modules), "extra": extra})[:16]
    _MODULES[version] = modules
    return version


def modules_of(version: str) -> tuple[str, ...]:
    """The modules a :func:`code_version` hashed (tests check the lists cover what runs)."""
    return _MODULES[version]
