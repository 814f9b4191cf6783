"""New data arrives: notice changed VTT files and refresh what they make stale.

Each tick (1) fingerprints the source folder and, if it differs from the last observed
version of ``lexicap_vtt``, records an observation with the new version (so
``raw_subtitles`` turns stale, in the UI and for ``lexgpt status``), and (2) when none of
its runs is in flight, requests a run of the next level of stale or missing assets — the
ones with nothing stale or missing above them — following the same rule as
``lexgpt refresh``, one level per tick until nothing is stale.
"""

from __future__ import annotations

import dagster as dg

from pipelines.lake import DATA_VERSION_TAG, latest_data_version
from pipelines.resources import LexicapSource
from pipelines.staleness import Staleness

SENSOR_TAG = "lexgpt/sensor"


def next_level(staleness: Staleness) -> list[dg.AssetKey]:
    """Stale or missing assets with nothing stale or missing upstream: what a refresh runs next.

    Staleness is one level deep, so an asset whose parents are fresh may still sit below a
    stale one (a missing model under stale subtitles); it waits for a later tick.
    """
    status = {s.name: s.status for s in staleness.states()}
    ready, pending = [], set()  # pending: not fresh, or below something that is not
    for node in staleness.nodes:
        if not node.materializable:
            continue
        upstream_pending = any(p in pending for p in node.deps)
        if status[node.name] != "fresh":
            if not upstream_pending:
                ready.append(node.key)
            pending.add(node.key)
        elif upstream_pending:
            pending.add(node.key)
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
        fingerprint = source.data_version()
        current = latest_data_version(instance, source_key, is_source=True)
        if current != fingerprint:
            observation = dg.AssetObservation(
                asset_key=source_key,
                tags={DATA_VERSION_TAG: fingerprint},
                metadata={"detected_by": "lexicap_new_data sensor"},
            )
            return dg.SensorResult(asset_events=[observation], cursor=fingerprint)
        in_flight = instance.get_run_records(
            filters=dg.RunsFilter(
                tags={SENSOR_TAG: "1"},
                statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
                          dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.NOT_STARTED],
            ),
            limit=1,
        )
        if in_flight:
            return dg.SkipReason("a refresh run is still in flight")
        from pipelines.definitions import defs  # the definitions this sensor belongs to

        # New data, code or rules only: a run config is the user's choice, so a model trained
        # with `--config` is not retrained on defaults just because the sensor is on.
        ready = next_level(Staleness(defs, instance))
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
