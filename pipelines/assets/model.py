"""Model stages: the trained GPT (tracked and registered in MLflow) and evaluation samples."""


import base64
import dataclasses
import json
import shutil

import dagster as dg
import polars as pl

from lexgpt import atomic, paths, tracking
from lexgpt.hashing import sha256_bytes, sha256_file, sha256_json, short
from pipelines.assets.data import CORPUS_FILE, cleaned_corpus
from pipelines.assets.tokens import SHARDS_DIR, TOKENIZER_FILE, bpe_vocab, load_tokenizer, token_shards
from pipelines.staleness import CONFIG_HASH_KEY, config_hash
from pipelines.lake import latest_data_version, markdown_table, write_lineage
from pipelines.resources import DataLake, MlflowTracking
from pipelines.versioning import code_version

GROUP = "model"
MODEL_DIR = ("trained_model",)
SAMPLES_FILE = ("evaluation_samples", "samples.parquet")

EVAL_PROMPTS = [
    "What do you think about language models?",
    "Do you think we live in a simulation?",
    "What is the meaning of life?",
    "Tell me about your first programming language.",
    "What scares you about artificial intelligence?",
    "What book changed your life?",
]


class TrainingConfig(dg.Config):
    """Training run config. ``None`` fields take the preset's (or the library's) default.

    The config is folded into the asset's data version, so a different config makes
    ``evaluation_samples`` stale.
    """

    preset: str = "auto"  # auto: gpu-small with CUDA, cpu-small without
    max_steps: int | None = None
    max_minutes: float | None = None  # the time budget (cpu-small: 8 minutes)
    batch_size: int | None = None
    matrix_lr: float | None = None
    embedding_lr: float | None = None
    head_lr: float | None = None
    weight_decay: float | None = None
    eval_every: int | None = None
    eval_windows: int | None = None
    checkpoint_minutes: float | None = None
    seed: int = 1337
    compile: bool | None = None  # None: on with CUDA, off on CPU
    dtype: str | None = None
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    dropout: float | None = None
    max_val_bpc: float = 2.5  # the asset check fails above this


class SamplesConfig(dg.Config):
    max_new_tokens: int = 120
    temperature: float = 0.8
    top_k: int = 50
    seed: int = 0
    qa: bool = True


def _latest_version(context: dg.AssetExecutionContext, asset) -> str | None:
    return latest_data_version(context.instance, asset.key)


def _mlflow_run_url(run_id: str, experiment_id: str) -> str:
    return f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"


@dg.asset(
    group_name=GROUP,
    deps=[token_shards, bpe_vocab],
    code_version=code_version("lexgpt.model", "lexgpt.train", "lexgpt.tracking",
                              "lexgpt.mlflow_model", "pipelines.assets.model"),
    description="A GPT trained from scratch on the token shards (cpu-small on CPU, gpu-small "
    "on a GPU), tracked in MLflow and registered as `lexgpt` (alias champion if its val "
    "bits/char beat the current champion's, else challenger). Resumes from its last "
    "checkpoint if a run with the same inputs and config was interrupted.",
    owners=["team:model"],
    kinds={"pytorch", "mlflow"},
    check_specs=[dg.AssetCheckSpec("val_bpc_within_bound", asset="trained_model",
                                   description="Val bits per character is at most `max_val_bpc`.")],
)
def trained_model(context: dg.AssetExecutionContext, config: TrainingConfig, lake: DataLake,
                  mlflow: MlflowTracking):
    import torch

    from lexgpt.model import GPT, GPTConfig
    from lexgpt.train import TrainConfig, train

    tokenizer = load_tokenizer(lake)
    preset = config.preset
    if preset == "auto":
        preset = "gpu-small" if torch.cuda.is_available() else "cpu-small"
    model_overrides = {k: getattr(config, k) for k in ("n_layer", "n_head", "n_embd", "block_size", "dropout")
                       if getattr(config, k) is not None}
    model_cfg = GPTConfig.from_preset(preset, tokenizer.vocab_size, **model_overrides)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train_overrides = {k: v for k, v in config.model_dump().items()
                       if k in train_fields and v is not None and k != "preset"}
    train_cfg = TrainConfig.for_preset(preset, **train_overrides)

    lineage = {
        "corpus_version": _latest_version(context, cleaned_corpus),
        "vocab_version": _latest_version(context, bpe_vocab),
        "shards_version": _latest_version(context, token_shards),
        "rules_hash": json.loads(lake.path(CORPUS_FILE[0], "lineage.json").read_text())["rules_sha256"][:16],
    }
    full_config = {"model": model_cfg.to_dict(), "train": dataclasses.asdict(train_cfg)}
    run_key = sha256_json({"config": full_config, "inputs": lineage})[:16]
    # Same inputs + config -> same folder, so a killed run resumes from its checkpoint.
    work_dir = lake.path(*MODEL_DIR, "runs", run_key)
    context.log.info(f"training {preset} ({model_cfg.to_dict()}) in {work_dir}")
    result = train(model_cfg, train_cfg, lake.path(*SHARDS_DIR), work_dir,
                   tokenizer.token_char_counts(), progress=True)

    out_dir = lake.path(*MODEL_DIR)
    weights = out_dir / "model.pt"
    config_file = out_dir / "config.json"
    with atomic.atomic_path(weights) as tmp:
        shutil.copyfile(result.weights_path, tmp)
    atomic.write_json(config_file, model_cfg.to_dict())
    weights_sha = sha256_file(weights)

    experiment_id = mlflow.setup()
    tags = {**lineage, "dagster_run_id": context.run_id}
    run_id = tracking.log_training_run(
        config={**full_config, "preset": preset, "run_key": run_key},
        history=result.history,
        tokenizer_path=lake.path(*TOKENIZER_FILE),
        tags=tags,
        run_name=f"{preset}-{run_key[:8]}",
        experiment=mlflow.experiment,
    )
    tracking.log_metrics_final(run_id, {"final_val_bpc": result.val_bpc, "final_val_loss": result.val_loss})
    version = tracking.log_and_register_model(
        weights, config_file, lake.path(*TOKENIZER_FILE), registered_name=mlflow.registered_model,
        val_bpc=result.val_bpc, tags=tags, run_id=run_id,
    )
    alias = tracking.promote(mlflow.registered_model, version.version, result.val_bpc)
    write_lineage(out_dir, **lineage, weights_sha256=weights_sha, config=full_config,
                  mlflow_run_id=run_id, model_version=version.version, val_bpc=result.val_bpc)

    # The plot MLflow has, rendered once by log_training_run, shown in Dagster too.
    png = tracking.logged_loss_curve(run_id)
    plot_md = f"![loss curve](data:image/png;base64,{base64.b64encode(png).decode()})" if png else ""

    yield dg.MaterializeResult(
        metadata={
            "preset": preset,
            "params": GPT(model_cfg).num_params(),
            "steps": result.steps,
            "tokens_seen": result.tokens_seen,
            "train_minutes": round(result.elapsed_s / 60, 2),
            "val_loss": round(result.val_loss, 4),
            "val_bpc": round(result.val_bpc, 4),
            "val_fraction": result.val_fraction,
            "best_step": result.best_step,
            "tokens_per_s": round(result.tokens_per_s),
            "mlflow_run": dg.MetadataValue.url(_mlflow_run_url(run_id, experiment_id)),
            "mlflow_run_id": run_id,
            "model_version": f"{mlflow.registered_model} v{version.version} ({alias})",
            "loss_curve": dg.MetadataValue.md(plot_md or "(no plot)"),
            "weights": dg.MetadataValue.path(str(weights)),
            CONFIG_HASH_KEY: config_hash(config.model_dump()),
            **lake.files_metadata("trained_model"),
        },
        # Config folded in: a new config with identical weights is still a new model.
        data_version=dg.DataVersion(short(sha256_bytes(f"{weights_sha}:{sha256_json(full_config)}".encode()))),
    )
    yield dg.AssetCheckResult(
        check_name="val_bpc_within_bound",
        passed=result.val_bpc <= config.max_val_bpc,
        metadata={"val_bpc": result.val_bpc, "max_val_bpc": config.max_val_bpc},
    )


@dg.asset(
    group_name=GROUP,
    deps=[trained_model, bpe_vocab],
    code_version=code_version("lexgpt.generate", "pipelines.assets.model"),
    description="Seeded samples from the trained model for a fixed list of prompts "
    "(the notebook's podcast question-answer framing by default).",
    owners=["team:model"],
    kinds={"parquet", "mlflow"},
)
def evaluation_samples(context: dg.AssetExecutionContext, config: SamplesConfig, lake: DataLake,
                       mlflow: MlflowTracking) -> dg.MaterializeResult:
    import torch

    from lexgpt.generate import generate, qa_prompt
    from lexgpt.model import GPT, GPTConfig

    tokenizer = load_tokenizer(lake)
    out_dir = lake.path(*MODEL_DIR)
    model = GPT(GPTConfig.from_dict(json.loads((out_dir / "config.json").read_text())))
    model.load_state_dict(torch.load(out_dir / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    rows = []
    for i, question in enumerate(EVAL_PROMPTS):
        prompt = qa_prompt(question) if config.qa else question
        ids = list(generate(model, tokenizer.encode(prompt), config.max_new_tokens,
                            temperature=config.temperature, top_k=config.top_k,
                            eos_id=tokenizer.eot_id, seed=config.seed + i))
        rows.append({"prompt": question, "completion": tokenizer.decode(ids), "tokens": len(ids),
                     "seed": config.seed + i, "temperature": config.temperature})
    df = pl.DataFrame(rows)
    out = lake.path(*SAMPLES_FILE)
    atomic.write_parquet(out, df)
    model_lineage = json.loads((out_dir / "lineage.json").read_text())
    mlflow.setup()
    tracking.log_samples(df.to_pandas(), run_id=model_lineage["mlflow_run_id"])
    preview = "\n\n".join(f"**{r['prompt']}**\n\n> {r['completion'][:400]}" for r in rows)
    return dg.MaterializeResult(
        metadata={
            "samples": len(rows),
            "preview": dg.MetadataValue.md(preview),
            "table": markdown_table(["prompt", "completion"], [[r["prompt"], r["completion"][:160]] for r in rows]),
            "mlflow_run_id": model_lineage["mlflow_run_id"],
            "path": dg.MetadataValue.path(str(out)),
            CONFIG_HASH_KEY: config_hash(config.model_dump()),
            **lake.files_metadata("evaluation_samples"),
        },
        data_version=dg.DataVersion(short(sha256_json(rows))),
    )
