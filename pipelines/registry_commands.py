"""The ``lexgpt`` commands about registered models: lineage, promote, export, mlflow-ui."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipelines.model_commands import DEFAULT_MODEL, fail, load_for_generation


def cmd_lineage(args: argparse.Namespace) -> int:
    from lexgpt.tracking import registry, runs

    runs.configure()
    info = registry.lineage(args.model)
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from lexgpt.tracking import registry, runs

    runs.configure()
    registry.set_alias(args.name, args.alias, args.version)
    print(f"{args.name}@{args.alias} -> version {args.version}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "gguf":
        return _export_gguf(args)
    from lexgpt.modeling.export import ExportTargetError, check_export_target, export_hf

    if args.dtype != "f32":
        return fail("export", f"--dtype {args.dtype}: the Hugging Face export is float32; "
                    "use --format gguf for bf16")
    try:
        check_export_target(args.out)  # before the (slow) load: a bad target is one line
        model, tokenizer = load_for_generation(args.model)
        out = export_hf(model, tokenizer, args.out)
    except ExportTargetError as err:
        return fail("export", str(err))
    print(f"{args.model} -> {out} (load with transformers.AutoModelForCausalLM.from_pretrained('{out}'))")
    return 0


def _export_gguf(args: argparse.Namespace) -> int:
    try:
        from lexgpt.modeling.gguf_export import (
            GGUFTargetError,
            check_gguf_target,
            export_gguf,
        )
    except ImportError:
        return fail("export", "--format gguf needs the gguf package: pip install 'lexgpt[gguf]'")
    try:
        check_gguf_target(args.out)  # before the (slow) load
        model, tokenizer = load_for_generation(args.model)
        out = export_gguf(model, tokenizer, args.out, dtype=args.dtype)
    except GGUFTargetError as err:
        return fail("export", str(err))
    ctx = model.config.block_size
    print(f"{args.model} -> {out} ({args.dtype}, context {ctx} tokens; run it with: "
          f"llama-completion -m {out} -c {ctx} -p 'I think that' -n 64)")
    return 0


def cmd_mlflow_ui(args: argparse.Namespace) -> int:
    from lexgpt.infra import paths

    uri = paths.tracking_uri()
    bin_dir = Path(sys.executable).parent
    mlflow_cli = bin_dir / "mlflow"
    print(f"MLflow UI on {_experiment_url(uri, f'http://{args.host}:{args.port}')} "
          f"(store {uri}, {args.workers} worker(s))", flush=True)
    os.execvp(str(mlflow_cli) if mlflow_cli.exists() else "mlflow",
              ["mlflow", "ui", "--backend-store-uri", uri, "--default-artifact-root", paths.artifact_root(),
               "-h", args.host, "-p", str(args.port), "--workers", str(args.workers)])


def _experiment_url(uri: str, base: str) -> str:
    """The lexgpt experiment's training runs. MLflow 3's UI remembers a GenAI-or-ML choice
    per browser (GenAI at first) that overrides the experiment's kind tag, so the link
    says ``workflowType=machine_learning``."""
    from lexgpt.tracking import runs

    page = "#/experiments"
    try:
        runs.configure(uri)
        exp = runs.client().get_experiment_by_name(runs.DEFAULT_EXPERIMENT)
        if exp is not None:
            page = f"#/experiments/{exp.experiment_id}/runs"
    except Exception:  # noqa: BLE001 - no store yet: the experiments list
        pass
    return f"{base}/{page}?workflowType=machine_learning"


def add_registry_commands(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("lineage", help="data versions, rules hash and commit behind a model")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("promote", help="point an alias (champion by default) at a model version")
    p.add_argument("version")
    p.add_argument("--alias", default="champion")
    p.add_argument("--name", default="lexgpt")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("export", help="write a model for Hugging Face transformers (a folder) or llama.cpp (a GGUF file)")
    p.add_argument("model", help="MLflow model URI, e.g. models:/lexgpt@champion")
    p.add_argument("out", help="hf: a folder for model.safetensors, config.json, tokenizer.json; "
                   "gguf: a file, e.g. lexgpt.gguf")
    p.add_argument("--format", choices=("hf", "gguf"), default="hf", help="hf (default) or gguf (llama.cpp, Ollama)")
    p.add_argument("--dtype", choices=("f32", "bf16"), default="f32", help="gguf: weight type of the matrices")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("mlflow-ui", help="start the MLflow web UI", formatter_class=fmt)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1, help="server processes (each ~250 MB)")
    p.set_defaults(func=cmd_mlflow_ui)
