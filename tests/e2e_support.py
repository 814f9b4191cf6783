"""What the end-to-end tests share: starting a server, waiting for it, a small client for
Dagster's GraphQL API (the one its web UI uses), and headless Chromium through Playwright."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO, kill_group

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

ALL_ASSETS = ["raw_subtitles", "cleaned_corpus", "bpe_vocab", "token_shards", "ngram_baseline", "trained_model",
              "registered_model", "evaluation_samples"]
EDGES = {  # asset -> its upstream assets, as the definitions declare them
    "raw_subtitles": {"lexicap_vtt"},
    "cleaned_corpus": {"raw_subtitles"},
    "bpe_vocab": {"cleaned_corpus"},
    "token_shards": {"cleaned_corpus", "bpe_vocab"},
    "ngram_baseline": {"token_shards", "bpe_vocab"},
    "trained_model": {"token_shards", "bpe_vocab"},
    "registered_model": {"trained_model", "ngram_baseline", "cleaned_corpus", "token_shards", "bpe_vocab"},
    "evaluation_samples": {"registered_model"},
}


@contextmanager
def server(cmd: list[str], log: Path, env: dict[str, str], cwd: Path = REPO):
    """Run ``cmd`` in its own process group; on exit kill the whole group."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        kill_group(proc)


def tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no log)"


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}) before {url} answered:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return resp.read()
        except (urllib.error.URLError, OSError) as err:
            last = err
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f}s ({last}):\n{tail(log)}")


def post_json(url: str, payload: dict, timeout: float = 60) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def get_json(url: str, timeout: float = 30) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Dagster:
    def __init__(self, base: str):
        self.base = base

    def gql(self, query: str, variables: dict | None = None) -> dict:
        result = post_json(f"{self.base}/graphql", {"query": query, "variables": variables or {}})
        assert not result.get("errors"), result["errors"]
        return result["data"]

    def repository(self) -> tuple[str, str]:
        data = self.gql("""{ workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename
              ... on RepositoryLocation { repositories { name } }
              ... on PythonError { message stack } } } } } }""")
        entries = data["workspaceOrError"]["locationEntries"]
        assert len(entries) == 1, entries
        entry = entries[0]
        loc = entry["locationOrLoadError"]
        if loc is None or entry["loadStatus"] != "LOADED":
            return None  # still loading
        assert loc["__typename"] == "RepositoryLocation", f"code location failed to load: {loc}"
        return entry["name"], loc["repositories"][0]["name"]

    def wait_for_repository(self, log: Path, timeout: float = 120) -> tuple[str, str]:
        """(location, repository) once the code location has loaded; fails with the server log."""
        deadline = time.monotonic() + timeout
        while (repo := self.repository()) is None:
            assert time.monotonic() < deadline, f"code location never loaded:\n{tail(log)}"
            time.sleep(1)
        return repo

    def asset_nodes(self) -> dict[str, dict]:
        data = self.gql("""{ assetNodes { assetKey { path } groupName isMaterializable isObservable
            opVersion staleStatus staleCauses { reason category dependency { path } }
            dependencyKeys { path } } }""")
        return {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}

    def launch_assets(self, location: str, repository: str, assets: list[str]) -> str:
        data = self.gql(
            """mutation Launch($executionParams: ExecutionParams!) {
                launchRun(executionParams: $executionParams) {
                  __typename
                  ... on LaunchRunSuccess { run { runId } }
                  ... on PythonError { message stack }
                  ... on RunConfigValidationInvalid { errors { message } }
                  ... on InvalidSubsetError { message }
                  ... on PipelineNotFoundError { message }
                  ... on UnauthorizedError { message }
                } }""",
            {"executionParams": {
                "selector": {"repositoryLocationName": location, "repositoryName": repository,
                             "jobName": "__ASSET_JOB",
                             "assetSelection": [{"path": [a]} for a in assets]},
                "mode": "default",
                "executionMetadata": {"tags": [{"key": "lexgpt/test", "value": "e2e"}]},
            }},
        )["launchRun"]
        assert data["__typename"] == "LaunchRunSuccess", data
        return data["run"]["runId"]

    def wait_run(self, run_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            run = self.gql("""query Run($id: ID!) { runOrError(runId: $id) { __typename
                ... on Run { status assetSelection { path } } } }""", {"id": run_id})["runOrError"]
            status = run["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(1)
        raise AssertionError(f"run {run_id} still {status} after {timeout:.0f}s")

    def run_failure(self, run_id: str) -> str:
        data = self.gql("""query Logs($id: ID!) { logsForRun(runId: $id) { __typename
            ... on EventConnection { events { __typename ... on MessageEvent { message }
              ... on ExecutionStepFailureEvent { error { message } } } } } }""", {"id": run_id})
        events = data["logsForRun"].get("events", [])
        return "\n".join(e.get("message") or str(e.get("error")) for e in events)[-4000:]

    # ------------------------------------------------------------------ automation

    def runs(self) -> list[dict]:
        """Every run, newest first."""
        data = self.gql("""{ runsOrError(limit: 500) { __typename ... on Runs { results {
            runId status assetSelection { path } tags { key value } } } } }""")
        return data["runsOrError"]["results"]

    def sensor(self, location: str, repository: str, name: str) -> dict:
        data = self.gql("""query S($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
            __typename ... on Sensor { name sensorType minIntervalSeconds sensorState { id status } } } }""",
                        {"s": {"repositoryLocationName": location, "repositoryName": repository,
                               "sensorName": name}})
        return data["sensorOrError"]

    def stop_sensor(self, location: str, repository: str, name: str) -> None:
        """What the toggle on the UI's Automation page does."""
        state_id = self.sensor(location, repository, name)["sensorState"]["id"]
        data = self.gql("""mutation Stop($id: String!) { stopSensor(id: $id) { __typename
            ... on StopSensorMutationResult { instigationState { status } } } }""", {"id": state_id})
        assert data["stopSensor"]["instigationState"]["status"] == "STOPPED", data

    def check_statuses(self) -> dict[str, str | None]:
        """``asset:check`` -> the status of the check's execution on the asset's latest
        materialization (None: never executed on it)."""
        data = self.gql("""{ assetNodes { assetKey { path } assetChecksOrError { __typename
            ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } } } }""")
        return {f"{'/'.join(n['assetKey']['path'])}:{c['name']}":
                (c["executionForLatestMaterialization"] or {}).get("status")
                for n in data["assetNodes"] for c in n["assetChecksOrError"].get("checks", [])}

    def reload_in_browser(self, page, asset: str, timeout: float = 120) -> None:
        """Click "Reload definitions" on the asset catalog page, as a user does, and wait
        until the server serves ``asset`` under its new code version."""
        before = self.asset_nodes()[asset]["opVersion"]
        page.goto(f"{self.base}/assets", wait_until="domcontentloaded")
        page.get_by_role("button", name="Reload definitions").click()
        deadline = time.monotonic() + timeout
        while self.asset_nodes()[asset]["opVersion"] == before:
            assert time.monotonic() < deadline, f"{asset} still has code version {before} after the reload"
            time.sleep(1)

    def wait_settled(self, log: Path, timeout: float, quiet_s: float = 40) -> list[dict]:
        """Wait until every asset is FRESH, no run is in flight and none has started or ended
        for ``quiet_s`` (several automation ticks); return the runs. Fails on a failed run."""
        deadline = time.monotonic() + timeout
        last_change, seen = time.monotonic(), None
        while time.monotonic() < deadline:
            runs = self.runs()
            failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
            assert not failed, f"{failed[0]}:\n{self.run_failure(failed[0]['runId'])}\n{tail(log)}"
            state = [(r["runId"], r["status"]) for r in runs]
            if state != seen:
                seen, last_change = state, time.monotonic()
            nodes = self.asset_nodes()
            fresh = all(nodes[a]["staleStatus"] == "FRESH" for a in ALL_ASSETS)
            idle = all(r["status"] == "SUCCESS" for r in runs)
            if fresh and idle and time.monotonic() - last_change >= quiet_s:
                return runs
            time.sleep(3)
        nodes = self.asset_nodes()
        raise AssertionError(f"not settled after {timeout:.0f}s: "
                             f"{ {a: nodes[a]['staleStatus'] for a in ALL_ASSETS} }\n{tail(log)}")


@contextmanager
def browser():
    """Headless Chromium (Debian's) through Playwright; skips the test without Playwright."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            chromium.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def wait_for_texts(page, texts: list[str], timeout_s: float = 60) -> str:
    """Wait until every text is in the rendered page; return the page's text."""
    deadline = time.monotonic() + timeout_s
    body = ""
    while time.monotonic() < deadline:
        body = page.evaluate("() => document.body ? document.body.innerText : ''")
        if all(t in body for t in texts):
            return body
        page.wait_for_timeout(500)
    missing = [t for t in texts if t not in body]
    raise AssertionError(f"{page.url}: never showed {missing}; page text:\n{body[:3000]}")
