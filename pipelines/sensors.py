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
from pipelines.resources import LexicapSource

SENSOR_TAG = "lexgpt/sensor"


def next_level(instance: dg.DagsterInstance, graph) -> list[dg.AssetKey]:
    """Stale or missing assets whose parents are all fresh: what a refresh runs next."""
    from dagster._core.definitions.data_version import StaleStatus

    resolver = _resolver(instance, graph)
    status = {k: resolver.get_status(k) for k in graph.materializable_asset_keys}
    ready = []
    for key in graph.toposorted_asset_keys:
        if status.get(key, StaleStatus.FRESH) == StaleStatus.FRESH:
            continue
        parents = graph.get(key).parent_keys
        if all(status.get(p, StaleStatus.FRESH) == StaleStatus.FRESH for p in parents):
            ready.append(key)
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
        record = instance.get_latest_data_version_record(source_key, is_source=True)
        current = record.data_version.value if record and record.data_version else None
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
        event = instance.get_latest_materialization_event(key)
        ids.append(event.storage_id if event is not None else 0)
    return max(ids, default=0)
