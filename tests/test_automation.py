"""Declarative automation (pipelines/automation.py), tick by tick.

Uses Dagster's public test entry point, ``dg.evaluate_automation_conditions``, on an
ephemeral instance: each call is one tick of the automation sensor (the cursor carries
what the previous tick saw). Materializations are reported with the data version they
would have; a run in progress is made real by evaluating from inside an asset's body.
"""

from __future__ import annotations

import datetime
import warnings

import dagster as dg

from pipelines.automation import SENSOR_NAME, with_conditions

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
DATA_VERSION = "dagster/data_version"
T0 = datetime.datetime(2026, 1, 5, 12, 1, tzinfo=datetime.timezone.utc)


class Toy:
    """The chain a -> b -> c with our conditions, and an ephemeral instance to tick against."""

    def __init__(self, code: dict[str, str] | None = None, b_body=None):
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None
        self.b_body = b_body
        self.defs = self.build(code or {})

    def build(self, code: dict[str, str]) -> dg.Definitions:
        toy = self

        @dg.asset(code_version=code.get("a", "1"))
        def a():
            return dg.MaterializeResult(data_version=dg.DataVersion("a1"))

        @dg.asset(deps=[a], code_version=code.get("b", "1"))
        def b(context):
            if toy.b_body is not None:
                toy.b_body(context)
            return dg.MaterializeResult(data_version=dg.DataVersion("b1"))

        @dg.asset(deps=[b], code_version=code.get("c", "1"))
        def c():
            return dg.MaterializeResult(data_version=dg.DataVersion("c1"))

        return dg.Definitions(assets=with_conditions([a, b, c]))

    def tick(self, defs: dg.Definitions | None = None, keep_cursor: bool = True) -> list[str]:
        """One evaluation; the names of the assets it requests."""
        result = dg.evaluate_automation_conditions(defs=defs or self.defs, instance=self.instance,
                                                   cursor=self.cursor)
        if keep_cursor:
            self.cursor = result.cursor
        return requested(result)

    def settled(self, defs: dg.Definitions | None = None) -> list[str]:
        """The tick after next: the next one requests nothing, as an asset was just updated."""
        assert self.tick(defs) == []
        return self.tick(defs)

    def made(self, name: str, version: str) -> None:
        """``name`` was materialized with this data version (as a run would report it)."""
        self.instance.report_runless_asset_event(dg.AssetMaterialization(name, tags={DATA_VERSION: version}))

    def build_all(self) -> None:
        """Materialized in order, one tick each: the steady state every test starts from."""
        for name, then in (("a", ["b"]), ("b", ["c"]), ("c", [])):
            if name == "a":
                assert self.tick() == ["a"]
            self.made(name, "1")
            assert self.settled() == then


def requested(result) -> list[str]:
    """The assets (and asset checks, as ``asset:check``) this tick requests."""
    return sorted(r.key.to_user_string() for r in result.results if r.true_subset.size)


def test_first_tick_requests_the_missing_root_then_each_level_once_built():
    toy = Toy()
    assert toy.tick() == ["a"]  # b and c wait: a is requested this tick
    toy.made("a", "1")
    assert toy.tick() == []  # a was just updated: its run gets a tick to finish
    assert toy.tick() == ["b"]
    toy.made("b", "1")
    assert toy.settled() == ["c"]
    toy.made("c", "1")
    assert toy.settled() == []
    assert toy.tick() == []


def test_an_unchanged_data_version_requests_nothing_downstream():
    toy = Toy()
    toy.build_all()
    toy.made("a", "1")  # re-materialized, same content
    assert toy.settled() == []
    assert toy.tick() == []


def test_a_changed_data_version_requests_the_asset_below_and_stops_where_content_stays():
    toy = Toy()
    toy.build_all()
    toy.made("a", "2")
    assert toy.settled() == ["b"]  # c is not an input of a: it waits for b
    toy.made("b", "1")  # b re-ran and made the same content
    assert toy.settled() == []  # so c does not run
    toy.made("a", "3")
    assert toy.settled() == ["b"]
    toy.made("b", "2")
    assert toy.settled() == ["c"]
    toy.made("c", "2")
    assert toy.settled() == []


def test_a_code_version_change_requests_the_asset():
    toy = Toy()
    toy.build_all()
    assert toy.tick(toy.build({"b": "2"})) == ["b"]  # a reload with b's new code
    toy.made("b", "1")
    assert toy.settled(toy.build({"b": "2"})) == []


def test_changes_at_two_levels_run_upstream_first_and_each_asset_once():
    toy = Toy()
    toy.build_all()
    new_code = toy.build({"a": "2", "c": "2"})
    assert toy.tick(new_code) == ["a"]  # c's code changed too, but a is above it
    toy.made("a", "2")
    assert toy.settled(new_code) == ["b"]  # c still waits: b's input changed
    toy.made("b", "2")
    assert toy.settled(new_code) == ["c"]  # once, for its code and its input
    toy.made("c", "2")
    assert toy.settled(new_code) == []


def test_nothing_is_requested_while_an_asset_is_in_progress():
    during = {}

    def evaluate_while_running(context):  # runs inside b's run: b is in progress
        during["requested"] = toy.tick(keep_cursor=False)

    toy = Toy(b_body=evaluate_while_running)
    toy.build_all()
    toy.made("a", "2")  # b and c both have a reason to run
    assert dg.materialize([toy.defs.resolve_assets_def("b")], instance=toy.instance).success
    assert during["requested"] == []  # not c (its input is running), not b (already running)


def test_nothing_is_requested_below_a_missing_input_and_a_failed_one_is_not_retried():
    def fail(context):
        raise RuntimeError("b is broken")

    toy = Toy(b_body=fail)
    assert toy.tick() == ["a"]
    toy.made("a", "1")
    assert toy.settled() == ["b"]
    assert not dg.materialize([toy.defs.resolve_assets_def("b")], instance=toy.instance,
                              raise_on_error=False).success
    assert toy.tick() == []  # b missing after a failed run: not retried; c: its input is missing
    assert toy.tick() == []
    fixed = toy.build({"b": "2"})  # a fix (a new code version) is a reason to try again
    assert toy.tick(fixed) == ["b"]


# ------------------------------------------------------------------ the real definitions

def test_every_asset_is_automated_and_the_sensor_is_on_by_default():
    from pipelines.definitions import defs

    repo = defs.get_repository_def()
    assert [s.name for s in repo.sensor_defs] == [SENSOR_NAME]  # the custom sensor is gone
    sensor = repo.get_sensor_def(SENSOR_NAME)
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert 5 <= sensor.minimum_interval_seconds <= 30
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert set(specs) == {"lexicap_vtt", "raw_subtitles", "cleaned_corpus", "bpe_vocab", "token_shards",
                          "ngram_baseline", "trained_model", "registered_model", "evaluation_samples"}
    labels = {name: s.automation_condition.get_label() for name, s in specs.items()}
    assert labels.pop("lexicap_vtt").startswith("observe")
    assert set(labels.values()) == {"lexgpt: missing, or its code or an input changed"}


def test_the_source_is_observed_first_then_on_each_cron_tick(lexgpt_home):
    from pipelines.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    state = {"cursor": None}
    target = defs.get_repository_def().get_sensor_def(SENSOR_NAME).asset_selection  # what the sensor sees

    def tick(at: datetime.datetime) -> list[str]:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=state["cursor"],
                                                   evaluation_time=at, asset_selection=target)
        state["cursor"] = result.cursor
        return requested(result)

    def observed(version: str) -> None:
        instance.report_runless_asset_event(dg.AssetObservation("lexicap_vtt", tags={DATA_VERSION: version}))

    assert tick(T0) == ["lexicap_vtt"]  # never observed: nothing can be built before it is
    assert tick(T0 + datetime.timedelta(seconds=10)) == []
    observed("v1")
    assert tick(T0 + datetime.timedelta(seconds=20)) == ["raw_subtitles"]
    # Each level as its run would report it. The baseline and the model both need only the
    # shards and the vocab, so one run builds the two (the check that compares them waits
    # for both inside it); registration needs both.
    levels = [["raw_subtitles"], ["cleaned_corpus"], ["bpe_vocab"], ["token_shards"],
              ["ngram_baseline", "trained_model", "trained_model:beats_ngram_baseline"],
              ["registered_model"], ["evaluation_samples"], []]
    for i, level in enumerate(levels[:-1]):
        for name in level:
            if ":" not in name:
                instance.report_runless_asset_event(dg.AssetMaterialization(name, tags={DATA_VERSION: "1"}))
        assert tick(T0 + datetime.timedelta(seconds=30 + 2 * i)) == [], level  # its run finishes
        assert tick(T0 + datetime.timedelta(seconds=31 + 2 * i)) == levels[i + 1], level
    # The next cron tick (every 5 minutes) observes the folder again; same files, no run.
    assert tick(T0 + datetime.timedelta(minutes=4, seconds=30)) == ["lexicap_vtt"]
    observed("v1")
    assert tick(T0 + datetime.timedelta(minutes=4, seconds=40)) == []
    # A new episode: the next observation has a new version, and raw_subtitles runs.
    assert tick(T0 + datetime.timedelta(minutes=9, seconds=30)) == ["lexicap_vtt"]
    observed("v2")
    assert tick(T0 + datetime.timedelta(minutes=9, seconds=40)) == ["raw_subtitles"]  # an observation needs no settling

