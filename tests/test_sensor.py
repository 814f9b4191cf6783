"""The ``lexicap_new_data`` sensor: new VTT file -> observation -> a run of raw_subtitles only."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TINY_CONFIG, lexgpt_cli, write_episode

DATA_AND_TOKENS = ["raw_subtitles", "cleaned_corpus", "bpe_vocab", "token_shards"]


def _status(*args: str) -> dict[str, dict]:
    out = lexgpt_cli("status", "--json", *args).stdout
    return {s["name"]: s for s in json.loads(out[out.index("[") :])}


def _tick(sensor, instance, defs, cursor: str | None):
    """One evaluation, as the daemon runs it (with the definitions' resources)."""
    import dagster as dg

    with dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def(),
                                 resources=defs.resources, cursor=cursor,
                                 sensor_name=sensor.name) as context:
        result = sensor.evaluate_tick(context)
    # What the sensor daemon does with a tick's result: store its asset events.
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def test_new_vtt_file_observed_then_only_raw_subtitles_requested(lexgpt_home: Path, small_lexicap: Path,
                                                                 tmp_path: Path):
    import dagster as dg

    from pipelines.lake import DATA_VERSION_TAG

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    lexgpt_cli("refresh", "--only", *DATA_AND_TOKENS, "--config", str(config))
    before = _status("--config", str(config))
    assert all(before[a]["status"] == "fresh" for a in DATA_AND_TOKENS), before

    from pipelines.definitions import defs
    from pipelines.lake import latest_data_version
    from pipelines.sensors import SENSOR_TAG

    sensor = defs.get_repository_def().get_sensor_def("lexicap_new_data")
    source_key = dg.AssetKey("lexicap_vtt")
    with dg.DagsterInstance.get() as instance:
        old_version = latest_data_version(instance, source_key, is_source=True)
        assert old_version

        # Nothing new yet: no observation, no run for the fresh data and token stages.
        quiet = _tick(sensor, instance, defs, cursor=None)
        assert quiet.asset_events == []
        assert not any(dg.AssetKey(a) in (r.asset_selection or []) for r in quiet.run_requests
                       for a in DATA_AND_TOKENS), quiet.run_requests

        write_episode(small_lexicap, 7)  # a new episode arrives

        # First tick: an observation of the source with a new data version, no run yet.
        first = _tick(sensor, instance, defs, cursor=quiet.cursor)
        assert first.run_requests == []
        assert len(first.asset_events) == 1
        observation = first.asset_events[0]
        assert isinstance(observation, dg.AssetObservation)
        assert observation.asset_key == source_key
        new_version = observation.tags[DATA_VERSION_TAG]
        assert new_version != old_version
        assert latest_data_version(instance, source_key, is_source=True) == new_version

        # `lexgpt status` (another process, same instance) now calls raw_subtitles stale.
        after = _status("--config", str(config))
        assert after["raw_subtitles"]["status"] == "stale", after["raw_subtitles"]
        assert any("lexicap_vtt" in c for c in after["raw_subtitles"]["causes"]), after["raw_subtitles"]
        for name in DATA_AND_TOKENS[1:]:
            assert after[name]["status"] == "fresh", after[name]

        # Second tick: a run of exactly the first stale level, raw_subtitles; not the
        # missing model, whose inputs are about to change.
        second = _tick(sensor, instance, defs, cursor=first.cursor)
        assert second.asset_events == []
        assert len(second.run_requests) == 1, second
        request = second.run_requests[0]
        assert request.asset_selection == [dg.AssetKey("raw_subtitles")]
        assert request.tags.get(SENSOR_TAG) == "1"

        # The same tick again asks for the same run (same run key: the daemon dedupes it).
        again = _tick(sensor, instance, defs, cursor=second.cursor)
        assert [r.run_key for r in again.run_requests] == [request.run_key]

        # Once that run has happened, the next level: the corpus (it gained an episode).
        job = defs.resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(instance=instance, asset_selection=request.asset_selection,
                                      tags=request.tags).success
        third = _tick(sensor, instance, defs, cursor=again.cursor)
        assert [r.asset_selection for r in third.run_requests] == [[dg.AssetKey("cleaned_corpus")]]
        assert third.run_requests[0].run_key != request.run_key


def test_next_level_waits_for_stale_ancestors():
    """A missing asset below a stale one is not 'ready' even if its direct parents are fresh."""
    import dagster as dg

    from pipelines import sensors
    from pipelines.staleness import AssetNode, AssetState

    a, b, c, d = (dg.AssetKey(n) for n in "abcd")
    status = {"a": "stale", "b": "fresh", "c": "fresh", "d": "missing"}

    class Staleness:  # the chain a -> b -> c -> d with the statuses above
        nodes = [AssetNode(a, (), None, True), AssetNode(b, (a,), None, True),
                 AssetNode(c, (b,), None, True), AssetNode(d, (c,), None, True)]

        def states(self):
            return [AssetState(n.name, status[n.name]) for n in self.nodes]

    assert sensors.next_level(Staleness()) == [a]
    status["a"] = "fresh"
    assert sensors.next_level(Staleness()) == [d]
    status["b"] = "missing"
    assert sensors.next_level(Staleness()) == [b]
