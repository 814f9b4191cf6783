"""The ``lexgpt`` command: run the pipeline, see what is stale, refresh it, generate text.

    lexgpt run                      # materialize everything missing or stale (the main job)
    lexgpt status                   # every asset: fresh / stale (why) / missing
    lexgpt refresh [--config F]     # re-run only what is missing or stale, level by level
    lexgpt generate "prompt"        # stream text from models:/lexgpt@champion
    lexgpt chat                     # ask it questions (Ctrl-D leaves)
    lexgpt compare A B              # two model versions, side by side
    lexgpt serve [MODEL_URI]        # HTTP scoring server on 127.0.0.1:5001
    lexgpt serve --openai           # the OpenAI API (/v1/chat/completions) on 127.0.0.1:5001
    lexgpt lineage models:/lexgpt@champion
    lexgpt promote 3                # move the champion alias (promote or roll back)
    lexgpt ui | lexgpt mlflow-ui    # the Dagster and MLflow web UIs on 127.0.0.1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from pipelines.model_commands import add_model_commands
from pipelines.registry_commands import add_registry_commands
from pipelines.verdict import verdict


def _load_config(path: str | None) -> dict[str, dict[str, Any]]:
    if not path:
        return {}
    from pipelines.run_defaults import load_overrides

    try:
        return load_overrides(path)
    except ValueError as err:
        raise SystemExit(str(err)) from None


def _effective(config: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Defaults merged with overrides for every configurable asset."""
    from pipelines.staleness import effective_config

    try:
        return effective_config(config)
    except ValueError as err:
        raise SystemExit(str(err)) from None


def _instance_and_defs():
    from pipelines.staleness import ensure_dagster_home

    ensure_dagster_home()
    import dagster as dg

    from pipelines.definitions import defs

    return dg.DagsterInstance.get(), defs


def _sources_now(defs) -> dict[str, str]:
    """The VTT folder's version now, read from the folder itself (not the last observation).

    Only for a local folder: without one the source is the cached download, which status
    must not fetch.
    """
    from lexgpt.infra import paths
    from pipelines.definitions import SOURCE_ASSET

    source = defs.resources["source"]
    if not (source.folder or paths.lexicap_dir()):
        return {}
    try:
        return {SOURCE_ASSET: source.data_version()}
    except (OSError, ValueError) as err:
        print(f"lexgpt status: cannot read the source folder: {err}", file=sys.stderr)
        return {}


def _ignored_source_lines(defs) -> list[str]:
    """Entries of the source folder that are not ingested, and why (issue 9, section 1)."""
    from lexgpt.data import lexicap

    try:
        scan = lexicap.scan_source(defs.resources["source"].resolve())
    except (OSError, ValueError) as err:  # a missing folder or duplicate ids: status says it once
        return [f"  source   {err}"]
    lines = []
    for entry in scan.ignored:
        kind = "near miss" if entry.near_miss else "ignored"
        lines.append(f"  {kind:<9} {entry.name!r}: {entry.reason}")
    if scan.near_misses:
        lines.append("  (near misses stop raw_subtitles; rename them, or set LEXICAP_ALLOW_NEAR_MISSES=1)")
    return lines


def _fail_runs_of_a_killed_writer(instance) -> None:
    """If the last writer was killed (its record is still in the lock file), mark the runs it
    left in progress failed now; skip if a writer is running (its runs are alive)."""
    from lexgpt.infra import lock, paths
    from pipelines.writers import hold_home

    record = lock.holder(paths.home())
    if not record or lock.pid_alive(int(record.get("pid") or 0)):
        return
    try:
        with hold_home("lexgpt status", instance, log=lambda line: print(line, file=sys.stderr)):
            pass
    except lock.LockBusy:
        pass


def cmd_status(args: argparse.Namespace) -> int:
    from pipelines.staleness import asset_states, fmt_seconds

    instance, defs = _instance_and_defs()
    config = _effective(_load_config(args.config))  # no --config: what a plain refresh would use
    _fail_runs_of_a_killed_writer(instance)
    states = asset_states(defs, instance, config, sources_now=_sources_now(defs))
    if args.json:
        print(json.dumps([s.__dict__ for s in states], indent=2))
        return 0
    width = max(len(s.name) for s in states)
    lines = [f"{s.status}  ({'; '.join(s.causes)})" if s.status != "fresh" else s.status for s in states]
    col = max(len(line) for line in lines)
    for s, line in zip(states, lines):
        took = f" (~{fmt_seconds(s.last_seconds)} last time)" if s.last_seconds is not None else ""
        cost = f"  refresh {s.cost}{took}" if s.cost else ""
        print(f"{s.name:<{width}}  {line:<{col}}{cost}".rstrip())
    sure = [s for s in states if s.cost == "runs"]
    maybe = [s for s in states if s.cost.startswith("runs only if")]
    if sure:
        def total(group):
            known = [s.last_seconds for s in group if s.last_seconds is not None]
            return f"~{fmt_seconds(sum(known))}" + (" + never-timed assets" if len(known) < len(group) else "")
        print(f"\nrefresh runs {len(sure)} asset(s) for sure ({total(sure)})"
              + (f", up to {len(sure) + len(maybe)} ({total(sure + maybe)}) if their content changes" if maybe else ""))
    for line in _ignored_source_lines(defs):
        print(line)
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    from lexgpt.infra.lock import LockBusy
    from pipelines.staleness import Interrupted, RefreshError, asset_nodes, refresh
    from pipelines.writers import hold_home

    config = _load_config(args.config)
    if args.minutes is not None:
        if not (math.isfinite(args.minutes) and args.minutes >= 1):
            raise SystemExit(f"lexgpt {args.command} --minutes {args.minutes:g}: give at least 1 (minutes of "
                             "training; the first ~minute on a CPU is compiling)")
        config = {**config, "trained_model": {**config.get("trained_model", {}), "max_minutes": args.minutes}}
    instance, defs = _instance_and_defs()
    effective = _effective(config)
    if args.only:
        names = [n.name for n in asset_nodes(defs) if n.materializable]
        unknown = [n for n in args.only if n not in names]
        if unknown:
            raise SystemExit(f"lexgpt {args.command} --only: no asset named {', '.join(unknown)} "
                             f"(assets: {', '.join(names)})")
    print(f"Dagster home: {os.environ['DAGSTER_HOME']}")
    command = " ".join(["lexgpt", *args.argv])
    try:
        with hold_home(command, instance, log=lambda line: print(f"  {line}")) as held:
            report = refresh(defs, instance, run_config=config, effective_config=effective,
                             only=set(args.only) if args.only else None, on_run=held.record_run)
    except LockBusy as err:
        print(f"lexgpt {args.command}: {err}", file=sys.stderr)
        return 1
    except RefreshError as err:
        print(f"\nrefresh stopped: {err}", file=sys.stderr)
        return 1
    except Interrupted as err:
        print(f"\n{err}", file=sys.stderr)
        return 130
    print(f"\nexecuted: {', '.join(report.executed) or 'nothing'}")
    print(f"skipped (fresh): {', '.join(report.skipped) or 'nothing'}")
    print(*verdict(instance, report.executed), sep="\n")  # how the new model did, if one was trained
    if args.json:
        print(json.dumps({"executed": report.executed, "skipped": report.skipped}))
    return 0


def _script(name: str) -> str:
    """A console script of this Python's environment (works in a venv that is not activated)."""
    sibling = Path(sys.executable).parent / name
    return str(sibling) if sibling.exists() else name


def cmd_ui(args: argparse.Namespace) -> int:
    from pipelines.staleness import ensure_dagster_home

    home = ensure_dagster_home()
    root = Path(__file__).resolve().parent.parent
    os.chdir(root)
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home})")
    print("Automation is on: it builds what is missing and re-runs what a code, rules or data change "
          "makes stale (switch off lexgpt_automation on the Automation page to stop it)")
    os.execvp(_script("dagster"), ["dagster", "dev", "-w", str(root / "workspace.yaml"),
                          "-h", args.host, "-p", str(args.port)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lexgpt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    # One command, two names: `run` reads better for the first time (everything is
    # missing, so everything runs), `refresh` after an edit (only what went stale runs).
    for name, help_ in (("run", "materialize what is missing or stale (on a new home: everything); "
                                "the same command as refresh"),
                        ("refresh", "materialize what is missing or stale, in dependency order; "
                                    "the same command as run")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", help="YAML/JSON file: asset name -> run config overrides")
        p.add_argument("--only", nargs="+", metavar="ASSET", help="limit the walk to these assets")
        p.add_argument("--minutes", type=float, metavar="N",
                       help="training budget in minutes (trained_model's max_minutes; wins over --config): "
                            "the training loop's wall clock, compiling and in-training evals included; "
                            "scoring all of val, registering and sampling come after it (the verdict shows "
                            "both); at least 1: a shorter budget is spent compiling. With preset auto the "
                            "model is sized to it")
        p.add_argument("--json", action="store_true", help="end with a JSON line: executed, skipped")
        p.set_defaults(func=cmd_refresh)

    p = sub.add_parser("status", help="show every asset as fresh / stale (with the cause) / missing, "
                       "and what a refresh would run")
    p.add_argument("--config", help="compare against this run config (default: the one a plain refresh uses)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    add_model_commands(sub)  # generate, chat, compare, serve
    add_registry_commands(sub)  # lineage, promote, export, mlflow-ui

    p = sub.add_parser("ui", help="start the Dagster web UI")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            args = build_parser().parse_args(argv)  # --help writes to stdout too
            args.argv = argv  # the lock file names the command line of the writer holding it
            return _run(args)
        finally:  # flush here, not at exit, so that a reader that left is caught below
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader of stdout has gone (`lexgpt lineage | head -1`): stop quietly, with
        # the status of a process SIGPIPE ended (128 + 13), as `cat` does. Python's recipe:
        # stdout goes to devnull, so the flush at exit cannot raise it again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


def _run(args: argparse.Namespace) -> int:
    """The command, with the everyday mistakes (bad config, bad value, missing model)
    turned into one line on stderr."""
    from lexgpt.generation.generation_params import GenerationParamError
    from pipelines.run_defaults import ConfigFileError

    try:
        return args.func(args) or 0
    # A bad LEXGPT_CONFIG file (read when the definitions load), a bad LEXGPT_MAX_NEW_TOKENS
    except (ConfigFileError, GenerationParamError) as err:
        print(f"lexgpt {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a refresh step: nothing half-written to report
        print(f"\nlexgpt {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        from mlflow.exceptions import MlflowException

        from pipelines.storage_errors import home_stores, storage_error_line

        line = storage_error_line(err, *home_stores())  # a read-only or full home
        if line:
            print(f"lexgpt {args.command}: {line}", file=sys.stderr)
            return 1
        if not isinstance(err, MlflowException):
            raise
        # A missing model, version or alias is a user's everyday mistake, not a crash.
        from lexgpt.infra import paths

        print(f"lexgpt {args.command}: {err.message}", file=sys.stderr)
        if "not found" in err.message.lower():
            print(f"  (MLflow store {paths.tracking_uri()}: `lexgpt run` trains and registers a model; "
                  "`lexgpt mlflow-ui` shows the versions and aliases there)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
