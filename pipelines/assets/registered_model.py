"""The registered model: ``trained_model``'s weights as a version of ``lexgpt`` in MLflow,
with the run's files and charts, and the champion gate.

Registration is apart from training so that a change to the MLflow logging, a chart or the
gate re-runs this asset (seconds), never the training. The same weights are registered once:
a re-run finds the version carrying their hash and only re-applies the gate.

The gate (:func:`lexgpt.tracking.registry.promote`): a version becomes ``champion`` only if it beats
the n-gram baseline on the same shards **and** the current champion (re-scored first when
it was scored on other val text); otherwise ``challenger``. Weights whose blocking check
failed are never registered.
"""

import base64

import dagster as dg

from lexgpt.infra import atomic
from lexgpt.infra.hashing import sha256_json, short
from lexgpt.tracking import packaging, registry, run_artifacts, runs
from pipelines.assets.bpe_vocab import bpe_vocab
from pipelines.assets.cleaned_corpus import cleaned_corpus
from pipelines.assets.ngram_baseline import ngram_baseline
from pipelines.assets.shared import MODEL_GROUP
from pipelines.assets.token_shards import token_shards
from pipelines.assets.trained_model import trained_model, val_bpc_within_bound
from pipelines.lake import (
    INPUT_VERSION_TAG,
    failed_blocking_check,
    latest_data_version,
    latest_metadata,
    latest_tags,
)
from pipelines.lake_layout import LakeLayout
from pipelines.resources import DataLake, MlflowTracking
from pipelines.versioning import code_version

WEIGHTS_SHA_TAG = "weights_sha256"
_INPUTS = {"corpus_version": cleaned_corpus, "vocab_version": bpe_vocab, "shards_version": token_shards,
           "weights_version": trained_model}


class BlockingCheckFailed(RuntimeError):
    """The weights failed a blocking check: they are not registered."""


def _refuse_failed_weights(context: dg.AssetExecutionContext) -> None:
    """Stop if the latest trained_model failed ``val_bpc_within_bound`` (a run of this asset
    alone, from the UI or automation, never registers what the check rejected)."""
    model_entry = context.instance.get_latest_materialization_event(trained_model.key)
    if model_entry is None:
        return
    why = failed_blocking_check(context.instance, val_bpc_within_bound.check_key, model_entry.run_id)
    if why is not None:
        raise BlockingCheckFailed(f"trained_model failed val_bpc_within_bound ({why or 'see the Dagster UI'}); "
                                  "not registered")


def _val_texts(layout: LakeLayout) -> list[str]:
    from lexgpt.data import shards

    corpus = layout.read_corpus()
    val_ids = set(shards.read_manifest(layout.shards_dir())["splits"]["val"]["episodes"])
    return [t for e, t in zip(corpus["episode_id"].to_list(), corpus["text"].to_list()) if e in val_ids]


def _existing_version(name: str, weights_sha: str):
    """The registered version of these exact weights, if any (a re-run registers nothing new)."""
    runs.ensure_configured()
    for mv in runs.client().search_model_versions(f"name = '{name}'"):
        if (mv.tags or {}).get(WEIGHTS_SHA_TAG) == weights_sha:
            return mv
    return None


def _rescored_champion(champion, val_texts: list[str], val_text_sha: str, name: str, log) -> float | None:
    """The champion's bits/char on this val text, when it was scored on another (rules or
    split changed): like with like."""
    if champion is None or (champion.tags or {}).get("val_text_sha256") == val_text_sha:
        return None
    from lexgpt.evaluation.loss_eval import score_texts

    try:
        model, tokenizer = packaging.load_model_for_generation(f"models:/{name}/{champion.version}")
    except packaging.ModelRefused as err:  # e.g. registered before file hashes were recorded
        log.warning(f"champion v{champion.version} cannot be re-scored ({err}); compared by its own score")
        return None
    return score_texts(model, tokenizer, val_texts)["val_bpc"]


@dg.asset(
    group_name=MODEL_GROUP,
    deps=[trained_model, ngram_baseline, cleaned_corpus, token_shards, bpe_vocab],
    code_version=code_version(
        "lexgpt.tracking.runs", "lexgpt.tracking.run_artifacts", "lexgpt.tracking.plots", "lexgpt.tracking.packaging",
        "lexgpt.tracking.registry", "lexgpt.tracking.mlflow_model", "lexgpt.modeling.model_files",
        "lexgpt.evaluation.loss_eval", "pipelines.assets.registered_model",
    ),
    description="trained_model's weights registered as a version of `lexgpt` in MLflow (loss curve, "
    "tokenizer and the corpus's cleaning rules in its run). Alias champion only if it beats the "
    "n-gram baseline and the current champion on the same val text, else challenger. Never "
    "registers weights that failed val_bpc_within_bound.",
    owners=["team:model"],
    kinds={"mlflow"},
)
def registered_model(context: dg.AssetExecutionContext, lake: DataLake, mlflow: MlflowTracking) -> dg.MaterializeResult:
    layout = lake.for_asset(context)
    _refuse_failed_weights(context)
    model = latest_metadata(context.instance, trained_model.key) or {}
    run_id, val_bpc, weights_sha = model["mlflow_run_id"], float(model["val_bpc"]), model["weights_sha256"]
    baseline = layout.read_ngram_result()
    shards_tag = INPUT_VERSION_TAG + token_shards.key.to_user_string()  # made from the same shards?
    same_shards = (latest_tags(context.instance, trained_model.key).get(shards_tag)
                   == latest_tags(context.instance, ngram_baseline.key).get(shards_tag))
    val_texts = _val_texts(layout)
    val_text_sha = sha256_json(val_texts)[:16]
    lineage = {k: latest_data_version(context.instance, a.key) for k, a in _INPUTS.items()}
    rules = layout.read_corpus_lineage()
    lineage["rules_hash"] = str(rules.get("rules_sha256", ""))[:16]
    tags = {**lineage, "val_text_sha256": val_text_sha, WEIGHTS_SHA_TAG: weights_sha}

    experiment_id = mlflow.setup()
    name = mlflow.registered_model
    run_artifacts.log_training_run(history=layout.read_model_history(), tags=lineage,
                                   tokenizer_path=layout.tokenizer_file(), run_id=run_id, log_metrics=False)
    runs.client().log_dict(run_id, {"rules_sha256": rules.get("rules_sha256"), "rules": rules.get("rules")},
                           f"{run_artifacts.RULES_ARTIFACT_DIR}/rules_used_by_the_corpus.json")
    version = _existing_version(name, weights_sha)
    if version is None:
        version = packaging.log_and_register_model(
            layout.model_weights_file(), layout.model_config_file(), layout.tokenizer_file(), registered_name=name,
            val_bpc=val_bpc, tags=tags, run_id=run_id)
    version_number = str(version.version)
    before = registry.version_by_alias(name, registry.CHAMPION)
    rescored = _rescored_champion(before, val_texts, val_text_sha, name, context.log)
    if rescored is not None:
        context.log.info(f"champion v{before.version} re-scored on the current val text: {rescored:.4f} bits/char")
        runs.log_metrics_final(run_id, {"champion_val_bpc_rescored": rescored})
    bar = float(baseline["val_bpc"]) if same_shards else None
    alias = registry.promote(name, version_number, val_bpc, champion_val_bpc=rescored, baseline_bpc=bar)
    runs.log_metrics_final(run_id, {"ngram_val_bpc": baseline["val_bpc"]})
    previous = {}
    if before is not None and str(before.version) != version_number:
        previous = {"previous_champion_version": str(before.version),
                    "previous_champion_val_bpc": registry.version_val_bpc(before),
                    "previous_champion_val_bpc_on_this_val": rescored}
    record = {"version": version_number, "alias": alias, "val_bpc": val_bpc, "weights_sha256": weights_sha}
    atomic.write_json(layout.registration_file(), record)
    png = run_artifacts.logged_loss_curve(run_id)
    plot_md = f"![loss curve](data:image/png;base64,{base64.b64encode(png).decode()})" if png else "(no plot)"
    return dg.MaterializeResult(
        metadata={
            "model_version": f"{name} v{version_number} ({alias})",
            "registered_version": version_number,
            "alias": alias,
            "val_bpc": val_bpc,
            "ngram_val_bpc": round(float(baseline["val_bpc"]), 4),
            "ngram_margin_bpc": round(float(baseline["val_bpc"]) - val_bpc, 4),  # > 0: beats counting
            "ngram_comparable": same_shards,
            **{k: v for k, v in previous.items() if v is not None},
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(run_id, experiment_id)),
            "mlflow_run_id": run_id,
            "loss_curve": dg.MetadataValue.md(plot_md),
            **layout.files_metadata("registered_model"),
        },
        data_version=dg.DataVersion(short(sha256_json(record))),
    )

