"""End to end: `dagster dev` keeps the pipeline fresh by itself (declarative automation).

The user story of issue 10: start the UI, turn nothing on, and everything gets built; edit
a cleaning rule, "Reload definitions", and exactly what the edit changed is rebuilt. Starts
the real ``dagster dev`` over a temporary home (the tiny training config comes from
``LEXGPT_CONFIG``, as automation launches runs without run config). The only action is a
click on "Reload definitions" in headless Chromium after each rules edit; the test watches
through the UI's GraphQL API and the Runs page, and reads the materializations from the
same instance.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_CONFIG, free_port
from e2e_support import ALL_ASSETS, CHROMIUM, EDGES, Dagster, browser, screenshot, server, wait_for_texts, wait_http

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium; "
                       "CI does it in .ci/run)"),
]

# Two cleaning rules appended to the home's rules file: one changes the text (the synthetic
# episodes say "robot" a lot), one matches nothing (a new code version, the same corpus).
REAL_EDIT = ("\n[[rule]]\nname = \"robots_are_androids\"\npattern = '\\brobot\\b'\n"
             "replacement = 'android'\nflags = \"i\"\n")
NO_OP_EDIT = "\n[[rule]]\nname = \"never_matches\"\npattern = 'QQQ-not-in-any-transcript-QQQ'\nreplacement = ''\n"


def _materializations(instance) -> dict[str, list]:
    """Every materialization of every asset, oldest first."""
    import dagster as dg

    out = {}
    for name in ALL_ASSETS:
        records = instance.fetch_materializations(dg.AssetKey(name), limit=1000).records
        out[name] = sorted(records, key=lambda r: r.storage_id)
    return out


def _version(record) -> str:
    return record.asset_materialization.tags["dagster/data_version"]


def _new_runs(runs: list[dict], before: list[dict]) -> list[dict]:
    old = {r["runId"] for r in before}
    return [r for r in runs if r["runId"] not in old]


def _assert_automation_runs(runs: list[dict]) -> list[str]:
    """Each run was launched by the automation sensor and made one asset, or several none of
    which is an input of another (the baseline and the model both wait only for the shards),
    beside an observation of the source, which a cron tick may add; the assets, oldest run first."""
    names = []
    for run in reversed(runs):  # the API lists runs newest first
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags.get("dagster/from_automation_condition") == "true", tags
        selection = ["/".join(k["path"]) for k in run["assetSelection"] or []]
        assets = [a for a in selection if a != "lexicap_vtt"]
        assert not any(b in EDGES[a] for a in assets for b in assets), selection  # nothing waits on a sibling
        names += assets
    return names


def _after_edit(before: dict[str, list], after: dict[str, list]) -> tuple[list[str], dict[str, bool]]:
    """(assets materialized since ``before``, asset -> did its data version change)."""
    made = [a for a in ALL_ASSETS if len(after[a]) > len(before[a])]
    for a in made:
        assert len(after[a]) == len(before[a]) + 1, f"{a} ran {len(after[a]) - len(before[a])} times"
    changed = {a: _version(after[a][-1]) != _version(before[a][-1]) for a in ALL_ASSETS}
    return made, changed


def _runs_page_lists(page, base: str, runs: list[dict], name: str) -> None:
    """The UI's Runs page shows each of ``runs`` (by the short id the table prints)."""
    page.goto(f"{base}/runs", wait_until="domcontentloaded")
    wait_for_texts(page, [r["runId"][:8] for r in runs], timeout_s=90)
    screenshot(page, name)


def test_automation_keeps_the_pipeline_fresh(lexgpt_home: Path, tmp_path: Path):
    import dagster as dg

    dagster_home = Path(os.environ["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    rules = Path(os.environ["LEXGPT_CLEANING_RULES"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "dagster-dev.log"
    env = os.environ.copy() | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "LEXGPT_CONFIG": str(config)}
    cmd = ["dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    started = time.monotonic()
    with server(cmd, log, env) as proc, browser() as page:
        json.loads(wait_http(f"{base}/server_info", proc, log, timeout=150))
        ui = Dagster(base)
        location, repository = ui.wait_for_repository(log)
        sensor = ui.sensor(location, repository, "lexgpt_automation")
        # An automation condition sensor (Dagster calls its type AUTO_MATERIALIZE), on by default.
        assert (sensor["sensorType"], sensor["sensorState"]["status"]) == ("AUTO_MATERIALIZE", "RUNNING"), sensor

        # 1. Nothing turned on, nothing launched by hand: everything gets built.
        first = ui.wait_settled(log, timeout=1500)
        built_s = time.monotonic() - started
        names = _assert_automation_runs(first)
        assert sorted(names) == sorted(ALL_ASSETS), names  # each asset once, one run each
        for name, parents in EDGES.items():  # an asset's run only after its inputs' runs
            assert all(names.index(p) < names.index(name) for p in parents - {"lexicap_vtt"}), names
        checks = ui.check_statuses()  # every check ran on its asset's latest materialization
        assert "trained_model:beats_ngram_baseline" in checks and len(checks) >= 4, checks
        assert all(status in ("SUCCEEDED", "FAILED") for status in checks.values()), checks
        with dg.DagsterInstance.get() as instance:
            before = _materializations(instance)
        assert all(len(before[a]) == 1 for a in ALL_ASSETS), {a: len(v) for a, v in before.items()}

        ui.gql("mutation { setNuxSeen }")  # the one-time "join the community" dialog's Skip
        _runs_page_lists(page, base, first, "dagster_automation_first_build.png")

        # 2. A rule that changes the text, then "Reload definitions": cleaned_corpus re-runs,
        #    and below it exactly the assets an input of which has a new data version.
        rules.write_text(rules.read_text() + REAL_EDIT)
        ui.reload_in_browser(page, "cleaned_corpus")
        second = ui.wait_settled(log, timeout=1500)
        rerun = _assert_automation_runs(_new_runs(second, first))
        _runs_page_lists(page, base, _new_runs(second, first), "dagster_automation_after_edit.png")
        with dg.DagsterInstance.get() as instance:
            after = _materializations(instance)
        made, changed = _after_edit(before, after)
        assert changed["cleaned_corpus"] and changed["bpe_vocab"], changed
        inputs_changed = {a for a, parents in EDGES.items() if any(changed.get(p) for p in parents)}
        assert set(made) == {"cleaned_corpus"} | inputs_changed, (made, changed)
        assert "raw_subtitles" not in made
        assert sorted(rerun) == sorted(made), (rerun, made)
        assert all(status in ("SUCCEEDED", "FAILED") for status in ui.check_statuses().values())

        # 3. A rule that matches nothing: a new code version for cleaned_corpus (stale until
        #    it re-runs), the same corpus, so nothing below it runs.
        rules.write_text(rules.read_text() + NO_OP_EDIT)
        ui.reload_in_browser(page, "cleaned_corpus")
        third = ui.wait_settled(log, timeout=600)
        assert _assert_automation_runs(_new_runs(third, second)) == ["cleaned_corpus"]
        _runs_page_lists(page, base, _new_runs(third, second), "dagster_automation_after_no_op.png")
        with dg.DagsterInstance.get() as instance:
            made, changed = _after_edit(after, _materializations(instance))
        assert made == ["cleaned_corpus"] and not any(changed.values()), (made, changed)
    print(f"\nfirst build by automation: {built_s:.0f} s; whole test: {time.monotonic() - started:.0f} s")
