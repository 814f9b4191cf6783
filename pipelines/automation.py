"""Declarative automation: what Dagster runs by itself while ``lexgpt ui`` is up.

Every materializable asset gets the same condition, :func:`fresh_condition`, built from
Dagster's public ``AutomationCondition`` operands and evaluated by the ``lexgpt_automation``
sensor (on by default, see ``pipelines/definitions.py``). An asset is requested when

- it is **missing** (never materialized) and its last run did not fail, or
- since it was last requested or updated ("handled"), its **code version changed** (a
  rules edit is one: ``cleaned_corpus``'s code version is the rules' hash) or **an input's
  data version changed** (a re-run that produced the same content does not count),

and only while

- none of its inputs is missing, no blocking check of its inputs failed on their latest
  materialization (weights that failed ``val_bpc_within_bound`` are never registered), and
- **no lexgpt asset is in progress, requested this tick or just updated** (since the
  previous tick): one asset per run, one run at a time, the most upstream one first (the
  evaluation goes in topological order). So an asset runs only once everything above it
  has settled, the way ``lexgpt refresh`` walks the graph, and automation's runs never
  contend with each other for the home's writer lock.

It is shaped like ``AutomationCondition.eager()`` (a trigger ``.since_last_handled()``, then
what blocks it) with three differences: ``missing()`` is a status, not eager's
``newly_missing()``, so what is already missing when automation starts is built too; the
trigger is an input's *data version* changing, not any update of it; and an asset waits
for the runs above it to finish instead of joining their run (eager requests the whole
chain at once, so it would re-run everything below an input before knowing whether its
content changed).

The check ``beats_ngram_baseline`` runs in each automation run of ``trained_model``
(:func:`with_its_asset`); the checks inside an asset's own op run with it anyway.

The VTT source ``lexicap_vtt`` is observed by :func:`observe_condition`: on the first
evaluation while it was never observed (``newly_missing`` is true on a first evaluation),
then after every tick of :data:`OBSERVE_CRON`.

First-tick semantics (Dagster's, read from its docs and source): ``code_version_changed``
and ``data_version_changed`` compare with the *previous* evaluation, so they are false on
the first one; the sensor's cursor lives in ``DAGSTER_HOME`` and survives restarts, so a
rules edit made while the UI was down is still seen on the next start. What went stale
before automation first ran (or before its conditions last changed) is not; ``lexgpt
refresh`` catches up on it. Run config changes and files edited behind Dagster's back
(``lexgpt status`` reports both) do not trigger runs either.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import dagster as dg

AC = dg.AutomationCondition
SENSOR_NAME = "lexgpt_automation"
OBSERVE_CRON = "*/5 * * * *"  # how often the source folder is hashed again


def _busy(keys: Sequence[dg.AssetKey]) -> dg.AutomationCondition:
    """Some asset of ``keys`` is in a run that has not made it yet, is requested this tick, or
    was updated since the previous tick.

    Assets are evaluated in topological order, so an upstream request is already known here.
    "Updated since the previous tick" gives the run that just made it a tick to finish: an
    asset stops being in progress when it is materialized, a moment before its run releases
    the home's writer lock, which the next run needs.
    """
    busy = (AC.in_progress() | AC.will_be_requested() | AC.newly_updated()).with_label(
        "running, requested or just updated")
    return _any(AC.asset_matches(key, busy) for key in keys).with_label(
        "a lexgpt asset is running, requested or just updated")


def _any(conditions) -> dg.AutomationCondition:
    return functools.reduce(operator.or_, conditions)


def fresh_condition(keys: Sequence[dg.AssetKey]) -> dg.AutomationCondition:
    """The condition of every materializable asset; ``keys``: all of them (see module doc)."""
    missing = (AC.missing() & ~AC.execution_failed()).with_label("missing (and its last run did not fail)")
    changed = (
        AC.code_version_changed().with_label("code version changed")
        | AC.any_deps_match(AC.data_version_changed()).with_label("an input has a new data version")
    ).since_last_handled().with_label("code or an input changed since it last ran or was requested")
    return (
        (missing | changed)
        & ~AC.any_deps_missing()
        & ~AC.any_deps_match(AC.any_checks_match(AC.check_failed(), blocking_only=True)).with_label(
            "a blocking check of an input failed")
        & ~_busy(keys)
    ).with_label("lexgpt: missing, or its code or an input changed")


def observe_condition(cron: str = OBSERVE_CRON) -> dg.AutomationCondition:
    """The source's condition: observe it when first seen missing, then on every cron tick."""
    return (
        AC.newly_missing() | AC.cron_tick_passed(cron).with_label(f"cron tick ({cron})")
    ).with_label("observe: never observed, or a cron tick passed")


def with_its_asset(asset: dg.AssetKey) -> dg.AutomationCondition:
    """For an asset check defined apart from its asset: run it in automation's runs of the asset.

    Such a check rides along by itself only with an asset that has no checks of its own
    (``trained_model`` has one inside it, so Dagster then runs just that one).
    """
    return AC.asset_matches(asset, AC.will_be_requested()).with_label(
        f"{asset.to_user_string()} is requested: run with it")


def with_conditions(assets: Sequence) -> list:
    """``assets`` with :func:`fresh_condition` on every materializable asset.

    Source assets and asset checks pass through unchanged (a check with no condition of
    its own runs with its asset).
    """
    materializable = [a for a in assets  # an asset check alone is an AssetsDefinition with no keys
                      if isinstance(a, dg.AssetsDefinition) and a.keys and a.is_materializable]
    keys = sorted((k for a in materializable for k in a.keys), key=lambda k: k.to_user_string())
    condition = fresh_condition(keys)
    mapped = iter(dg.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=condition),
                                     materializable))
    return [next(mapped) if any(a is m for m in materializable) else a for a in assets]


def automation_sensor(sources: Sequence[dg.AssetKey],
                      minimum_interval_seconds: int = 10) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the condition of every asset and of ``sources`` (``AssetSelection.all()``
    leaves source assets out); RUNNING by default, so ``lexgpt ui`` automates at once."""
    return dg.AutomationConditionSensorDefinition(
        SENSOR_NAME,
        target=dg.AssetSelection.all() | dg.AssetSelection.assets(*sources),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Keeps every asset fresh: builds what is missing, re-runs an asset when its "
        "code (or the cleaning rules) changed or an input's data version changed, one asset at a "
        "time; observes the VTT folder every 5 minutes. Stop it here to turn automation off.",
    )
