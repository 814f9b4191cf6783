"""The layout holds: every module imports, no import cycles among lexgpt's and pipelines'
modules (function-level imports count), no module over 400 lines, and no Dagster in lexgpt.

The import graph is read from the source (``ast``), so a cycle hidden in a function-level
import, which only bites when that function runs, is found too.
"""

from __future__ import annotations

import ast
import graphlib
import importlib
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

PACKAGES = ("lexgpt", "pipelines")
MAX_LINES = 400


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """``{"lexgpt.data.vtt": path, "lexgpt.data": path/__init__.py, ...}``."""
    files = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports, anywhere in its code."""
    files = module_files(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..y import z
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
                targets = [t if t in files else base for t in targets]  # a name, not a module
            else:
                continue
            for target in targets:
                while target and target not in files:  # lexgpt.data.vtt.parse -> lexgpt.data.vtt
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        return err.args[1]
    return None


def test_every_module_imports():
    names = [m.name for package in PACKAGES
             for m in pkgutil.walk_packages(importlib.import_module(package).__path__, prefix=package + ".")]
    assert len(names) == len(module_files(REPO)) - len(PACKAGES)  # walk_packages saw every file
    for name in names:
        importlib.import_module(name)


def test_no_import_cycles():
    graph = import_graph(REPO)
    assert any("lexgpt.training.train_loop" in deps for deps in graph.values())  # the graph is not empty
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_lexgpt_subpackages_depend_on_each_other_one_way():
    """Modules do not cycle, and neither do the concerns: infra <- tokenizer <- data <- ...
    (a cycle between two subpackages means one of their modules is in the wrong place)."""
    def package(name: str) -> str:
        return ".".join(name.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for name, deps in import_graph(REPO, ("lexgpt",)).items():
        packages.setdefault(package(name), set()).update(package(d) for d in deps if package(d) != package(name))
    assert "lexgpt.infra" in packages["lexgpt.data"]
    cycle = find_cycle(packages)
    assert cycle is None, "subpackage cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_function_level_and_relative_imports(tmp_path: Path):
    pkg = tmp_path / "lexgpt" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "lexgpt" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from lexgpt.sub import b\n")
    (pkg / "b.py").write_text("from .a import f\n")
    (pkg / "c.py").write_text("from lexgpt.sub.a import f\nimport lexgpt.sub.b\n")
    graph = import_graph(tmp_path, ("lexgpt",))
    assert graph["lexgpt.sub.c"] == {"lexgpt.sub.a", "lexgpt.sub.b"}
    assert sorted(find_cycle(graph)[:2]) == ["lexgpt.sub.a", "lexgpt.sub.b"]
    (pkg / "b.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path, ("lexgpt",))) is None


def test_no_module_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in module_files(REPO).values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these (at most {MAX_LINES} lines): {long}"


def test_lexgpt_has_no_dagster_import():
    offenders = []
    for name, path in module_files(REPO, ("lexgpt",)).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{name}:{node.lineno}" for m in modules if m.split(".")[0] == "dagster"]
    assert offenders == []
    # ... nor through a dependency: importing all of lexgpt leaves Dagster unloaded.
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import lexgpt
        for m in pkgutil.walk_packages(lexgpt.__path__, prefix="lexgpt."):
            importlib.import_module(m.name)
        print(sorted(m for m in sys.modules if m.split(".")[0] == "dagster"))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", sorted(n for n, p in module_files(REPO, ("lexgpt",)).items()
                                           if p.name == "__init__.py" and n != "lexgpt"))
def test_each_subpackage_lists_its_modules_and_reexports_nothing(package):
    """A reader opening ``lexgpt/data/__init__.py`` sees what is in the folder, and
    ``from lexgpt.data import vtt`` is the only way in (the module, not its names)."""
    module = importlib.import_module(package)
    folder = Path(module.__file__).parent
    mine = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    assert [m for m in mine if f"``{m}``" not in (module.__doc__ or "")] == []
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    assert [type(n).__name__ for n in tree.body[1:]] == []  # the docstring only


def test_lexgpt_top_level_holds_only_the_package_and_the_loader_shim():
    assert sorted(p.name for p in (REPO / "lexgpt").glob("*.py")) == ["__init__.py", "mlflow_model.py"]
