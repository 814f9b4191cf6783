"""The ``lexgpt`` command: run the pipeline, see what is stale, refresh it, generate text.

    lexgpt run                      # materialize everything missing or stale (the main job)
    lexgpt status                   # every asset: fresh / stale (why) / missing
    lexgpt refresh [--config F]     # re-run only what is missing or stale, level by level
    lexgpt generate "prompt"        # stream text from models:/lexgpt@champion
    lexgpt chat                     # ask it questions (Ctrl-D leaves)
    lexgpt compare A B              # two model versions, side by side
    lexgpt serve [MODEL_URI]        # HTTP scoring server on 127.0.0.1:5001
    lexgpt lineage models:/lexgpt@champion
    lexgpt promote 3                # move the champion alias (promote or roll back)
    lexgpt ui | lexgpt mlflow-ui    # the Dagster and MLflow web UIs on 127.0.0.1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pipelines.model_commands import add_model_commands, verdict


def _load_config(path: str | None) -> dict[str, dict[str, Any]]:
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as err:
        raise SystemExit(f"{path}: cannot read the config file ({err.strerror or err})")
    except yaml.YAMLError as err:
        raise SystemExit(f"{path}: not valid YAML: {err}")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SystemExit(f"{path}: expected a mapping of asset name -> config, e.g. 'trained_model: {{max_steps: 100}}'")
    return data


def _effective(config: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Defaults merged with overrides for every configurable asset."""
    from pipelines.assets.model import SamplesConfig, TrainingConfig
    from pipelines.assets.tokens import BPEConfig

    classes = {"bpe_vocab": BPEConfig, "trained_model": TrainingConfig, "evaluation_samples": SamplesConfig}
    unknown = set(config) - set(classes)
    if unknown:
        raise SystemExit(f"no configurable asset named {', '.join(sorted(unknown))} (choose from {', '.join(classes)})")
    import pydantic

    effective = {}
    for name, cls in classes.items():
        given = config.get(name, {})
        typos = sorted(set(given) - set(cls.model_fields))
        if typos:  # a misspelt field would otherwise be ignored without a word
            raise SystemExit(f"{name}: no config field {', '.join(typos)} (fields: {', '.join(cls.model_fields)})")
        try:
            effective[name] = cls(**given).model_dump()
        except pydantic.ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise SystemExit(f"{name}: {problems}")
    return effective


def _instance_and_defs():
    from pipelines.freshness import ensure_dagster_home

    ensure_dagster_home()
    import dagster as dg

    from pipelines.definitions import defs

    return dg.DagsterInstance.get(), defs


def cmd_status(args: argparse.Namespace) -> int:
    from pipelines.freshness import asset_states

    instance, defs = _instance_and_defs()
    config = _load_config(args.config)
    states = asset_states(defs, instance, _effective(config) if config else None)
    if args.json:
        print(json.dumps([s.__dict__ for s in states], indent=2))
        return 0
    width = max(len(s.name) for s in states)
    for s in states:
        why = f"  ({'; '.join(s.causes)})" if s.status != "fresh" else ""
        print(f"{s.name:<{width}}  {s.status}{why}")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    from pipelines.freshness import RefreshError, refresh

    instance, defs = _instance_and_defs()
    config = _load_config(args.config)
    print(f"Dagster home: {os.environ['DAGSTER_HOME']}")
    try:
        report = refresh(defs, instance, run_config=config, effective_config=_effective(config),
                         only=set(args.only) if args.only else None)
    except RefreshError as err:
        print(f"\nrefresh stopped: {err}", file=sys.stderr)
        return 1
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
    from pipelines.freshness import ensure_dagster_home

    home = ensure_dagster_home()
    root = Path(__file__).resolve().parent.parent
    os.chdir(root)
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home})")
    os.execvp(_script("dagster"), ["dagster", "dev", "-w", str(root / "workspace.yaml"),
                          "-h", args.host, "-p", str(args.port)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lexgpt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    for name, help_ in (("run", "materialize every missing or stale asset (the whole pipeline)"),
                        ("refresh", "re-run only what is missing or stale, level by level")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", help="YAML/JSON file: asset name -> run config overrides")
        p.add_argument("--only", nargs="+", metavar="ASSET", help="limit the walk to these assets")
        p.add_argument("--json", action="store_true", help="end with a JSON line: executed, skipped")
        p.set_defaults(func=cmd_refresh)

    p = sub.add_parser("status", help="show every asset as fresh / stale (with the cause) / missing")
    p.add_argument("--config", help="compare against this run config too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    add_model_commands(sub)  # generate, chat, compare, serve, lineage, promote, mlflow-ui

    p = sub.add_parser("ui", help="start the Dagster web UI")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except Exception as err:
        from mlflow.exceptions import MlflowException

        if not isinstance(err, MlflowException):
            raise
        # A missing model, version or alias is a user's everyday mistake, not a crash.
        from lexgpt import paths

        print(f"lexgpt {args.command}: {err.message}", file=sys.stderr)
        if "not found" in err.message.lower():
            print(f"  (MLflow store {paths.tracking_uri()}: `lexgpt run` trains and registers a model; "
                  "`lexgpt mlflow-ui` shows the versions and aliases there)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
