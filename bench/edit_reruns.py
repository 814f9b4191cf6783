"""What an edit re-runs: issue 18's user measure, automated on a small home.

    nice -n 10 python bench/edit_reruns.py                 # ~3 min on 2 cores

Copies the repo's tracked files into a scratch folder (the edits never touch this
checkout), builds a home over six synthetic episodes with a tiny config (`lexgpt refresh`),
then makes one edit at a time, runs `lexgpt status --json` and undoes it. Each row: which
assets are not fresh afterwards and what a refresh would do, and how long `status` took.
Ends by checking that, with every edit undone, everything is fresh again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import TINY_CONFIG, write_episode  # noqa: E402

# (what a user edits, file in the repo copy, old text, new text); None file: a config edit
EDITS = [
    ("a sample question (EVAL_PROMPTS)", "pipelines/assets/evaluation_samples.py",
     '"What is the meaning of life?",', '"What is the meaning of a good life?",'),
    ("a comment in the training loop", "lexgpt/training/train_loop.py",
     "from __future__ import annotations\n", "from __future__ import annotations\n# a comment\n"),
    ("a docstring and formatting in the model", "lexgpt/modeling/model.py",
     '"""Parameter count (a tied matrix counted once)."""', '"""Parameters,\n        counted once."""'),
    ("the loss chart's size (MLflow logging)", "lexgpt/tracking/plots.py",
     "figsize=(8, 4.5)", "figsize=(9, 5)"),
    ("a check's message (val_bpc_within_bound)", "pipelines/assets/trained_model.py",
     '"trained_model recorded no val_bpc and "', '"trained_model has no val_bpc and "'),
    ("the n-gram order (--config ngram_baseline: {order: 4})", None,
     "", "ngram_baseline:\n  order: 4\n"),
    ("a cleaning rule that changes the text", "lexgpt/data/cleaning_rules.toml",
     "[[rule]]\nname = \"curly_single_quotes\"",
     "[[rule]]\nname = \"filler_like\"\npattern = '\\blike\\b'\nreplacement = ''\n\n"
     "[[rule]]\nname = \"curly_single_quotes\""),
]


def copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in files.splitlines():
        src, dst = REPO / name, dest / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def lexgpt(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=1800)


def not_fresh(repo: Path, env: dict, config: Path) -> tuple[list[str], float]:
    t0 = time.perf_counter()
    proc = lexgpt(repo, env, "status", "--json", "--config", str(config))
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"status failed: {proc.stderr[-2000:]}")
    states = json.loads(proc.stdout[proc.stdout.index("["):])
    def row(s: dict) -> str:
        last = f", {s['last_seconds']:.0f} s last time" if s.get("last_seconds") is not None else ""
        return f"{s['name']} ({s['cost'] or s['status']}{last})"

    return [row(s) for s in states if s["status"] != "fresh"], seconds


def refresh(repo: Path, env: dict, config: Path) -> str:
    """Run the refresh; what it executed, and how long it took."""
    t0 = time.perf_counter()
    proc = lexgpt(repo, env, "refresh", "--json", "--config", str(config))
    if proc.returncode != 0:
        raise SystemExit(f"refresh failed: {proc.stderr[-3000:]}")
    executed = json.loads(proc.stdout.strip().splitlines()[-1])["executed"]
    return f"{', '.join(executed) or 'nothing'} in {time.perf_counter() - t0:.0f} s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, help="scratch folder (default: a new temp folder)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lexgpt-edits-"))
    repo, home, vtt = work / "repo", work / "home", work / "vtt"
    copy_repo(repo)
    vtt.mkdir(parents=True, exist_ok=True)
    for episode in (1, 2, 3, 4, 5, 20):
        write_episode(vtt, episode)
    config = work / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(repo), "LEXGPT_HOME": str(home), "DAGSTER_HOME": str(home / ".dagster"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlruns' / 'mlflow.db'}", "LEXICAP_DIR": str(vtt),
           "LEXGPT_DATA_LAKE": str(home / "data_lake")}
    env.pop("LEXGPT_CONFIG", None)
    env.pop("LEXGPT_CLEANING_RULES", None)
    t0 = time.perf_counter()
    built = lexgpt(repo, env, "refresh", "--config", str(config))
    if built.returncode != 0:
        raise SystemExit(f"refresh failed: {built.stderr[-3000:]}")
    print(f"home built in {time.perf_counter() - t0:.0f} s ({work})", file=sys.stderr)
    rows, ran = [], []
    for what, name, old, new in EDITS:
        if name is None:
            edited = work / "edited.yaml"
            edited.write_text(TINY_CONFIG + new)
            stale, seconds = not_fresh(repo, env, edited)
        else:
            path = repo / name
            text = path.read_text()
            assert old in text, f"{name}: {old!r} not found"
            path.write_text(text.replace(old, new, 1))
            try:
                stale, seconds = not_fresh(repo, env, config)
                if name.endswith(".toml"):  # the chain must still re-run: refresh for real
                    ran.append(f"after the rule edit, refresh ran {refresh(repo, env, config)}")
            finally:
                path.write_text(text)
            if name.endswith(".toml"):
                ran.append(f"after undoing it, refresh ran {refresh(repo, env, config)}")
        rows.append((what, ", ".join(stale) or "nothing", seconds))
        print(rows[-1], file=sys.stderr, flush=True)
    after, _ = not_fresh(repo, env, config)
    print("| edit | not fresh afterwards (what a refresh does) | `status` s |\n| --- | --- | --- |")
    for what, stale, seconds in rows:
        print(f"| {what} | {stale} | {seconds:.1f} |")
    print("", *ran, sep="\n")
    print(f"all edits undone: {'everything fresh' if not after else 'NOT fresh: ' + ', '.join(after)}")


if __name__ == "__main__":
    main()
