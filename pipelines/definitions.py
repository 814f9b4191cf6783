"""The Dagster definitions: six assets in three groups, their checks, resources and sensor.

Loaded by ``dagster dev`` (see ``workspace.yaml``) and by the ``lexgpt`` command.
"""

from __future__ import annotations

import dagster as dg

from pipelines.assets import baseline, data, model, tokens
from pipelines.staleness import ensure_dagster_home
from pipelines.resources import DataLake, LexicapSource, MlflowTracking
from pipelines.sensors import build_sensor

ensure_dagster_home()

ASSETS = [
    data.lexicap_vtt,
    data.raw_subtitles,
    data.cleaned_corpus,
    tokens.bpe_vocab,
    tokens.token_shards,
    model.trained_model,
    model.evaluation_samples,
    baseline.ngram_baseline,
    baseline.beats_ngram_baseline,
]

SOURCE_ASSET = data.lexicap_vtt.key.to_user_string()

RESOURCES = {
    "source": LexicapSource(),
    "lake": DataLake(),
    "mlflow": MlflowTracking(),
}

all_assets_job = dg.define_asset_job("all_assets", selection=dg.AssetSelection.all())

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[all_assets_job],
    resources=RESOURCES,
    sensors=[build_sensor(data.lexicap_vtt.key, "all_assets")],
)
