"""Evaluation samples: the registered model answers a fixed list of questions.

The questions and the sampling settings live here and nowhere else, so editing them re-runs
this asset alone (seconds), never training or registration. Each answer's seed combines the
config's seed with the question (:func:`lexgpt.generation.generation_params.seed_for`): the same
question and seed give the same text, different questions different draws.
"""

import dagster as dg
import polars as pl

from lexgpt.generation.generation_params import GenerationParams, seed_for
from lexgpt.infra import atomic
from lexgpt.infra.hashing import sha256_json, short
from lexgpt.tracking import packaging, run_artifacts
from pipelines.assets.registered_model import registered_model
from pipelines.assets.shared import MODEL_GROUP
from pipelines.lake import CONFIG_HASH_KEY, config_hash, latest_metadata
from pipelines.resources import DataLake, MlflowTracking
from pipelines.run_defaults import defaults_from_file
from pipelines.versioning import code_version

EVAL_PROMPTS = [
    "What do you think about language models?",
    "Do you think we live in a simulation?",
    "What is the meaning of life?",
    "Tell me about your first programming language.",
    "What scares you about artificial intelligence?",
    "What book changed your life?",
]



@defaults_from_file("evaluation_samples")  # LEXGPT_CONFIG, see pipelines/run_defaults.py
class SamplesConfig(dg.Config):
    """Sampling for evaluation_samples: ``lexgpt generate``'s defaults, QA framing on."""

    max_new_tokens: int = GenerationParams.max_new_tokens
    temperature: float = GenerationParams.temperature
    top_k: int = GenerationParams.top_k
    top_p: float = GenerationParams.top_p
    seed: int = 0  # combined with each question (seed_for)
    qa: bool = True



@dg.asset(
    group_name=MODEL_GROUP,
    deps=[registered_model],
    code_version=code_version("lexgpt.generation.generate", "lexgpt.generation.generation_params",
                              "lexgpt.tracking.packaging", "lexgpt.modeling.model_files", "lexgpt.modeling.checkpoint",
                              "lexgpt.modeling.model", "lexgpt.tokenizer.bpe", "lexgpt.tokenizer.tokenizer_file",
                              "pipelines.assets.evaluation_samples"),
    description="Seeded samples from the model version registered_model registered, "
    "for a fixed list of questions in the notebook's podcast question-answer framing; "
    "sampled with `lexgpt generate`'s defaults (lexgpt.generation.generate.GenerationParams).",
    owners=["team:model"],
    kinds={"parquet", "mlflow"},
)
def evaluation_samples(context: dg.AssetExecutionContext, config: SamplesConfig, lake: DataLake,
                       mlflow: MlflowTracking) -> dg.MaterializeResult:
    from lexgpt.generation.generate import GenerationParams, complete, qa_prompt

    layout = lake.for_asset(context)
    upstream = latest_metadata(context.instance, registered_model.key)
    if upstream is None:
        raise RuntimeError("registered_model has no materialization yet: materialize it first")
    version = str(upstream.get("registered_version") or "")
    if not version:
        raise RuntimeError("registered_model's metadata names no model version: re-materialize it")
    mlflow.setup()
    model_uri = f"models:/{mlflow.registered_model}/{version}"
    model, tokenizer = packaging.load_model_for_generation(model_uri)
    rows = []
    for question in EVAL_PROMPTS:
        params = GenerationParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                  top_k=config.top_k, top_p=config.top_p, seed=seed_for(config.seed, question), qa=config.qa)
        completion = complete(model, tokenizer, question, params)
        rows.append({"prompt": question, "framed_prompt": qa_prompt(question) if config.qa else question,
                     "completion": completion, "tokens": len(tokenizer.encode(completion)),
                     "seed": params.seed, "temperature": params.temperature, "model_version": version})
    df = pl.DataFrame(rows)
    out = layout.samples_file()
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
            **layout.files_metadata("evaluation_samples"),
        },
        data_version=dg.DataVersion(short(sha256_json(rows))),
    )
