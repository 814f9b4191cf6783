"""The count-based baseline (a Kneser-Ney token n-gram) and the check that the GPT beats it.

The model's asset is named by key, not imported, so ``pipelines.assets.registered_model`` may
import this module (the gate needs the baseline) without an import cycle.
"""

import dagster as dg

from lexgpt.evaluation import ngram
from lexgpt.infra import atomic
from lexgpt.infra.hashing import sha256_file, short
from pipelines.assets.bpe_vocab import bpe_vocab
from pipelines.assets.shared import MODEL_GROUP
from pipelines.assets.token_shards import token_shards
from pipelines.automation import with_its_asset
from pipelines.lake import (
    CONFIG_HASH_KEY,
    config_hash,
    latest_data_version,
    latest_metadata,
    latest_tags,
    write_lineage,
)
from pipelines.resources import DataLake
from pipelines.run_defaults import defaults_from_file
from pipelines.versioning import code_version

TRAINED_MODEL = dg.AssetKey("trained_model")
# Dagster tags every materialization with the data versions of the inputs it was made from.
_SHARDS_INPUT_TAG = f"dagster/input_data_version/{token_shards.key.to_user_string()}"


@defaults_from_file("ngram_baseline")  # LEXGPT_CONFIG, see pipelines/run_defaults.py
class NgramConfig(dg.Config):
    order: int = 5  # n of the n-gram: the longest context is order-1 tokens


@dg.asset(
    group_name=MODEL_GROUP,  # shown next to the model it is the bar for
    deps=[token_shards, bpe_vocab],
    code_version=code_version("lexgpt.evaluation.ngram", "lexgpt.data.shards", "pipelines.assets.ngram_baseline"),
    description="Interpolated modified Kneser-Ney token n-gram (order 5) fitted on the train "
    "shard and scored on every val token: the bits/char a neural model must beat.",
    owners=["team:model"],
    kinds={"numpy"},
)
def ngram_baseline(context: dg.AssetExecutionContext, config: NgramConfig, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.for_asset(context)
    token_chars = layout.load_tokenizer().token_char_counts()
    result = ngram.baseline_from_shards(layout.shards_dir(), token_chars, order=config.order)
    # Timings stay out of the file, so equal inputs give equal bytes (and data version).
    record = {k: v for k, v in result.to_dict().items() if not k.endswith("_seconds")}
    out = layout.ngram_result_file()
    atomic.write_json(out, record)
    shards_version = latest_data_version(context.instance, token_shards.key)
    write_lineage(out.parent, shards_version=shards_version,
                  vocab_version=latest_data_version(context.instance, bpe_vocab.key), config=config.model_dump())
    context.log.info(f"order-{result.order} Kneser-Ney: {result.val_bpc:.4f} bits/char on {result.val_tokens:,} "
                     f"val tokens (fit {result.fit_seconds:.1f} s, score {result.score_seconds:.1f} s)")
    return dg.MaterializeResult(
        metadata={
            "val_bpc": round(result.val_bpc, 4),
            "val_loss": round(result.val_loss, 4),
            "order": result.order,
            "val_tokens": result.val_tokens,
            "val_chars": result.val_chars,
            "train_tokens": result.train_tokens,
            "fit_seconds": round(result.fit_seconds, 2),
            "score_seconds": round(result.score_seconds, 2),
            "path": dg.MetadataValue.path(str(out)),
            CONFIG_HASH_KEY: config_hash(config.model_dump()),
        },
        data_version=dg.DataVersion(short(sha256_file(out))),
    )


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> tuple[dict, dict] | None:
    """(metadata values, tags) of the asset's latest materialization, or None if it has none."""
    metadata = latest_metadata(instance, key)
    return None if metadata is None else (metadata, latest_tags(instance, key))


@dg.asset_check(
    asset=TRAINED_MODEL,
    name="beats_ngram_baseline",
    additional_deps=[ngram_baseline],  # in a run with both, the check waits for the baseline
    automation_condition=with_its_asset(TRAINED_MODEL),  # see pipelines/automation.py
    blocking=False,
    description="The model's val bits/char is below the Kneser-Ney n-gram baseline's on the same "
    "shards (a warning: a model that loses to counting has learnt little).",
)
def beats_ngram_baseline(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    model, baseline = _latest(context.instance, TRAINED_MODEL), _latest(context.instance, ngram_baseline.key)
    warn = dg.AssetCheckSeverity.WARN
    if model is None or baseline is None or "val_bpc" not in model[0] or "val_bpc" not in baseline[0]:
        missing = "trained_model" if model is None or "val_bpc" not in model[0] else "ngram_baseline"
        return dg.AssetCheckResult(passed=False, severity=warn,
                                   description=f"no val_bpc from {missing} yet: materialize it to compare")
    model_bpc, baseline_bpc = float(model[0]["val_bpc"]), float(baseline[0]["val_bpc"])
    shards = model[1].get(_SHARDS_INPUT_TAG), baseline[1].get(_SHARDS_INPUT_TAG)
    same_shards = shards[0] == shards[1]
    metadata = {
        "model_val_bpc": model_bpc,
        "ngram_val_bpc": baseline_bpc,
        "ngram_order": baseline[0].get("order"),
        "margin_bpc": round(baseline_bpc - model_bpc, 4),  # > 0: the model wins by this much
        "model_shards_version": str(shards[0]),
        "ngram_shards_version": str(shards[1]),
    }
    if not same_shards:  # different val data: the numbers are not comparable
        return dg.AssetCheckResult(passed=False, severity=warn, metadata=metadata,
                                   description="model and baseline were scored on different token shards: "
                                   "re-materialize the stale one")
    return dg.AssetCheckResult(passed=model_bpc < baseline_bpc, severity=warn, metadata=metadata)
