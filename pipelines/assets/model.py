"""Model stages: the trained GPT (tracked and registered in MLflow) and evaluation samples."""


import base64
import dataclasses
import re
import shutil

import dagster as dg
import polars as pl

from lexgpt import atomic, cleaning, packaging, registry, run_artifacts, tracking
from lexgpt.generation_params import GenerationParams
from lexgpt.hashing import sha256_bytes, sha256_file, sha256_json, short
from lexgpt.interrupts import stop_on_interrupt
from pipelines.assets.baseline import ngram_baseline
from pipelines.assets.data import cleaned_corpus
from pipelines.assets.tokens import bpe_vocab, token_shards
from pipelines.run_defaults import defaults_from_file
from pipelines.staleness import CONFIG_HASH_KEY, config_hash
from pipelines.lake import latest_data_version, latest_metadata, write_lineage
from pipelines.resources import DataLake, MlflowTracking
from pipelines.versioning import code_version

GROUP = "model"

EVAL_PROMPTS = [
    "What do you think about language models?",
    "Do you think we live in a simulation?",
    "What is the meaning of life?",
    "Tell me about your first programming language.",
    "What scares you about artificial intelligence?",
    "What book changed your life?",
]


@defaults_from_file("trained_model")  # LEXGPT_CONFIG, see pipelines/run_defaults.py
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


@defaults_from_file("evaluation_samples")  # LEXGPT_CONFIG, see pipelines/run_defaults.py
class SamplesConfig(dg.Config):
    """Sampling for evaluation_samples: ``lexgpt generate``'s defaults, QA framing on."""

    max_new_tokens: int = GenerationParams.max_new_tokens
    temperature: float = GenerationParams.temperature
    top_k: int = GenerationParams.top_k
    top_p: float = GenerationParams.top_p
    seed: int = 0  # sample i uses seed + i
    qa: bool = True


def _latest_version(context: dg.AssetExecutionContext, asset) -> str | None:
    return latest_data_version(context.instance, asset.key)


def _mlflow_run_url(run_id: str, experiment_id: str) -> str:
    return f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"


@dg.asset(
    group_name=GROUP,
    deps=[token_shards, bpe_vocab, ngram_baseline],
    code_version=code_version("lexgpt.model", "lexgpt.train", "lexgpt.optim", "lexgpt.loss_eval",
                              "lexgpt.dataloader", "lexgpt.checkpoint", "lexgpt.device", "lexgpt.tracking",
                              "lexgpt.run_artifacts", "lexgpt.packaging", "lexgpt.registry",
                              "lexgpt.mlflow_model", "pipelines.assets.model"),
    description="A GPT trained from scratch on the token shards (cpu-small on CPU, gpu-small "
    "on a GPU), tracked in MLflow and registered as `lexgpt` (alias champion if its val "
    "bits/char beat the current champion's, else challenger). Resumes from its last "
    "checkpoint if a run with the same inputs and config was interrupted.",
    owners=["team:model"],
    kinds={"pytorch", "mlflow"},
)
def trained_model(context: dg.AssetExecutionContext, config: TrainingConfig, lake: DataLake,
                  mlflow: MlflowTracking):
    # Ctrl-C is recorded and raised at the next safe point too: Dagster's handler raises
    # wherever the main thread is, and where that drops it (a GC callback) training ran on.
    with stop_on_interrupt():  # before the slow imports: a Ctrl-C there counts too
        import torch

        from lexgpt.model import GPT, GPTConfig
        from lexgpt.train import TrainConfig, train

        from lexgpt import shards

        tokenizer = lake.load_tokenizer()
        # Ids past the vocab or a shard that disagrees with its manifest fail here, naming the file.
        manifest = shards.validate_shards(lake.shards_dir(), tokenizer.vocab_size)
        baseline = lake.read_ngram_result()
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
            "rules_hash": str((latest_metadata(context.instance, cleaned_corpus.key) or {}).get("rules_sha256")),
        }
        full_config = {"model": model_cfg.to_dict(), "train": dataclasses.asdict(train_cfg)}
        run_key = sha256_json({"config": full_config, "inputs": lineage})[:16]
        # Same inputs + config -> same folder, so a killed run resumes from its checkpoint.
        work_dir = lake.model_dir() / "runs" / run_key
        context.log.info(f"training {preset} ({model_cfg.to_dict()}) in {work_dir}")

        # --- MLflow: the run opens before training and metrics stream into it (issue 11) ---
        experiment_id = mlflow.setup()
        # The val text itself (not its tokens): a champion scored on other text is re-scored.
        corpus = lake.read_corpus()
        val_ids = set(manifest["splits"]["val"]["episodes"])
        val_texts = [t for e, t in zip(corpus["episode_id"].to_list(), corpus["text"].to_list()) if e in val_ids]
        val_text_sha = sha256_json(val_texts)[:16]
        tags = {**lineage, "dagster_run_id": context.run_id, "val_text_sha256": val_text_sha}
        with tracking.start_run(f"{preset}-{run_key[:8]}", experiment=mlflow.experiment, tags=tags) as run:
            run_id = run.info.run_id
            tracking.log_params({**full_config, "preset": preset, "run_key": run_key}, run_id=run_id)
            live = tracking.LiveMetrics(run_id)
            result = train(model_cfg, train_cfg, lake.shards_dir(), work_dir,
                           tokenizer.token_char_counts(), on_metrics=live, progress=True)
            live.close(result.history)

            out_dir = lake.model_dir()
            weights = out_dir / "model.pt"
            config_file = out_dir / "config.json"
            with atomic.atomic_path(weights) as tmp:
                shutil.copyfile(result.weights_path, tmp)
            atomic.write_json(config_file, model_cfg.to_dict())
            weights_sha = sha256_file(weights)

            run_artifacts.log_training_run(history=result.history, tokenizer_path=lake.tokenizer_file(),
                                      rules_path=cleaning.rules_path(), run_id=run_id, log_metrics=False)
            tracking.log_metrics_final(run_id, {"final_val_bpc": result.val_bpc, "final_val_loss": result.val_loss,
                                                "ngram_val_bpc": baseline["val_bpc"]})
            tracking.show_score_in_run_name(run_id, result.val_bpc)
            version = packaging.log_and_register_model(
                weights, config_file, lake.tokenizer_file(), registered_name=mlflow.registered_model,
                val_bpc=result.val_bpc, tags=tags, run_id=run_id,
            )
            before = registry.version_by_alias(mlflow.registered_model, registry.CHAMPION)
            rescored = None
            if before is not None and (before.tags or {}).get("val_text_sha256") != val_text_sha:
                # Like with like: the champion was scored on other val text (rules or split changed).
                from lexgpt.loss_eval import score_texts

                champ, champ_tokenizer = packaging.load_model_for_generation(
                    f"models:/{mlflow.registered_model}/{before.version}")
                rescored = score_texts(champ, champ_tokenizer, val_texts)["val_bpc"]
                context.log.info(f"champion v{before.version} re-scored on the current val text: "
                                 f"{rescored:.4f} bits/char")
                tracking.log_metrics_final(run_id, {"champion_val_bpc_rescored": rescored})
            alias = registry.promote(mlflow.registered_model, version.version, result.val_bpc,
                                     champion_val_bpc=rescored)
        champion_before = {}
        if before is not None and str(before.version) != version.version:
            champion_before = {"previous_champion_version": str(before.version),
                               "previous_champion_val_bpc": registry.version_val_bpc(before),
                               "previous_champion_val_bpc_on_this_val": rescored}
        # --- end MLflow ---
        write_lineage(out_dir, **lineage, weights_sha256=weights_sha, config=full_config,
                      mlflow_run_id=run_id, model_version=version.version, val_bpc=result.val_bpc)

    # The plot MLflow has, rendered once by log_training_run, shown in Dagster too.
    png = run_artifacts.logged_loss_curve(run_id)
    plot_md = f"![loss curve](data:image/png;base64,{base64.b64encode(png).decode()})" if png else ""

    return dg.MaterializeResult(
        metadata={
            "preset": preset,
            "params": GPT(model_cfg).num_params(),
            "steps": result.steps,
            "tokens_seen": result.tokens_seen,
            "train_minutes": round(result.elapsed_s / 60, 2),
            "val_loss": round(result.val_loss, 4),
            "val_bpc": round(result.val_bpc, 4),
            "val_fraction": result.val_fraction,
            "max_val_bpc": config.max_val_bpc,  # the bound val_bpc_within_bound checks
            "ngram_val_bpc": round(baseline["val_bpc"], 4),
            "best_step": result.best_step,
            "tokens_per_s": round(result.tokens_per_s),
            "mlflow_run": dg.MetadataValue.url(_mlflow_run_url(run_id, experiment_id)),
            "mlflow_run_id": run_id,
            "model_version": f"{mlflow.registered_model} v{version.version} ({alias})",
            "registered_version": version.version,
            "alias": alias,
            **{k: v for k, v in champion_before.items() if v is not None},
            "loss_curve": dg.MetadataValue.md(plot_md or "(no plot)"),
            "weights": dg.MetadataValue.path(str(weights)),
            CONFIG_HASH_KEY: config_hash(config.model_dump()),
            **lake.files_metadata("trained_model"),
        },
        # Config folded in: a new config with identical weights is still a new model.
        data_version=dg.DataVersion(short(sha256_bytes(f"{weights_sha}:{sha256_json(full_config)}".encode()))),
    )


@dg.asset_check(
    asset=trained_model,
    blocking=True,  # a model past the bound gets no evaluation samples in the same run
    description="Val bits per character (whole val split) is at most the run's `max_val_bpc`.",
)
def val_bpc_within_bound(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    recorded = latest_metadata(context.instance, trained_model.key) or {}
    if "val_bpc" not in recorded or "max_val_bpc" not in recorded:
        return dg.AssetCheckResult(passed=False, description="trained_model recorded no val_bpc and "
                                   "max_val_bpc: materialize it")
    val_bpc, bound = float(recorded["val_bpc"]), float(recorded["max_val_bpc"])
    return dg.AssetCheckResult(passed=val_bpc <= bound, metadata={"val_bpc": val_bpc, "max_val_bpc": bound})


@dg.asset(
    group_name=GROUP,
    deps=[trained_model, bpe_vocab],
    code_version=code_version("lexgpt.generate", "lexgpt.generation_params", "lexgpt.packaging",
                              "pipelines.assets.model"),
    description="Seeded samples from the registered model version trained_model produced, "
    "for a fixed list of questions in the notebook's podcast question-answer framing; "
    "sampled with `lexgpt generate`'s defaults (lexgpt.generate.GenerationParams).",
    owners=["team:model"],
    kinds={"parquet", "mlflow"},
)
def evaluation_samples(context: dg.AssetExecutionContext, config: SamplesConfig, lake: DataLake,
                       mlflow: MlflowTracking) -> dg.MaterializeResult:
    from lexgpt.generate import GenerationParams, complete, qa_prompt

    upstream = latest_metadata(context.instance, trained_model.key)
    if upstream is None:
        raise RuntimeError("trained_model has no materialization yet: materialize it first")
    version = str(upstream.get("registered_version") or "")
    if not version:  # materialized before registered_version was recorded: "lexgpt v3 (champion)"
        match = re.search(r" v(\d+)", str(upstream.get("model_version", "")))
        version = match.group(1) if match else ""
    if not version:
        raise RuntimeError("trained_model's metadata names no registered model version: re-materialize it")
    mlflow.setup()
    model_uri = f"models:/{mlflow.registered_model}/{version}"
    model, tokenizer = packaging.load_model_for_generation(model_uri)
    rows = []
    for i, question in enumerate(EVAL_PROMPTS):
        params = GenerationParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                  top_k=config.top_k, top_p=config.top_p, seed=config.seed + i, qa=config.qa)
        completion = complete(model, tokenizer, question, params)
        rows.append({"prompt": question, "framed_prompt": qa_prompt(question) if config.qa else question,
                     "completion": completion, "tokens": len(tokenizer.encode(completion)),
                     "seed": params.seed, "temperature": params.temperature, "model_version": version})
    df = pl.DataFrame(rows)
    out = lake.samples_file()
    atomic.write_parquet(out, df)
    run_id = upstream.get("mlflow_run_id")
    if run_id:
        run_artifacts.log_samples(df.to_pandas(), run_id=run_id)
    # Whole samples; the QA framing's answer start ("... I think that") is shown so a
    # sample reads from the start of a sentence, not mid-word.
    answer_start = "I think that " if config.qa else ""
    table = dg.MetadataValue.table(
        records=[dg.TableRecord({"question": r["prompt"], "answer": answer_start + r["completion"],
                                 "tokens": r["tokens"], "seed": r["seed"]}) for r in rows],
        schema=dg.TableSchema(columns=[
            dg.TableColumn("question", "string"), dg.TableColumn("answer", "string"),
            dg.TableColumn("tokens", "int"), dg.TableColumn("seed", "int")]),
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": f"{mlflow.registered_model} v{version}",
            "model_uri": model_uri,
            "samples": table,
            "samples_count": len(rows),
            "mlflow_run_id": run_id or "",
            "path": dg.MetadataValue.path(str(out)),
            CONFIG_HASH_KEY: config_hash(config.model_dump()),
            **lake.files_metadata("evaluation_samples"),
        },
        data_version=dg.DataVersion(short(sha256_json(rows))),
    )
