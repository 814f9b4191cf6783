"""New data arrives: notice changed VTT files and refresh what they make stale.

Each tick (1) fingerprints the source folder and, if it differs from the last observed
version of ``lexicap_vtt``, records an observation with the new version (so
``raw_subtitles`` turns stale, in the UI and for ``lexgpt status``), and (2) when none of
its runs is in flight, requests a run of the next level of stale or missing assets — the
ones whose inputs are all fresh — following the same rule as ``lexgpt refresh``, one level
per tick until nothing is stale.
"""


import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from lexgpt import lexicap
from lexgpt.hashing import short
from pipelines.freshness import _resolver
from pipelines.lake import latest_data_version
from pipelines.resources import LexicapSource

SENSOR_TAG = "lexgpt/sensor"


def next_level(instance: dg.DagsterInstance, graph) -> list[dg.AssetKey]:
    """Stale or missing assets with nothing stale or missing upstream: what a refresh runs next.

    Dagster's staleness is one level deep, so an asset whose parents are fresh may still sit
    below a stale one (a missing model under stale subtitles); it waits for a later tick.
    """
    from dagster._core.definitions.data_version import StaleStatus

    resolver = _resolver(instance, graph)
    status = {k: resolver.get_status(k) for k in graph.materializable_asset_keys}
    ready, pending = [], set()  # pending: not fresh, or below something that is not
    for key in graph.toposorted_asset_keys:
        upstream_pending = any(p in pending for p in graph.get(key).parent_keys)
        if status.get(key, StaleStatus.FRESH) != StaleStatus.FRESH:
            if not upstream_pending:
                ready.append(key)
            pending.add(key)
        elif upstream_pending:
            pending.add(key)
    return ready


def build_sensor(source_key: dg.AssetKey, job_name: str) -> dg.SensorDefinition:
    @dg.sensor(
        name="lexicap_new_data",
        job_name=job_name,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Notices new or changed VTT files and refreshes, level by level, only "
        "what went stale (the same rule as `lexgpt refresh`).",
    )
    def lexicap_new_data(context: dg.SensorEvaluationContext, source: LexicapSource):
        instance = context.instance
        fingerprint = short(lexicap.source_fingerprint(source.resolve(), source.variant))
        current = latest_data_version(instance, source_key, is_source=True)
        if current != fingerprint:
            observation = dg.AssetObservation(
                asset_key=source_key,
                tags={DATA_VERSION_TAG: fingerprint},
                metadata={"detected_by": "lexicap_new_data sensor"},
            )
            return dg.SensorResult(asset_events=[observation], cursor=fingerprint)
        in_flight = instance.get_runs(
            filters=dg.RunsFilter(
                tags={SENSOR_TAG: "1"},
                statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
                          dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.NOT_STARTED],
            ),
            limit=1,
        )
        if in_flight:
            return dg.SkipReason("a refresh run is still in flight")
        graph = context.repository_def.asset_graph
        ready = next_level(instance, graph)
        if not ready:
            return dg.SkipReason("everything is fresh")
        names = ",".join(k.to_user_string() for k in ready)
        return dg.RunRequest(
            run_key=f"{fingerprint}:{names}:{context.cursor or ''}:{_latest_storage_id(instance, ready)}",
            asset_selection=ready,
            tags={SENSOR_TAG: "1"},
        )

    return lexicap_new_data


def _latest_storage_id(instance: dg.DagsterInstance, keys: list[dg.AssetKey]) -> int:
    ids = []
    for key in keys:
        records = instance.fetch_materializations(key, limit=1).records  # newest first
        ids.append(records[0].storage_id if records else 0)
    return max(ids, default=0)
