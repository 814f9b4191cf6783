"""``status`` tells the truth and ``refresh`` repairs it: a toy graph in-process (fast), and
the real command for Ctrl-C and ``--only``."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_CONFIG, lexgpt_cli

pytestmark = pytest.mark.filterwarnings("ignore:.*observable_source_asset.*")


def _toy_defs(root: Path, source_file: Path, code_version: str = "1"):
    """src (observable: a file) -> a (configurable: copies it n times) -> b (upper-cases a)."""
    import dagster as dg

    from lexgpt.infra import atomic
    from lexgpt.infra.hashing import sha256_file
    from pipelines.resources import DataLake
    from pipelines.staleness import CONFIG_HASH_KEY, config_hash

    @dg.observable_source_asset
    def src() -> dg.DataVersion:
        return dg.DataVersion(sha256_file(source_file)[:16])

    class ACfg(dg.Config):
        n: int = 1

    @dg.asset(deps=[src], code_version=code_version)
    def a(context: dg.AssetExecutionContext, config: ACfg, lake: DataLake) -> dg.MaterializeResult:
        layout = lake.for_asset(context)
        out = layout.path("a", "a.txt")
        atomic.write_text(out, source_file.read_text() * config.n)
        return dg.MaterializeResult(
            metadata={CONFIG_HASH_KEY: config_hash(config.model_dump()), **layout.files_metadata("a")},
            data_version=dg.DataVersion(sha256_file(out)[:16]))

    @dg.asset(deps=[a], code_version="1")
    def b(context: dg.AssetExecutionContext, lake: DataLake) -> dg.MaterializeResult:
        if os.environ.get("TOY_CTRL_C"):
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C mid-step
            time.sleep(30)
        layout = lake.for_asset(context)
        out = layout.path("b", "b.txt")
        atomic.write_text(out, layout.path("a", "a.txt").read_text().upper())
        return dg.MaterializeResult(metadata=layout.files_metadata("b"),
                                    data_version=dg.DataVersion(sha256_file(out)[:16]))

    return dg.Definitions(assets=[src, a, b], resources={"lake": DataLake(root=str(root))})


@pytest.fixture
def toy(tmp_path: Path, monkeypatch):
    import dagster as dg

    monkeypatch.setenv("LEXGPT_HOME", str(tmp_path / "home"))
    source = tmp_path / "source.txt"
    source.write_text("hello ")
    lake = tmp_path / "lake"
    with dg.DagsterInstance.ephemeral() as instance:
        yield _toy_defs(lake, source), instance, source, lake


def _status(defs, instance, **kw) -> dict:
    from pipelines.staleness import asset_states

    return {s.name: s for s in asset_states(defs, instance, **kw)}


def _refresh(defs, instance, **kw):
    from pipelines.staleness import refresh

    return refresh(defs, instance, log=lambda line: None, **kw)


def test_no_private_dagster_imports():
    """Only Dagster's public API: private modules change without notice between releases."""
    offenders = [f"{p.relative_to(REPO)}:{i}" for folder in ("pipelines", "lexgpt")
                 for p in sorted((REPO / folder).rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bdagster\._", line)]
    assert offenders == []


def test_missing_then_fresh_with_the_cost_of_a_refresh(toy):
    defs, instance, _, _ = toy
    assert {n: s.status for n, s in _status(defs, instance).items()} == {"a": "missing", "b": "missing"}
    assert {s.cost for s in _status(defs, instance).values()} == {"runs"}
    assert _refresh(defs, instance).executed == ["a", "b"]
    states = _status(defs, instance)
    assert {n: (s.status, s.cost) for n, s in states.items()} == {"a": ("fresh", ""), "b": ("fresh", "")}
    assert all(s.last_seconds is not None and s.last_seconds >= 0 for s in states.values())


def test_new_source_content_shows_before_anything_observed_it(toy):
    defs, instance, source, _ = toy
    _refresh(defs, instance)
    source.write_text("changed ")
    from lexgpt.infra.hashing import sha256_file

    now = {"src": sha256_file(source)[:16]}  # what the CLI reads from the folder itself
    assert _status(defs, instance)["a"].status == "fresh"  # the last observation is old...
    states = _status(defs, instance, sources_now=now)  # ...the folder itself is not
    assert states["a"].status == "stale" and states["a"].causes == ["input src: has a new data version"]
    assert states["b"].cost == "runs only if a changes content"
    assert _refresh(defs, instance).executed == ["a", "b"]


@pytest.mark.parametrize("damage", ["rewritten", "deleted"])
def test_file_on_disk_differs_from_record_is_stale_and_refresh_repairs(toy, damage: str):
    """What a kill between writing a file and recording it leaves: a file Dagster never saw."""
    from pipelines.staleness import DISK_DIFFERS

    defs, instance, _, lake = toy
    _refresh(defs, instance)
    target = lake / "a" / "a.txt"
    if damage == "rewritten":
        target.write_text("a version nobody recorded")
    else:
        target.unlink()
    states = _status(defs, instance)
    assert (states["a"].status, states["a"].causes) == ("stale", [DISK_DIFFERS])
    assert states["b"].status == "fresh"
    report = _refresh(defs, instance)
    assert report.executed == ["a"]  # rebuilt the same content, so b stays
    assert target.read_text() == "hello "
    assert {s.status for s in _status(defs, instance).values()} == {"fresh"}


def test_run_config_and_code_version_changes_are_stale(toy, tmp_path: Path):
    defs, instance, source, lake = toy
    _refresh(defs, instance)
    assert _status(defs, instance, config={"a": {"n": 1}})["a"].status == "fresh"
    assert _status(defs, instance, config={"a": {"n": 2}})["a"].causes == ["run config changed"]
    _refresh(defs, instance, run_config={"a": {"n": 2}}, effective_config={"a": {"n": 2}})
    assert (lake / "a" / "a.txt").read_text() == "hello hello "
    assert _status(defs, instance, config={"a": {"n": 2}})["a"].status == "fresh"

    edited = _toy_defs(lake, source, code_version="2")
    states = _status(edited, instance, config={"a": {"n": 2}})
    assert states["a"].causes == ["code version changed"]


def test_ctrl_c_mid_asset_keeps_previous_version(toy, monkeypatch):
    from pipelines.staleness import Interrupted

    defs, instance, source, lake = toy
    _refresh(defs, instance)
    before = (lake / "b" / "b.txt").read_text()
    source.write_text("new ")
    monkeypatch.setenv("TOY_CTRL_C", "1")
    with pytest.raises(Interrupted) as caught:
        _refresh(defs, instance)
    assert str(caught.value) == "interrupted during b; previous version kept"
    assert (lake / "b" / "b.txt").read_text() == before
    assert _status(defs, instance)["b"].status == "stale"


def test_refresh_only_unknown_asset_lists_the_names(lexgpt_home: Path):
    proc = lexgpt_cli("refresh", "--only", "raw_subtitles", "trained_modle", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "lexgpt refresh --only: no asset named trained_modle (assets: raw_subtitles, cleaned_corpus, "
        "bpe_vocab, token_shards, ngram_baseline, trained_model, registered_model, evaluation_samples)"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("delay_s", [0.3, 3.0])  # during the run's setup / well into training
def test_ctrl_c_during_training_one_line_exit_130(lexgpt_home: Path, tmp_path: Path, delay_s: float):
    config = tmp_path / "long.yaml"
    config.write_text(TINY_CONFIG.replace("max_steps: 30", "max_steps: 1000000"))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "refresh", "--config", str(config)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip().startswith("running  trained_model"):
                break
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)  # a bound on a hang, not a speed target (exits in ~5 s)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err  # all of it: a rare race printed one here once (pytest cuts it short)
    assert err.strip().splitlines()[-1] == "interrupted during trained_model; previous version kept"
    states = {s["name"]: s for s in json.loads(lexgpt_cli("status", "--json", "--config", str(config)).stdout)}
    assert states["trained_model"]["status"] == "missing"
    assert states["token_shards"]["status"] == "fresh"
