"""Crash matrix: kill -9 a refresh at each point, then `status` + `refresh` must be consistent.

    nice -n 19 python bench/crash_matrix.py                 # every point (~20 min on 2 cores)
    nice -n 19 python bench/crash_matrix.py --points after_write:corpus.parquet mid_mlflow_logging

Setup (once): a home over six tiny synthetic episodes, fully refreshed with a tiny training
config, is snapshotted. Each point starts from that snapshot, adds an episode and a rule that
changes the text (so every asset must re-run), and runs ``lexgpt refresh`` in a child that
SIGKILLs itself at the point (hooks patched in here, none in the product code). Then:

1. ``lexgpt status`` must succeed without a traceback, call every asset whose files differ
   from the recorded version stale ("file on disk differs"), never call the asset that was
   being written fresh, and leave no Dagster run STARTED and no MLflow run RUNNING;
2. ``lexgpt refresh`` must succeed, after which every asset is fresh, every file matches its
   record, no temp file is left, the corpus has the new episode and rule, and the model
   version registered_model names is tagged with the current corpus and shards versions and
   holds the alias registered_model recorded.

Results go to stdout as a markdown table (BENCHMARKS.md, "Reliability") and to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = {  # file -> the asset that writes it
    "cues.parquet": "raw_subtitles",
    "corpus.parquet": "cleaned_corpus",
    "tokenizer.json": "bpe_vocab",
    "manifest.json": "token_shards",
    "model.pt": "trained_model",
    "samples.parquet": "evaluation_samples",
}
POINTS = {
    **{f"mid_write:{f}": (a, f"killed after writing the temp file of {f}, before its rename")
       for f, a in ARTIFACTS.items()},
    **{f"after_write:{f}": (a, f"killed after {f} is renamed into place, before Dagster records it")
       for f, a in ARTIFACTS.items()},
    "mid_training": ("trained_model", "killed 1 s into training"),
    "mid_mlflow_logging": ("trained_model", "killed while logging the training history to MLflow"),
    "mid_model_logging": ("registered_model", "killed inside mlflow.pyfunc.log_model"),
    "between_register_and_alias": ("registered_model", "killed after the version is registered, before its alias"),
    "ctrl_c_mid_training": ("trained_model", "SIGINT (Ctrl-C) 1 s into training"),
}
TINY = """\
bpe_vocab: {vocab_size: 300}
trained_model: {preset: test-tiny, max_steps: 200, batch_size: 8, eval_every: 100, eval_windows: 32,
                n_layer: 2, n_embd: 64, n_head: 2, block_size: 64, max_val_bpc: 10.0}
evaluation_samples: {max_new_tokens: 20}
"""
WORDS = ("the a of to and in that is it you I think we what so like this be have do know not about "
         "people there are one just really thing way life time more world mind love intelligence human "
         "machine learning system question beautiful idea consciousness universe physics").split()
NEW_RULE = "\n[[rule]]\nname = 'crash_matrix_reckon'\npattern = '\\bthink\\b'\nreplacement = 'reckon'\n"


def write_episode(folder: Path, episode: int, n_cues: int = 120) -> None:
    rng = random.Random(episode)
    lines, t = ["WEBVTT", ""], 0.0
    for _ in range(n_cues):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12)))
        start, t = t, t + rng.uniform(1.0, 4.0)
        lines += [f"00:{int(start // 60):02d}:{start % 60:06.3f} --> 00:{int(t // 60):02d}:{t % 60:06.3f}",
                  f" {words.capitalize()}.", ""]
    (folder / f"episode_{episode:03d}_large.vtt").write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------- the child


def install_crash(point: str) -> None:
    """Patch the library so this process dies at ``point`` (SIGKILL, or SIGINT for ctrl_c_*)."""
    import contextlib
    import signal
    import threading

    import lexgpt.data.shards
    import lexgpt.infra.atomic
    import lexgpt.tokenizer.bpe
    import lexgpt.tracking.runs

    def die(sig=signal.SIGKILL):
        os.kill(os.getpid(), sig)
        time.sleep(60)

    kind, _, target = point.partition(":")
    if kind in ("mid_write", "after_write"):
        real = lexgpt.infra.atomic.atomic_path

        @contextlib.contextmanager
        def crashing(dest):
            with real(dest) as tmp:
                yield tmp
                if kind == "mid_write" and Path(dest).name == target:
                    die()  # the temp file is complete; the destination still the old one
            if kind == "after_write" and Path(dest).name == target:
                die()  # renamed into place; Dagster has not recorded it

        for module in (lexgpt.infra.atomic, lexgpt.data.shards, lexgpt.tokenizer.bpe):
            if getattr(module, "atomic_path", None) is real:
                module.atomic_path = crashing
    elif kind in ("mid_training", "ctrl_c_mid_training"):
        # Training runs in a process tree the asset launches through Dagster Pipes: the
        # Dagster process is killed (or interrupted) while that tree trains.
        import dagster as dg

        real_run = dg.PipesSubprocessClient.run
        sig = signal.SIGINT if kind.startswith("ctrl_c") else signal.SIGKILL

        def run(self, **kwargs):
            threading.Timer(1.0, os.kill, (os.getpid(), sig)).start()
            return real_run(self, **kwargs)

        dg.PipesSubprocessClient.run = run
    elif kind == "mid_mlflow_logging":
        lexgpt.tracking.runs.log_metrics_final = lambda *a, **k: die()  # the run is open, metrics half-logged
    elif kind == "mid_model_logging":
        import mlflow.pyfunc

        mlflow.pyfunc.log_model = lambda *a, **k: die()
    elif kind == "between_register_and_alias":
        import lexgpt.tracking.registry

        lexgpt.tracking.registry.promote = lambda *a, **k: die()
    else:
        raise SystemExit(f"unknown crash point {point!r} (points: {', '.join(POINTS)})")


def child(point: str, cli_args: list[str]) -> int:
    install_crash(point)
    from pipelines.cli import main

    return main(cli_args)


# --------------------------------------------------------------------------- the parent


def cli(env: dict[str, str], *args: str, point: str | None = None, timeout: int = 600):
    cmd = [sys.executable, str(Path(__file__).resolve())]
    cmd += ["--child", point, "--"] if point else ["--cli", "--"]
    return subprocess.run(cmd + list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def dagster_view(home: Path) -> dict:
    """What Dagster recorded vs what is on disk, runs left in progress, temp files left."""
    import dagster as dg

    from pipelines.lake import FILES_KEY, files_sha256, latest_data_version, recorded_value

    out = {"disk_differs": [], "started_runs": 0, "versions": {}, "metadata": {}}
    with dg.DagsterInstance.from_config(str(home / ".dagster")) as instance:
        for name in [*ARTIFACTS.values(), "registered_model"]:  # registered_model writes no lake file
            key = dg.AssetKey(name)
            entry = instance.get_latest_materialization_event(key)
            if entry is None:
                continue
            recorded = recorded_value(entry, FILES_KEY)
            if recorded and recorded != files_sha256(home / "data_lake" / name):
                out["disk_differs"].append(name)
            out["versions"][name] = latest_data_version(instance, key)
            out["metadata"][name] = {k: str(getattr(v, "value", v)) for k, v in
                                     entry.asset_materialization.metadata.items()
                                     if k in ("mlflow_run_id", "model_version")}
        out["started_runs"] = len(instance.get_run_records(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])))
    out["temp_files"] = [str(p.relative_to(home)) for p in (home / "data_lake").rglob(".*.tmp")]
    return out


def mlflow_view(home: Path) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'") if experiments else []
    versions = {str(mv.version): mv for mv in client.search_model_versions("name = 'lexgpt'")}
    aliases = {}
    if versions:
        aliases = {a: str(v) for a, v in client.get_registered_model("lexgpt").aliases.items()}
    return {"running_runs": len(running), "versions": versions, "aliases": aliases, "client": client}


def check_point(point: str, work: Path, baseline: Path, vtt: Path) -> dict:
    asset, _ = POINTS[point]
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(baseline, home, symlinks=True)
    shutil.rmtree(vtt)
    shutil.copytree(work / "vtt-baseline", vtt)
    env = _env(home, vtt)
    write_episode(vtt, 7)  # new data...
    rules = home / "cleaning_rules.toml"
    rules.write_text(rules.read_text() + NEW_RULE)  # ...and a rule that changes the text
    problems: list[str] = []
    row = {"point": point, "asset": asset}

    started = time.perf_counter()
    crash = cli(env, "refresh", "--config", str(work / "tiny.yaml"), point=point)
    expected_rc = 130 if point.startswith("ctrl_c") else -9
    row["crash_rc"] = crash.returncode
    if crash.returncode != expected_rc:
        problems.append(f"crash run exited {crash.returncode}, expected {expected_rc}: {crash.stderr[-400:]}")
    if point.startswith("ctrl_c") and crash.stderr.strip().splitlines()[-1:] != [
            f"interrupted during {asset}; previous version kept"]:
        problems.append(f"Ctrl-C message: {crash.stderr.strip().splitlines()[-1:]}")

    status = cli(env, "status", "--json", "--config", str(work / "tiny.yaml"))
    if status.returncode != 0 or "Traceback" in status.stderr:
        problems.append(f"status failed ({status.returncode}): {status.stderr[-400:]}")
        states = {}
    else:
        states = {s["name"]: s for s in json.loads(status.stdout)}
    row["status_after_crash"] = {n: s["status"] + (" (disk differs)" if any("disk" in c for c in s["causes"]) else "")
                                 for n, s in states.items()}
    view = dagster_view(home)
    row["disk_differs"] = view["disk_differs"]
    for name in view["disk_differs"]:
        if not any("file on disk differs" in c for c in states.get(name, {}).get("causes", [])):
            problems.append(f"{name}: file differs from its record but status says {states.get(name)}")
    if states.get(asset, {}).get("status") == "fresh":
        problems.append(f"{asset} was being written when killed but status calls it fresh")
    if view["started_runs"]:
        problems.append(f"{view['started_runs']} Dagster run(s) still STARTED after status")
    ml = mlflow_view(home)
    if ml["running_runs"]:
        problems.append(f"{ml['running_runs']} MLflow run(s) still RUNNING after status")

    fix = cli(env, "refresh", "--json", "--config", str(work / "tiny.yaml"))
    if fix.returncode != 0:
        problems.append(f"refresh after the crash failed ({fix.returncode}): {fix.stderr[-400:]}")
    else:
        row["refresh_executed"] = json.loads(fix.stdout.strip().splitlines()[-1])["executed"]
    final = cli(env, "status", "--json", "--config", str(work / "tiny.yaml"))
    not_fresh = [s["name"] for s in json.loads(final.stdout) if s["status"] != "fresh"] if final.returncode == 0 else ["?"]
    if not_fresh:
        problems.append(f"not fresh after refresh: {not_fresh}")
    view = dagster_view(home)
    if view["disk_differs"] or view["started_runs"] or view["temp_files"]:
        problems.append(f"after refresh: disk differs {view['disk_differs']}, STARTED runs "
                        f"{view['started_runs']}, temp files {view['temp_files']}")
    import polars as pl

    corpus = pl.read_parquet(home / "data_lake" / "cleaned_corpus" / "corpus.parquet")
    text = " ".join(corpus["text"].to_list())
    if 7 not in corpus["episode_id"].to_list() or " think " in text or "reckon" not in text:
        problems.append("the corpus does not reflect the new episode and rule")
    problems += _check_model(view, mlflow_view(home))
    row["seconds"] = round(time.perf_counter() - started, 1)
    row["problems"] = problems
    row["ok"] = not problems
    return row


def _check_model(view: dict, ml: dict) -> list[str]:
    """The version registered_model names is labelled with today's inputs and holds its alias."""
    problems = []
    meta = view["metadata"].get("registered_model", {})
    named = meta.get("model_version", "")  # "lexgpt v3 (champion)"
    try:
        version, alias = named.split()[1][1:], named.split("(")[1].rstrip(")")
    except IndexError:
        return [f"registered_model metadata names no model version: {named!r}"]
    mv = ml["versions"].get(version)
    if mv is None:
        return [f"model version {version} named by registered_model is not registered"]
    if mv.tags.get("lexgpt.corpus_version") != view["versions"].get("cleaned_corpus"):
        problems.append(f"v{version} corpus tag {mv.tags.get('lexgpt.corpus_version')} != corpus "
                        f"{view['versions'].get('cleaned_corpus')}")
    if mv.tags.get("lexgpt.shards_version") != view["versions"].get("token_shards"):
        problems.append(f"v{version} shards tag differs from the recorded token_shards version")
    if ml["aliases"].get(alias) != version:
        problems.append(f"alias {alias} -> {ml['aliases'].get(alias)}, registered_model says v{version}")
    if ml["client"].get_run(meta.get("mlflow_run_id")).info.status != "FINISHED":
        problems.append("the model's MLflow run is not FINISHED")
    if ml["running_runs"]:
        problems.append(f"{ml['running_runs']} MLflow run(s) RUNNING after refresh")
    return problems


def _env(home: Path, vtt: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXGPT_", "LEXICAP_", "DAGSTER_", "MLFLOW_"))}
    env.update({
        "LEXGPT_HOME": str(home), "DAGSTER_HOME": str(home / ".dagster"), "LEXICAP_DIR": str(vtt),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
        "LEXGPT_DATA_LAKE": str(home / "data_lake"), "LEXGPT_CLEANING_RULES": str(home / "cleaning_rules.toml"),
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    })
    return env


def prepare(work: Path) -> tuple[Path, Path]:
    """A fully refreshed home over six tiny episodes, snapshotted once."""
    baseline, vtt = work / "baseline", work / "vtt"
    if (baseline / ".ready").exists():
        return baseline, vtt
    shutil.rmtree(work, ignore_errors=True)
    (work / "vtt-baseline").mkdir(parents=True)
    for episode in (1, 2, 3, 4, 5, 20):
        write_episode(work / "vtt-baseline", episode)
    shutil.copytree(work / "vtt-baseline", vtt)
    (work / "tiny.yaml").write_text(TINY)
    home = work / "home"
    home.mkdir()
    shutil.copyfile(REPO / "lexgpt" / "data" / "cleaning_rules.toml", home / "cleaning_rules.toml")
    proc = cli(_env(home, vtt), "refresh", "--config", str(work / "tiny.yaml"))
    if proc.returncode != 0:
        raise SystemExit(f"baseline refresh failed:\n{proc.stdout}\n{proc.stderr}")
    # The home is restored to this same path for every point: MLflow and Dagster keep absolute paths.
    shutil.copytree(home, baseline, symlinks=True)
    (baseline / ".ready").touch()
    return baseline, vtt


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] in ("--child", "--cli"):
        if sys.argv[1] == "--child":
            return child(sys.argv[2], sys.argv[4:])
        from pipelines.cli import main as cli_main

        return cli_main(sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", nargs="+", default=list(POINTS), choices=list(POINTS), metavar="POINT")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lexgpt-crash-matrix"))
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    # A pooled sqlite connection can keep reading the snapshot it first saw; the children
    # write the store between our reads, so every read gets a fresh connection.
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    baseline, vtt = prepare(args.work)
    os.environ.update({"LEXGPT_HOME": str(args.work / "home")})
    rows = []
    print("| point | what happened | asset | status after the kill | refresh re-ran | result |")
    print("|---|---|---|---|---|---|")
    for point in args.points:
        row = check_point(point, args.work, baseline, vtt)
        rows.append(row)
        after = ", ".join(f"{n}: {s}" for n, s in row["status_after_crash"].items() if s != "fresh") or "all fresh"
        result = "ok" if row["ok"] else "FAIL: " + "; ".join(row["problems"])
        print(f"| `{point}` | {POINTS[point][1]} | {row['asset']} | {after} | "
              f"{', '.join(row.get('refresh_executed', [])) or '-'} | {result} ({row['seconds']} s) |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    failed = [r["point"] for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} points consistent" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
