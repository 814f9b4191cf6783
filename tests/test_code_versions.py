"""Each asset's code version covers the lexgpt code it runs: every lexgpt module reachable by
import from the modules it lists is listed too, or named below as unable to change the
asset's output (and why). A new import of output-deciding code then fails here until the
list names it, instead of leaving the asset "fresh" after an edit that changed its output."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from pipelines.definitions import defs
from pipelines.versioning import modules_of

# Reached by import from some asset's code, and unable to change what it writes.
NEUTRAL = {
    "lexgpt.infra.atomic": "how a file is written (atomically), not what",
    "lexgpt.infra.hashing": "hashes recorded beside outputs",
    "lexgpt.infra.lock": "one writer at a time",
    "lexgpt.infra.workers": "a fork pool: the same results, in order",
    "lexgpt.infra.paths": "where caches and homes live",
    "lexgpt.infra.interrupts": "Ctrl-C handling",
    "lexgpt.infra.stable_read": "reads a file whole or refuses it",
    "lexgpt.tokenizer.bpe_merges": "learning merges: bpe_vocab's output, versioned by its content",
    "lexgpt.tokenizer.tokenizer_export": "the Hugging Face copy of the vocab, not read downstream",
    "lexgpt.tracking.runs": "MLflow runs, tags and metrics",
    "lexgpt.tracking.run_artifacts": "files logged to MLflow",
    "lexgpt.tracking.plots": "the loss chart logged to MLflow",
    "lexgpt.tracking.mlflow_quiet": "MLflow's terminal noise",
    "lexgpt.tracking.moved_home": "MLflow artifact paths of a moved home",
    "lexgpt.tracking.mlflow_model": "the pyfunc class registered for serving, not run by an asset",
    "lexgpt.tracking.registry": "looking a version up by alias (the gate's rules live here too: "
                                "registered_model lists it)",
    "lexgpt.generation.generate": "the served model's generation, registered, not run there",
    "lexgpt.generation.generation_params": "the served model's defaults, registered, not run there",
}
# The characters each token decodes to (every bits/char's denominator) come from the vocab
# file by this code; bpe_vocab folds them into its data version, so their readers are stale
# through their input when they change.
TOKEN_CHARS = {"lexgpt.tokenizer.bpe", "lexgpt.tokenizer.tokenizer_file"}
PER_ASSET = {"trained_model": TOKEN_CHARS, "ngram_baseline": TOKEN_CHARS}


def _is_module(name: str) -> bool:
    try:
        return name.startswith("lexgpt.") and importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name inside a module (a class), not a submodule
        return False


def _lexgpt_imports(module: str) -> set[str]:
    """The lexgpt modules ``module`` imports, at the top or inside a function."""
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # "from lexgpt.tracking import runs" imports a module
                full = f"{node.module}.{alias.name}"
                found.add(full if _is_module(full) else node.module)
    return {m for m in found if m.startswith("lexgpt.") and m != "lexgpt"}


def _reachable(modules: tuple[str, ...]) -> set[str]:
    seen, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += _lexgpt_imports(module)
    return seen


ASSETS = [a for a in defs.resolve_all_asset_specs() if a.code_version]


@pytest.mark.parametrize("spec", ASSETS, ids=[a.key.to_user_string() for a in ASSETS])
def test_the_code_version_lists_the_code_that_decides_the_output(spec):
    listed = modules_of(spec.code_version)
    unlisted = {m for m in _reachable(listed) if m.startswith("lexgpt.")} - set(listed)
    allowed = set(NEUTRAL) | PER_ASSET.get(spec.key.to_user_string(), set())
    assert sorted(unlisted - allowed) == [], f"{spec.key.to_user_string()} runs code its version does not hash"


def test_the_neutral_list_names_only_modules_that_exist():
    assert [m for m in [*NEUTRAL, *TOKEN_CHARS] if importlib.util.find_spec(m) is None] == []
