"""End to end in a real browser: the Dagster UI and the MLflow UI over a small pipeline.

Starts the real servers on 127.0.0.1 (free ports, temporary homes), drives Dagster through
its GraphQL API (asset graph, staleness, launching a run), then opens the pages in headless
Chromium and saves screenshots to ``artifacts/screenshots/`` (git-ignored) for a human to
look at. Needs Debian's ``/usr/bin/chromium`` (CI installs it, see ``.ci/run``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from conftest import REPO, TINY_CONFIG, free_port
from e2e_support import ALL_ASSETS, CHROMIUM, EDGES, Dagster, browser, screenshot, wait_for_texts
from e2e_support import get_json as _get_json
from e2e_support import post_json as _post_json
from e2e_support import server as _server
from e2e_support import tail as _tail
from e2e_support import wait_http as _wait_http

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium; "
                       "CI does it in .ci/run)"),
]


# ------------------------------------------------------------------------------ Dagster

def test_dagster_ui_end_to_end(lexgpt_home: Path, tmp_path: Path):
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "dagster-dev.log"
    env = os.environ.copy() | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = ["dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    with _server(cmd, log, env) as proc:
        info = json.loads(_wait_http(f"{base}/server_info", proc, log, timeout=150))
        assert "dagster_webserver_version" in info, info
        ui = Dagster(base)
        location, repository = ui.wait_for_repository(log)
        # Automation is on by default (tests/test_e2e_automation.py); this test materializes
        # by hand, so first it turns automation off, as a user can on the Automation page.
        ui.stop_sensor(location, repository, "lexgpt_automation")

        # The asset graph as the definitions declare it; nothing materialized yet.
        nodes = ui.asset_nodes()
        assert set(ALL_ASSETS) | {"lexicap_vtt"} <= set(nodes), sorted(nodes)
        for name, parents in EDGES.items():
            assert {"/".join(k["path"]) for k in nodes[name]["dependencyKeys"]} == parents, name
            assert nodes[name]["isMaterializable"]
            assert nodes[name]["staleStatus"] == "MISSING", (name, nodes[name])
        assert nodes["lexicap_vtt"]["isObservable"] and not nodes["lexicap_vtt"]["isMaterializable"]
        assert {nodes[a]["groupName"] for a in ALL_ASSETS} == {"data", "tokens", "model"}

        # Observe the source (the UI's "Observe sources"), then materialize the data stages.
        observe = ui.launch_assets(location, repository, ["lexicap_vtt"])
        assert ui.wait_run(observe, timeout=120) == "SUCCESS", ui.run_failure(observe)
        run_id = ui.launch_assets(location, repository, ["raw_subtitles", "cleaned_corpus"])
        status = ui.wait_run(run_id, timeout=180)
        assert status == "SUCCESS", f"run {status}:\n{ui.run_failure(run_id)}\n{_tail(log)}"

        nodes = ui.asset_nodes()
        assert nodes["raw_subtitles"]["staleStatus"] == "FRESH", nodes["raw_subtitles"]
        assert nodes["cleaned_corpus"]["staleStatus"] == "FRESH", nodes["cleaned_corpus"]
        for name in ("bpe_vocab", "token_shards", "ngram_baseline", "trained_model", "registered_model",
                     "evaluation_samples"):
            assert nodes[name]["staleStatus"] == "MISSING", nodes[name]
        assert (lexgpt_home / "data_lake" / "cleaned_corpus" / "corpus.parquet").exists()

        # The same graph, rendered by the UI in a real browser. (The one-time "join the
        # community" dialog is dismissed the way its Skip button does, on the server.)
        ui.gql("mutation { setNuxSeen }")
        with browser() as page:
            page.goto(f"{base}/asset-groups", wait_until="domcontentloaded")
            wait_for_texts(page, ["Global asset lineage", "data", "tokens", "model"], timeout_s=90)
            # The three groups start collapsed; expand them (the graph's Alt+E shortcut).
            page.wait_for_timeout(500)
            page.keyboard.press("Alt+e")
            wait_for_texts(page, ALL_ASSETS, timeout_s=60)
            assert page.get_by_text("Join the Dagster community").count() == 0
            page.wait_for_timeout(1500)  # let the layout and the status colours settle
            screenshot(page, "dagster_asset_graph.png")

            page.goto(f"{base}/assets/cleaned_corpus", wait_until="domcontentloaded")
            # The asset's page shows the metadata the asset recorded (rule hit counts...).
            wait_for_texts(page, ["cleaned_corpus", "hits_per_rule", "rules_sha256", "preview"],
                            timeout_s=60)
            page.wait_for_timeout(1000)
            screenshot(page, "dagster_cleaned_corpus.png")


# ------------------------------------------------------------------------------ MLflow

def test_mlflow_ui_end_to_end(lexgpt_home: Path, tmp_path: Path):
    # A training long enough (a 1.5-minute budget) to look at it while it runs.
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("max_steps: 30", "max_steps: 100000\n  max_minutes: 1.5"))

    uri = os.environ["MLFLOW_TRACKING_URI"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "mlflow-ui.log"
    env = os.environ.copy() | {"PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                               "DO_NOT_TRACK": "true"}
    refresh_log = tmp_path / "refresh.log"
    # `lexgpt mlflow-ui` as a user starts it (one worker by default).
    cmd = [sys.executable, "-m", "pipelines.cli", "mlflow-ui", "--port", str(port)]
    with _server(cmd, log, env) as proc:
        _wait_http(f"{base}/health", proc, log, timeout=300)  # minutes on a busy 2-core box
        with _server([sys.executable, "-m", "pipelines.cli", "refresh", "--config", str(config)],
                     refresh_log, env | {"OMP_NUM_THREADS": "1"}) as refresh, browser() as page:
            page.add_init_script(MLFLOW_NO_ASSISTANT)  # its first-visit side panel covers the page
            # While training runs: the run exists, is RUNNING, and already has metrics.
            deadline = time.monotonic() + 600
            live = None
            while live is None:
                assert refresh.poll() is None, f"refresh ended before training was seen:\n{_tail(refresh_log)}"
                assert time.monotonic() < deadline, f"no live run:\n{_tail(refresh_log)}"
                time.sleep(2)
                try:
                    exp = _get_json(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=lexgpt")
                except urllib.error.HTTPError:
                    continue
                exp_id = exp["experiment"]["experiment_id"]
                runs = _post_json(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]})
                for run in runs.get("runs", []):
                    keys = {m["key"] for m in run["data"].get("metrics", [])}
                    if run["info"]["status"] == "RUNNING" and "train_loss" in keys:
                        live = run
            run_id = live["info"]["run_id"]
            page.goto(f"{base}/#/experiments/{exp_id}/runs/{run_id}", wait_until="domcontentloaded")
            wait_for_texts(page, ["train_loss", "Running"], timeout_s=90)
            _close_mlflow_assistant(page)
            status = _get_json(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]["info"]["status"]
            assert status == "RUNNING", "the page was checked only after training ended"
            screenshot(page, "mlflow_run_live.png")
            refresh.wait(timeout=900)
            assert refresh.returncode == 0, _tail(refresh_log)

        assert "verdict" in refresh_log.read_text()
        exp_id = _get_json(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=lexgpt")[
            "experiment"]["experiment_id"]
        runs = _post_json(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]})["runs"]
        assert len(runs) == 1, runs
        run = runs[0]
        assert run["info"]["run_id"] == run_id and run["info"]["status"] == "FINISHED"
        # The run's duration is the training's (it opened when training started).
        assert (run["info"]["end_time"] - run["info"]["start_time"]) / 1000 > 60
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert {"val_bpc", "train_loss", "val_loss"} <= set(metrics), sorted(metrics)
        assert 0 < metrics["val_bpc"] < 10
        model = _get_json(f"{base}/api/2.0/mlflow/registered-models/get?name=lexgpt")["registered_model"]
        assert model["name"] == "lexgpt"
        # champion only if it beat the n-gram baseline (the gate); challenger otherwise
        (alias,) = [a["alias"] for a in model.get("aliases", [])]
        assert alias in ("champion", "challenger"), model
        assert model["latest_versions"][0]["run_id"] == run_id

        with browser() as page:
            page.add_init_script(MLFLOW_NO_ASSISTANT)
            # The experiment is a model-training one (MLflow's kind tag), and the link that
            # `lexgpt mlflow-ui` printed opens on its training runs, whose list shows val
            # bits/char. (MLflow 3.17 lands on the GenAI overview by default whatever the
            # kind: the link names the ML view.)
            tags = {t["key"]: t["value"] for t in _get_json(
                f"{base}/api/2.0/mlflow/experiments/get?experiment_id={exp_id}")["experiment"]["tags"]}
            assert tags["mlflow.experimentKind"] == "custom_model_development", tags
            from pipelines.registry_commands import _experiment_url  # what `lexgpt mlflow-ui` prints

            assert re.search(r"MLflow UI on \S+\?workflowType=machine_learning", log.read_text())
            link = _experiment_url(uri, base)
            assert link == f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
            page.goto(link, wait_until="domcontentloaded")
            assert run["info"]["run_name"].startswith(f"{metrics['val_bpc']:.3f} bpc ")
            wait_for_texts(page, ["Runs", "lexgpt", run["info"]["run_name"]], timeout_s=90)
            _close_mlflow_assistant(page)
            assert "/runs" in page.url, page.url
            screenshot(page, "mlflow_experiment.png")

            page.goto(f"{base}/#/experiments/{exp_id}/runs/{run_id}", wait_until="domcontentloaded")
            body = wait_for_texts(page, ["val_bpc", "train_loss", "tokens_per_s", "Parameters"],
                                   timeout_s=90)
            assert "lexgpt" in body  # the model logged by the run, registered as lexgpt
            _close_mlflow_assistant(page)
            page.get_by_text("val_bpc", exact=True).first.scroll_into_view_if_needed()
            screenshot(page, "mlflow_run.png")

            page.goto(f"{base}/#/models/lexgpt", wait_until="domcontentloaded")
            wait_for_texts(page, ["lexgpt", "Version 1", alias, "lexgpt.corpus_version"],
                            timeout_s=90)
            _close_mlflow_assistant(page)
            screenshot(page, "mlflow_registered_model.png")


MLFLOW_NO_ASSISTANT = """
try {
  localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
  localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
} catch (e) {}
"""


def _close_mlflow_assistant(page) -> None:
    """Make sure MLflow's 'Assistant' side panel is closed (it only hides the page)."""
    page.wait_for_timeout(1000)
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()
        page.wait_for_timeout(800)
