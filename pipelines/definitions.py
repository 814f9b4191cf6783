"""The Dagster definitions: eight assets and the VTT source in three groups, their checks,
resources, and the automation that keeps them fresh (:mod:`pipelines.automation`).

Loaded by ``dagster dev`` (see ``workspace.yaml``) and by the ``lexgpt`` command. Importing
this module has no side effects: ``lexgpt ui`` and the ``lexgpt`` command set
``DAGSTER_HOME`` (pipelines.staleness.ensure_dagster_home) before Dagster loads it.
"""

from __future__ import annotations

import dagster as dg

from pipelines import automation
from pipelines.assets import (
    bpe_vocab,
    cleaned_corpus,
    evaluation_samples,
    lexicap_vtt,
    ngram_baseline,
    raw_subtitles,
    registered_model,
    token_shards,
    trained_model,
)
from pipelines.resources import DataLake, LexicapSource, MlflowTracking, TrainingLauncher

# Every materializable asset gets the automation condition; the source brings its own.
ASSETS = automation.with_conditions([
    lexicap_vtt.lexicap_vtt,
    raw_subtitles.raw_subtitles,
    cleaned_corpus.cleaned_corpus,
    bpe_vocab.bpe_vocab,
    token_shards.token_shards,
    ngram_baseline.ngram_baseline,  # before the model: a refresh walks in this order where the graph allows
    trained_model.trained_model,
    registered_model.registered_model,
    evaluation_samples.evaluation_samples,
])

# Standalone checks run with their asset (in refresh's runs and in automation's).
CHECKS = [
    cleaned_corpus.corpus_matches_schema,
    token_shards.val_shard_decodes_to_corpus,
    token_shards.token_ids_below_vocab_size,
    trained_model.val_bpc_within_bound,
    ngram_baseline.beats_ngram_baseline,
]

SOURCE_ASSET = lexicap_vtt.lexicap_vtt.key.to_user_string()

RESOURCES = {
    "source": LexicapSource(),
    "lake": DataLake(),
    "lake_reader": DataLake(read_only=True),  # for the checks: reads need no writer lock
    "mlflow": MlflowTracking(),
    # How trained_model launches training: swap these two for other engines (README,
    # "Training on more GPUs"); the training code stays the same.
    "trainer": TrainingLauncher.from_env(),
    # After a stop, torchrun gives its ranks 30 s before it kills them; the step waits past
    # that, so the writer lock is released only once no rank is left (Dagster's default: 20 s).
    "pipes": dg.PipesSubprocessClient(termination_timeout_seconds=60),
}

all_assets_job = dg.define_asset_job("all_assets", selection=dg.AssetSelection.all())

defs = dg.Definitions(
    assets=ASSETS,
    # One process per run: a run that builds two siblings (the baseline and the model)
    # holds the home's writer lock once, in its one process, and runs them one after the other.
    executor=dg.in_process_executor,
    asset_checks=CHECKS,
    jobs=[all_assets_job],
    resources=RESOURCES,
    sensors=[automation.automation_sensor(sources=[lexicap_vtt.lexicap_vtt.key])],
)
