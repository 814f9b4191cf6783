"""The data assets in Dagster: what raw_subtitles reports, and one-line failures that
never stop the definitions from loading (broken rules file, near-miss source names)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from conftest import REPO, lexgpt_cli, write_episode
from pipelines.assets.cleaned_corpus import cleaned_corpus
from pipelines.assets.lexicap_vtt import lexicap_vtt
from pipelines.assets.raw_subtitles import raw_subtitles
from pipelines.resources import DataLake, LexicapSource


def materialize(lake: Path, vtt: Path, *assets) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(assets),
        resources={"source": LexicapSource(folder=str(vtt)), "lake": DataLake(root=str(lake))},
        raise_on_error=False,
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    err = event.step_failure_data.error
    while err.cause is not None and "dagster" in (err.cls_name or "").lower():
        err = err.cause
    return err.message.strip()


def test_raw_subtitles_lists_ignored_entries_and_dropped_lines(tmp_path: Path, small_lexicap: Path, monkeypatch):
    monkeypatch.delenv("LEXICAP_ALLOW_NEAR_MISSES", raising=False)
    (small_lexicap / "README.md").write_text("about")
    (small_lexicap / "episode_001_small.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:01.000\n x\n")
    ep = small_lexicap / "episode_007_large.vtt"
    ep.write_text("WEBVTT\n\nNOTE by hand\n\nwhere it starts\n00:00.000 --> 00:01.000\n hello\n")
    result = materialize(tmp_path / "lake", small_lexicap, raw_subtitles)
    assert result.success
    meta = {k: getattr(v, "value", v) for k, v in result.asset_materializations_for_node("raw_subtitles")[0].metadata.items()}
    assert (meta["identifier_lines"], meta["note_lines"], meta["style_lines"]) == (1, 1, 0)
    rows = lambda table: [list(r.data.values()) for r in table.records]  # noqa: E731
    assert ["episode_007_large.vtt", 5, "where it starts"] in rows(meta["identifier_examples"])
    assert meta["ignored_entries"] == 2
    assert ["'README.md'", "not an episode file"] in rows(meta["ignored"])
    assert ["'episode_001_small.vtt'", "other variant (small)"] in rows(meta["ignored"])
    assert meta["episodes"] == 7


def test_near_miss_fails_raw_subtitles_in_one_line(tmp_path: Path, small_lexicap: Path, monkeypatch):
    monkeypatch.delenv("LEXICAP_ALLOW_NEAR_MISSES", raising=False)
    write_episode(small_lexicap, 9).rename(small_lexicap / "episode_9_large.vtt")
    result = materialize(tmp_path / "lake", small_lexicap, raw_subtitles)
    assert not result.success
    message = failure_message(result)
    assert "'episode_9_large.vtt': episode id must be exactly 3 ASCII digits" in message
    assert "LEXICAP_ALLOW_NEAR_MISSES=1" in message and "\n" not in message
    assert not (tmp_path / "lake" / "raw_subtitles").exists()
    monkeypatch.setenv("LEXICAP_ALLOW_NEAR_MISSES", "1")
    assert materialize(tmp_path / "lake", small_lexicap, raw_subtitles).success


def test_raw_subtitles_records_the_version_of_the_bytes_it_parsed(tmp_path: Path, small_lexicap: Path):
    """An episode rewritten after lexicap_vtt was observed (a sync client mid-refresh): the
    materialization names what it ingested, not the observation, so `lexgpt status` (input
    version vs the folder now) calls it stale once the folder is back to what was observed."""
    from lexgpt.data.lexicap import source_fingerprint
    from lexgpt.infra.hashing import short
    from pipelines.lake import latest_data_version
    from pipelines.staleness import observe_sources

    instance = dg.DagsterInstance.ephemeral()
    resources = {"source": LexicapSource(folder=str(small_lexicap)), "lake": DataLake(root=str(tmp_path / "lake"))}
    observe_sources(dg.Definitions(assets=[lexicap_vtt, raw_subtitles], resources=resources), instance)
    observed = latest_data_version(instance, lexicap_vtt.key, is_source=True)
    assert observed == short(source_fingerprint(small_lexicap))
    episode = small_lexicap / "episode_003_large.vtt"
    original = episode.read_bytes()
    episode.write_bytes(original[: len(original) // 2].rsplit(b"\n\n", 1)[0] + b"\n")  # half the cues
    parsed = short(source_fingerprint(small_lexicap))
    result = dg.materialize([raw_subtitles], instance=instance, resources=resources)
    assert result.success
    tags = result.asset_materializations_for_node("raw_subtitles")[0].tags
    assert tags["dagster/input_data_version/lexicap_vtt"] == parsed != observed
    episode.write_bytes(original)  # the writer finishes: the folder is what was observed
    assert short(source_fingerprint(small_lexicap)) == observed != parsed


BROKEN_RULES = {
    "bad regex": ("[[rule]]\nname = 'oops'\npattern = '(unclosed'\nreplacement = ''\n", "rule 'oops': bad pattern"),
    "pattern = 5": ("[[rule]]\nname = 'oops'\npattern = 5\nreplacement = ''\n", "rule 'oops': pattern must be a string"),
    "rule = 'x'": ("rule = 'x'\n", "'rule' must be a list of [[rule]] tables"),
    "bad escape": ("[[rule]]\nname = 'oops'\npattern = 'a'\nreplacement = '\\q'\n", "rule 'oops': bad replacement"),
}


@pytest.mark.parametrize("case", BROKEN_RULES)
def test_broken_rules_file_fails_cleaned_corpus_only(tmp_path: Path, small_lexicap: Path, monkeypatch, case: str):
    body, why = BROKEN_RULES[case]
    rules = tmp_path / "rules.toml"
    rules.write_text(body)
    monkeypatch.setenv("LEXGPT_CLEANING_RULES", str(rules))
    lake = tmp_path / "lake"
    assert materialize(lake, small_lexicap, raw_subtitles).success
    result = materialize(lake, small_lexicap, cleaned_corpus)
    assert not result.success
    message = failure_message(result)
    assert message.startswith(f"lexgpt.data.cleaning.RuleError: {rules}: ") and why in message, message
    assert "\n" not in message
    assert not (lake / "cleaned_corpus").exists()


@pytest.mark.timeout(300)
def test_broken_rules_file_does_not_stop_definitions_or_status(lexgpt_home: Path):
    """Definitions load (the code version hashes the bytes), `status` prints no traceback."""
    rules = lexgpt_home / "cleaning_rules.toml"
    rules.write_text("[[rule]]\nname = 'oops'\npattern = 5\nreplacement = ''\n")
    loaded = subprocess.run([sys.executable, "-c", "import pipelines.definitions"], cwd=REPO,
                            capture_output=True, text=True, timeout=240)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    proc = lexgpt_cli("status", check=False, timeout=240)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "cleaned_corpus" in proc.stdout


def test_importing_the_definitions_writes_nothing_and_sets_nothing(tmp_path: Path):
    """No import-time side effects: the ``lexgpt`` command and ``lexgpt ui`` set the home up."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["LEXGPT_HOME"] = str(tmp_path / "home")
    code = "import os, pipelines.definitions; print(os.environ.get('DAGSTER_HOME'))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=240, env=env)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip() == "None"
    assert not (tmp_path / "home").exists()
