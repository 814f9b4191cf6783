"""The trained GPT: weights from the token shards, trained in a process tree of its own.

``trained_model`` writes the plan (model and training config, where the shards are) into
its work folder and launches :mod:`pipelines.training_process` through a Dagster Pipes
client (the ``pipes`` resource; :class:`~dagster.PipesSubprocessClient` by default), under
``torchrun`` when there are several ranks (the ``trainer`` resource,
:class:`pipelines.resources.TrainingLauncher`). Rank 0 streams metrics into the MLflow run
opened here and reports the result back through Pipes; the weights land in the lake.

Registering the weights in MLflow (artifacts, charts, the champion gate) is the next asset,
``registered_model``, so a change there never retrains. The blocking check
``val_bpc_within_bound`` stands between the two.
"""

import dataclasses
import os
import shutil
import warnings
from pathlib import Path

import dagster as dg

from lexgpt.infra import atomic
from lexgpt.infra.hashing import sha256_bytes, sha256_file, sha256_json, short
from lexgpt.tracking import runs
from pipelines.assets.bpe_vocab import bpe_vocab
from pipelines.assets.shared import MODEL_GROUP
from pipelines.assets.token_shards import token_shards
from pipelines.lake import (
    CONFIG_HASH_KEY,
    config_hash,
    latest_data_version,
    latest_metadata,
    write_lineage,
)
from pipelines.lake_layout import LakeLayout
from pipelines.resources import DataLake, MlflowTracking, TrainingLauncher
from pipelines.run_defaults import defaults_from_file
from pipelines.training_process import LAUNCHER_PID_ENV
from pipelines.versioning import code_version


# The code that decides the weights. Also part of a run's work-folder key: after an edit of
# this code a materialization trains afresh instead of resuming (or reusing) the old code's run.
TRAINING_CODE_VERSION = code_version(
    "lexgpt.modeling.model", "lexgpt.modeling.checkpoint", "lexgpt.data.dataloader", "lexgpt.data.shards",
    "lexgpt.evaluation.loss_eval",
    "lexgpt.training.sizing", "lexgpt.training.train_loop", "lexgpt.training.run_state",
    "lexgpt.training.train_config", "lexgpt.training.optim",
    "lexgpt.training.muon", "lexgpt.training.train_progress", "lexgpt.training.device",
    "pipelines.assets.trained_model", "pipelines.training_process",
)
# The code that turns weights and val text into bits/char. Recorded with the score, so the
# champion gate compares like with like (registered_model re-scores the champion when its
# score came from other code, other val text or another precision).
SCORING_CODE_VERSION = code_version("lexgpt.evaluation.loss_eval", "lexgpt.modeling.model")


@defaults_from_file("trained_model")  # LEXGPT_CONFIG, see pipelines/run_defaults.py
class TrainingConfig(dg.Config):
    """Training run config. ``None`` fields take the preset's (or the library's) default.

    The config is folded into the asset's data version, so a different config makes
    ``registered_model`` stale.
    """

    preset: str = "auto"  # auto: sized to the budget and this machine (lexgpt.training.sizing); or a preset name
    max_steps: int | None = None
    max_minutes: float | None = None  # the time budget (cpu-small: 8 minutes)
    batch_size: int | None = None  # sequences per micro-step and rank
    grad_accum: int | None = None  # micro-steps per step (global batch: batch x accum x ranks)
    matrix_lr: float | None = None
    embedding_lr: float | None = None
    head_lr: float | None = None
    weight_decay: float | None = None
    eval_every: int | None = None
    eval_windows: int | None = None
    checkpoint_minutes: float | None = None
    seed: int = 1337
    compile: bool | None = None  # None: the library's measured default
    dtype: str | None = None
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    dropout: float | None = None
    max_val_bpc: float = 2.5  # the blocking check fails above this


_MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")


def training_plan(config: TrainingConfig, vocab_size: int, sized=None):
    """``(preset, GPTConfig, TrainConfig)`` for a run config: the library's recipe for the
    preset (for ``auto``, the ``sized`` plan's shape on its size class's recipe), then the
    fields the config sets."""
    from lexgpt.modeling.model import GPTConfig
    from lexgpt.training.train_config import TrainConfig

    preset, sized_model, sized_train = config.preset, {}, {}
    if preset == "auto":
        if sized is None:
            raise ValueError("preset auto needs a sized plan (lexgpt.training.sizing.size_for_budget)")
        preset, sized_model = sized.recipe, sized.model_fields()
        sized_train = {"batch_size": sized.batch_size, "max_steps": sized.max_steps}
    model_overrides = {k: getattr(config, k) for k in _MODEL_FIELDS if getattr(config, k) is not None}
    model_cfg = GPTConfig.from_preset(preset, vocab_size, **{**sized_model, **model_overrides})
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"preset"}
    train_overrides = {k: v for k, v in config.model_dump().items() if k in train_fields and v is not None}
    return preset, model_cfg, TrainConfig.for_preset(preset, **{**sized_train, **train_overrides})


def size_to_budget(config: TrainingConfig, train_tokens: int, vocab_size: int, cuda: bool, ranks: int):
    """For ``preset: auto``: the shape this machine trains best in the budget (the config's,
    else the fixed preset's), from its measured FLOP/s (``lexgpt.training.sizing.plan_here``)."""
    from lexgpt.training import sizing
    from lexgpt.training.train_config import TrainConfig

    minutes = config.max_minutes or TrainConfig.for_preset("gpu-small" if cuda else "cpu-small").max_minutes
    return sizing.plan_here(minutes * 60, train_tokens, vocab_size, ranks=ranks,
                            dtype=config.dtype or "auto", compile=config.compile)


def _sized_if_auto(context: dg.AssetExecutionContext, config: TrainingConfig, train_tokens: int,
                   vocab_size: int, world: int):
    """``preset: auto``'s sized plan (:func:`size_to_budget`), told in one line; else None."""
    import torch

    if config.preset != "auto":
        return None
    sized = size_to_budget(config, train_tokens, vocab_size, torch.cuda.is_available(), world)
    context.log.info(f"preset auto: {sized.n_layer} x {sized.n_embd} ({sized.params:,} params) on the "
                     f"{sized.recipe} recipe, ~{sized.tokens:,} tokens ({sized.tokens_per_param} per param, "
                     f"{sized.epochs} epochs) at {sized.flops_per_s / 1e9:.0f} GFLOP/s")
    return sized


def _copy_into_lake(layout: LakeLayout, work_dir: Path, model_cfg) -> Path:
    """The trained weights, history and model config from the run's work folder into the
    lake, each written atomically; returns the weights' path."""
    weights = layout.model_weights_file()
    for src, dest in ((work_dir / "model.pt", weights), (work_dir / "history.json", layout.model_history_file())):
        with atomic.atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    atomic.write_json(layout.model_config_file(), model_cfg.to_dict())
    return weights


def _drop_other_runs(work_dir: Path) -> None:
    """Once a run's weights are in the lake, the work folders of other runs (other code,
    config or inputs: interrupted, or superseded) serve nothing: they go, which bounds the
    disk the checkpoints take. This run's stays: materializing again with the same code,
    config and inputs finds it finished and re-scores those weights instead of retraining."""
    for other in work_dir.parent.iterdir():
        if other.is_dir() and other != work_dir:
            shutil.rmtree(other, ignore_errors=True)


def _train_in_pipes(context: dg.AssetExecutionContext, mlflow: MlflowTracking, trainer: TrainingLauncher,
                    pipes: dg.PipesSubprocessClient, plan_file: Path, inputs: dict, *, run_name: str,
                    params: dict) -> tuple[str, dict]:
    """Open the MLflow run, launch the training process tree on ``plan_file`` through Pipes
    and wait for it; returns the run id and what rank 0 reported (val_bpc, steps, ...)."""
    import torch

    tags = {**inputs, "dagster_run_id": context.run_id}
    with runs.start_run(run_name, experiment=mlflow.experiment, tags=tags) as run:
        run_id = run.info.run_id
        runs.log_params(params, run_id=run_id)
        command = trainer.command(plan_file, cuda_devices=torch.cuda.device_count())
        context.log.info(f"launching: {' '.join(command)}")
        with warnings.catch_warnings():  # Pipes' own use of a preview API is not the user's concern
            warnings.simplefilter("ignore", dg.PreviewWarning)
            invocation = pipes.run(context=context, command=command,
                                   extras={"mlflow_run_id": run_id, "tracking_uri": mlflow.tracking_uri_now()},
                                   env={LAUNCHER_PID_ENV: str(os.getpid())})
        reported = {k: getattr(v, "value", v) for k, v in invocation.get_materialize_result().metadata.items()}
        runs.log_metrics_final(run_id, {"final_val_bpc": reported["val_bpc"],
                                        "final_val_loss": reported["val_loss"]})
        runs.show_score_in_run_name(run_id, reported["val_bpc"])
    return run_id, reported


@dg.asset(
    group_name=MODEL_GROUP,
    deps=[token_shards, bpe_vocab],
    code_version=TRAINING_CODE_VERSION,
    description="A GPT trained from scratch on the token shards (sized to the time budget and "
    "this machine's measured speed unless a preset is set), in its own process tree (torchrun over every visible GPU) launched through "
    "Dagster Pipes, with live metrics in MLflow. A run with the same inputs, config and training "
    "code continues from its last checkpoint (an interrupted one resumes, a finished one is reused).",
    owners=["team:model"],
    kinds={"pytorch", "mlflow"},
)
def trained_model(context: dg.AssetExecutionContext, config: TrainingConfig, lake: DataLake,
                  mlflow: MlflowTracking, trainer: TrainingLauncher,
                  pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    import torch

    from lexgpt.data import shards

    layout = lake.for_asset(context)
    tokenizer = layout.load_tokenizer()
    # Ids past the vocab or a shard that disagrees with its manifest fail here, naming the file.
    manifest = shards.validate_shards(layout.shards_dir(), tokenizer.vocab_size)
    world = trainer.world_size(torch.cuda.device_count())  # a bad LEXGPT_* setting fails here, in one line
    sized = _sized_if_auto(context, config, manifest["splits"]["train"]["tokens"], tokenizer.vocab_size, world)
    preset, model_cfg, train_cfg = training_plan(config, tokenizer.vocab_size, sized)
    inputs = {"vocab_version": latest_data_version(context.instance, bpe_vocab.key),
              "shards_version": latest_data_version(context.instance, token_shards.key)}
    full_config = {"model": model_cfg.to_dict(), "train": dataclasses.asdict(train_cfg)}
    run_key = sha256_json({"config": full_config, "inputs": inputs, "code": TRAINING_CODE_VERSION})[:16]
    work_dir = layout.training_run_dir(run_key)
    work_dir.mkdir(parents=True, exist_ok=True)
    plan_file = work_dir / "plan.json"
    atomic.write_json(plan_file, {**full_config, "shards_dir": str(layout.shards_dir()),
                                  "tokenizer": str(layout.tokenizer_file()), "out_dir": str(work_dir)})

    context.log.info(f"training {preset} ({model_cfg.to_dict()}) in {work_dir}")
    experiment_id = mlflow.setup()
    run_id, reported = _train_in_pipes(context, mlflow, trainer, pipes, plan_file, inputs,
                                       run_name=f"{preset}-{run_key[:8]}",
                                       params={**full_config, "preset": preset, "run_key": run_key})
    weights = _copy_into_lake(layout, work_dir, model_cfg)
    weights_sha = sha256_file(weights)
    write_lineage(layout.model_dir(), **inputs, weights_sha256=weights_sha, config=full_config,
                  mlflow_run_id=run_id, run_key=run_key, val_bpc=round(reported["val_bpc"], 4),
                  val_loss=round(reported["val_loss"], 4), steps=reported.get("steps"),
                  auto_plan=sized.to_dict() if sized else None)
    _drop_other_runs(work_dir)
    from lexgpt.modeling.model import GPT

    return dg.MaterializeResult(
        metadata={
            "preset": preset,
            "params": GPT(model_cfg).num_params(),
            **{k: reported[k] for k in ("steps", "tokens_seen", "best_step", "world_size") if k in reported},
            "train_minutes": round(reported["elapsed_s"] / 60, 2),  # compiling and in-training evals included
            **({"budget_minutes": train_cfg.max_minutes} if train_cfg.max_minutes else {}),
            "val_loss": round(reported["val_loss"], 4),
            "val_bpc": round(reported["val_bpc"], 4),
            "val_fraction": reported["val_fraction"],
            "val_dtype": reported.get("dtype", "float32"),  # the precision of the score
            "scoring_version": SCORING_CODE_VERSION,
            "tokens_per_s": round(reported["tokens_per_s"]),
            **({"mfu": round(reported["mfu"], 4)} if reported.get("mfu") is not None else {}),
            "max_val_bpc": config.max_val_bpc,  # the bound val_bpc_within_bound checks
            **({"auto_plan": dg.MetadataValue.json(sized.to_dict())} if sized else {}),
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(run_id, experiment_id)),
            "mlflow_run_id": run_id,
            "weights_sha256": weights_sha,
            "weights": dg.MetadataValue.path(str(weights)),
            CONFIG_HASH_KEY: config_hash(config.model_dump()),
            **layout.files_metadata("trained_model"),
        },
        # Config folded in: a new config with identical weights is still a new model.
        data_version=dg.DataVersion(short(sha256_bytes(f"{weights_sha}:{sha256_json(full_config)}".encode()))),
    )


@dg.asset_check(
    asset=trained_model,
    blocking=True,  # a model past the bound is never registered, in this run or a later one
    description="Val bits per character (whole val split) is at most the run's `max_val_bpc`.",
)
def val_bpc_within_bound(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    recorded = latest_metadata(context.instance, trained_model.key) or {}
    if "val_bpc" not in recorded or "max_val_bpc" not in recorded:
        return dg.AssetCheckResult(passed=False, description="trained_model recorded no val_bpc and "
                                   "max_val_bpc: materialize it")
    val_bpc, bound = float(recorded["val_bpc"]), float(recorded["max_val_bpc"])
    passed = val_bpc <= bound
    description = (f"val_bpc {val_bpc:.4f} <= max_val_bpc {bound:g}" if passed else
                   f"val_bpc {val_bpc:.4f} > max_val_bpc {bound:g} after {recorded.get('steps', '?')} steps: "
                   "train longer (trained_model: {max_minutes: ...}) or raise max_val_bpc")
    return dg.AssetCheckResult(passed=passed, description=description,
                               metadata={"val_bpc": val_bpc, "max_val_bpc": bound})
