"""Declared inputs only: an asset reaches the lake through its scoped view, which sees its own
folder and its declared deps; a check sees the asset it checks and its additional deps."""


import ast
from pathlib import Path

import dagster as dg
import pytest

from pipelines.lake_layout import UndeclaredLakeRead
from pipelines.resources import DataLake

ASSETS_DIR = Path(__file__).resolve().parents[1] / "pipelines" / "assets"
SCOPERS = {"lake": "for_asset", "lake_reader": "for_check"}


def _decorated(fn: ast.FunctionDef, names: set[str]) -> bool:
    for dec in fn.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute) and target.attr in names:
            return True
    return False


def test_every_asset_and_check_uses_the_lake_only_through_its_scoped_view():
    """Structure: inside an asset or check, the ``lake``/``lake_reader`` resource is used for one
    thing, ``lake.for_asset(context)`` / ``lake_reader.for_check(context)``; and no asset module
    builds a lake path any other way."""
    seen = 0
    for module in sorted(ASSETS_DIR.glob("*.py")):
        tree = ast.parse(module.read_text())
        source = module.read_text()
        for forbidden in ("whole_lake", "LakeLayout(", "data_lake()", "LEXGPT_DATA_LAKE"):
            assert forbidden not in source, f"{module.name} uses {forbidden}"
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef) or not _decorated(fn, {"asset", "asset_check"}):
                continue
            params = {a.arg for a in fn.args.args} & set(SCOPERS)
            for param in params:
                seen += 1
                uses = [n for n in ast.walk(fn) if isinstance(n, ast.Name) and n.id == param]
                scoped = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                          and isinstance(n.func.value, ast.Name) and n.func.value.id == param
                          and n.func.attr == SCOPERS[param]]
                assert len(uses) == len(scoped) == 1, (
                    f"{module.name}:{fn.name} uses {param} other than once as {param}.{SCOPERS[param]}(context)")
    assert seen >= 8  # the pipeline's lake users were all found


def _toy(tmp_path: Path, reads: str) -> dg.Definitions:
    @dg.asset
    def upstream(context: dg.AssetExecutionContext, lake: DataLake) -> None:
        out = lake.for_asset(context).path("upstream", "x.txt")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("x")

    @dg.asset
    def elsewhere(context: dg.AssetExecutionContext, lake: DataLake) -> None:
        lake.for_asset(context).path("elsewhere").mkdir(parents=True, exist_ok=True)

    @dg.asset(deps=[upstream])
    def downstream(context: dg.AssetExecutionContext, lake: DataLake) -> None:
        view = lake.for_asset(context)
        view.path(reads, "x.txt").read_text() if reads == "upstream" else view.path(reads)

    @dg.asset_check(asset=downstream, additional_deps=[elsewhere])
    def check_reads(context: dg.AssetCheckExecutionContext, lake_reader: DataLake) -> dg.AssetCheckResult:
        view = lake_reader.for_check(context)
        view.path("downstream"), view.path("elsewhere")
        with pytest.raises(UndeclaredLakeRead, match="reads upstream/ without declaring it"):
            view.path("upstream")
        return dg.AssetCheckResult(passed=True)

    lake = str(tmp_path / "lake")
    return dg.Definitions(assets=[upstream, elsewhere, downstream], asset_checks=[check_reads],
                          resources={"lake": DataLake(root=lake), "lake_reader": DataLake(root=lake, read_only=True)})


def test_a_declared_read_works_and_the_check_sees_what_it_declares(tmp_path, monkeypatch):
    monkeypatch.setenv("LEXGPT_HOME", str(tmp_path))
    defs = _toy(tmp_path, reads="upstream")
    result = dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_an_undeclared_read_fails_in_one_line_naming_asset_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LEXGPT_HOME", str(tmp_path))
    defs = _toy(tmp_path, reads="elsewhere")
    result = dg.materialize(defs.assets, resources=defs.resources, instance=dg.DagsterInstance.ephemeral(),
                            selection=["upstream", "elsewhere", "downstream"], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause \
        else failure.step_failure_data.error.message
    assert "downstream reads elsewhere/ without declaring it: add elsewhere to its deps" in message
