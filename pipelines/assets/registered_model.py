"""The registered model: ``trained_model``'s weights as a version of ``lexgpt`` in MLflow,
with the run's files and charts, and the champion gate.

Registration is apart from training so that a change to the MLflow logging, a chart or the
gate re-runs this asset (seconds), never the training. The same weights are registered once:
a re-run finds the version carrying their hash and only re-applies the gate.

The gate (:func:`lexgpt.tracking.registry.promote`): a version becomes ``champion`` only if it beats
the n-gram baseline on the same shards **and** the current champion, both at 4 decimals;
otherwise ``challenger``. The champion is re-scored first when its score was measured on
other val text, by other scoring code or at another precision (:data:`SCORE_TAGS`). Weights
are registered only if ``val_bpc_within_bound`` passed on them, they are the bytes
``trained_model`` recorded, and they were trained and scored on the current shards and code.
"""

import base64

import dagster as dg

from lexgpt.infra import atomic
from lexgpt.infra.hashing import sha256_file, sha256_json, short
from lexgpt.tracking import packaging, registry, run_artifacts, runs
from pipelines.assets.bpe_vocab import bpe_vocab
from pipelines.assets.cleaned_corpus import cleaned_corpus
from pipelines.assets.ngram_baseline import ngram_baseline
from pipelines.assets.shared import MODEL_GROUP
from pipelines.assets.token_shards import token_shards
from pipelines.assets.trained_model import SCORING_CODE_VERSION, trained_model, val_bpc_within_bound
from pipelines.lake import (
    INPUT_VERSION_TAG,
    blocking_check_refusal,
    latest_data_version,
    latest_metadata,
    latest_tags,
)
from pipelines.lake_layout import LakeLayout
from pipelines.resources import DataLake, MlflowTracking
from pipelines.versioning import code_version, modules_of

WEIGHTS_SHA_TAG = "weights_sha256"
SCORE_TAGS = ("val_text_sha256", "scoring_version", "val_dtype")  # what a version's val_bpc was measured with
_SHARDS_TAG = INPUT_VERSION_TAG + token_shards.key.to_user_string()  # the shards an asset was made from
_INPUTS = {"corpus_version": cleaned_corpus, "vocab_version": bpe_vocab, "shards_version": token_shards,
           "weights_version": trained_model}


class NotRegistered(RuntimeError):
    """trained_model's weights, as the lake and Dagster hold them now, cannot be registered."""


class BlockingCheckFailed(NotRegistered):
    """The weights failed a blocking check (or it never ran on them): they are not registered."""


def _refuse_unchecked_weights(context: dg.AssetExecutionContext) -> None:
    """Stop unless ``val_bpc_within_bound`` passed on trained_model's latest weights: a failure
    (in the training's run or when the check ran again alone) and a check that never ran on
    them both refuse, so neither a run of this asset alone (UI, automation) nor one with the
    check deselected registers what the check has not accepted."""
    why = blocking_check_refusal(context.instance, val_bpc_within_bound.check_key)
    if why is not None:
        raise BlockingCheckFailed(f"trained_model {why}; not registered")


def _refuse_stale_weights(context: dg.AssetExecutionContext, layout: LakeLayout, model: dict) -> None:
    """Stop unless the lake's weights are the bytes trained_model recorded, trained on the
    lake's current token shards and scored by the current scoring code: otherwise their
    val_bpc and the tags they would get describe something else."""
    redo = "materialize trained_model first; not registered"
    if sha256_file(layout.model_weights_file()) != model.get("weights_sha256"):
        raise NotRegistered(f"{layout.model_weights_file()} is not the file trained_model recorded (written by "
                            f"a run that did not finish?): {redo}")
    if latest_tags(context.instance, trained_model.key).get(_SHARDS_TAG) != latest_data_version(
            context.instance, token_shards.key):
        raise NotRegistered(f"trained_model was trained on other token shards than the lake's: {redo}")
    if model.get("scoring_version") != SCORING_CODE_VERSION:
        raise NotRegistered(f"trained_model's val_bpc was measured by other scoring code than today's "
                            f"({', '.join(modules_of(SCORING_CODE_VERSION))}): {redo}")


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


def _rescored_champion(champion, score: dict[str, str], val_texts: list[str], name: str, log) -> float | None:
    """The champion's bits/char measured as the new model's was (``score``: the val text,
    the scoring code, the precision), when its own score was measured otherwise: like with like."""
    if champion is None or all((champion.tags or {}).get(k) == v for k, v in score.items()):
        return None
    from lexgpt.evaluation.loss_eval import score_texts
    from lexgpt.training.device import autocast_for

    try:
        model, tokenizer = packaging.load_model_for_generation(f"models:/{name}/{champion.version}")
    except packaging.ModelRefused as err:  # e.g. registered before file hashes were recorded
        log.warning(f"champion v{champion.version} cannot be re-scored ({err}); compared by its own score")
        return None
    _, autocast = autocast_for(score["val_dtype"], next(model.parameters()).device)
    return score_texts(model, tokenizer, val_texts, autocast=autocast)["val_bpc"]


@dg.asset(
    group_name=MODEL_GROUP,
    deps=[trained_model, ngram_baseline, cleaned_corpus, token_shards, bpe_vocab],
    code_version=code_version(
        "lexgpt.tracking.runs", "lexgpt.tracking.run_artifacts", "lexgpt.tracking.plots", "lexgpt.tracking.packaging",
        "lexgpt.tracking.registry", "lexgpt.tracking.mlflow_model", "lexgpt.modeling.model_files",
        "lexgpt.modeling.model", "lexgpt.modeling.checkpoint", "lexgpt.tokenizer.bpe", "lexgpt.tokenizer.tokenizer_file",
        "lexgpt.data.shards", "lexgpt.training.device",
        "lexgpt.evaluation.loss_eval", "pipelines.lake", "pipelines.assets.registered_model",
    ),
    description="trained_model's weights registered as a version of `lexgpt` in MLflow (loss curve, "
    "tokenizer and the corpus's cleaning rules in its run). Alias champion only if it beats the "
    "n-gram baseline on the same shards and the current champion, scored alike, else challenger. "
    "Registers only weights that passed val_bpc_within_bound.",
    owners=["team:model"],
    kinds={"mlflow"},
)
def registered_model(context: dg.AssetExecutionContext, lake: DataLake, mlflow: MlflowTracking) -> dg.MaterializeResult:
    layout = lake.for_asset(context)
    _refuse_unchecked_weights(context)
    model = latest_metadata(context.instance, trained_model.key) or {}
    _refuse_stale_weights(context, layout, model)
    run_id, val_bpc, weights_sha = model["mlflow_run_id"], float(model["val_bpc"]), model["weights_sha256"]
    baseline = layout.read_ngram_result()
    same_shards = (latest_tags(context.instance, trained_model.key).get(_SHARDS_TAG)
                   == latest_tags(context.instance, ngram_baseline.key).get(_SHARDS_TAG))
    val_texts = _val_texts(layout)
    val_text_sha = sha256_json(val_texts)[:16]
    lineage = {k: latest_data_version(context.instance, a.key) for k, a in _INPUTS.items()}
    rules = layout.read_corpus_lineage()
    lineage["rules_hash"] = str(rules.get("rules_sha256", ""))[:16]
    score = dict(zip(SCORE_TAGS, (val_text_sha, model["scoring_version"], str(model.get("val_dtype", "float32")))))
    tags = {**lineage, **score, WEIGHTS_SHA_TAG: weights_sha}

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
    rescored = _rescored_champion(before, score, val_texts, name, context.log)
    if rescored is not None:
        context.log.info(f"champion v{before.version} re-scored as the new model was ({score}): "
                         f"{rescored:.4f} bits/char")
        runs.log_metrics_final(run_id, {"champion_val_bpc_rescored": rescored})
    if same_shards:
        alias = registry.promote(name, version_number, val_bpc, champion_val_bpc=rescored,
                                 baseline_bpc=float(baseline["val_bpc"]))
    else:  # no count-based bar on these shards: nothing shows that it beats counting
        context.log.warning("ngram_baseline was made from other token shards: materialize it, then "
                            "registered_model again; until then this version is not champion")
        alias = registry.hold_back(name, version_number)
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

