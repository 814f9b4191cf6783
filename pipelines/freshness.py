"""Fresh, stale or missing: the rule behind ``lexgpt status``, ``lexgpt refresh`` and the sensor.

Dagster 1.13 computes staleness one level deep: after ``cleaned_corpus`` is rematerialized,
``bpe_vocab`` only *becomes* stale if the corpus's data version changed. So a refresh walks
the graph in topological order, re-resolving status after every execution, and runs an
asset only when it is stale or missing at the moment its turn comes. An unchanged output
(same content hash) stops the walk from re-running anything below it.

Run config is not part of Dagster's versions, so every configurable asset records the hash
of the config it ran with (``config_sha256`` metadata); a refresh asked to use another
config counts that as a cause of staleness.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import (
    CachingStaleStatusResolver,
    StaleCauseCategory,
    StaleStatus,
)
from dagster._core.definitions.temporal_context import TemporalContext
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._time import get_current_datetime

from lexgpt import paths
from lexgpt.hashing import sha256_json

CONFIG_HASH_KEY = "config_sha256"

_DAGSTER_YAML = """\
# Local Dagster instance for lexgpt: run history, asset versions and staleness live here.
telemetry:
  enabled: false
"""


def ensure_dagster_home() -> Path:
    """Use a persistent ``DAGSTER_HOME`` (``.dagster/`` in the repo unless set) and return it.

    Without it every Dagster process gets a temporary home and forgets the history that
    staleness is computed from.
    """
    home = paths.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def config_hash(config: Mapping[str, Any]) -> str:
    return sha256_json(dict(config))[:16]


@dataclass
class AssetState:
    name: str
    status: str  # "fresh" | "stale" | "missing"
    causes: list[str] = field(default_factory=list)


def _resolver(instance: dg.DagsterInstance, graph: AssetGraph) -> CachingStaleStatusResolver:
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)


def _explain(cause) -> str:
    """One readable line: "code version changed" or "input cleaned_corpus: has a new data version"."""
    dep = cause.dependency_asset_key.to_user_string() if cause.dependency else None
    if dep:
        return f"input {dep}: {cause.reason}"
    if cause.category == StaleCauseCategory.CODE:
        return "code version changed"
    return cause.reason


def _recorded_config_hash(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(CONFIG_HASH_KEY)
    return getattr(value, "value", value) if value is not None else None


def asset_states(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    config: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[AssetState]:
    """Status of every materializable asset, in topological order.

    ``config`` maps asset name -> the effective run config a refresh would use; when given,
    an asset whose recorded config hash differs counts as stale.
    """
    graph = defs.resolve_asset_graph()
    resolver = _resolver(instance, graph)
    states = []
    for key in graph.toposorted_asset_keys:
        if key not in graph.materializable_asset_keys:
            continue
        status = resolver.get_status(key)
        name = key.to_user_string()
        if status == StaleStatus.MISSING:
            states.append(AssetState(name, "missing", ["never materialized"]))
            continue
        causes = [_explain(c) for c in resolver.get_stale_causes(key)]
        if config and name in config:
            recorded = _recorded_config_hash(instance, key)
            if recorded is not None and recorded != config_hash(config[name]):
                causes.append("run config changed")
        states.append(AssetState(name, "stale" if causes else "fresh", causes))
    return states


def observe_sources(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """Re-read the versions of source assets (the VTT folder) so new data is noticed."""
    graph = defs.resolve_asset_graph()
    observable = [k for k in graph.observable_asset_keys if k not in graph.materializable_asset_keys]
    if not observable:
        return
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=observable,
                                    raise_on_error=False, run_config=_QUIET)
    if not result.success:
        names = ", ".join(k.to_user_string() for k in observable)
        raise RefreshError(names, _failure_message(result))


# Dagster's console logger would print every event (and a failure's whole traceback);
# the refresh prints its own one-line progress and the root cause instead.
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class RefreshReport:
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def refresh(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    run_config: Mapping[str, Mapping[str, Any]] | None = None,
    effective_config: Mapping[str, Mapping[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    only: set[str] | None = None,
) -> RefreshReport:
    """Materialize what is missing or stale, one asset at a time in topological order.

    ``run_config`` maps asset name -> config overrides passed to that asset's run;
    ``effective_config`` maps asset name -> the full config (defaults + overrides), used
    to notice config changes. ``only`` restricts the walk to these asset names.
    """
    run_config = run_config or {}
    observe_sources(defs, instance)
    report = RefreshReport()
    job = defs.resolve_implicit_global_asset_job_def()
    order = [s.name for s in asset_states(defs, instance)]
    for name in order:
        if only is not None and name not in only:
            continue
        state = next(s for s in asset_states(defs, instance, effective_config) if s.name == name)
        if state.status == "fresh":
            report.skipped.append(name)
            log(f"  fresh    {name}")
            continue
        log(f"  running  {name}  ({state.status}: {'; '.join(state.causes)})")
        config: dict[str, Any] = dict(_QUIET)
        if run_config.get(name):
            config["ops"] = {name: {"config": dict(run_config[name])}}
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey.from_user_string(name)],
            run_config=config,
            raise_on_error=False,
        )
        if not result.success:
            raise RefreshError(name, _failure_message(result))
        report.executed.append(name)
        log(f"  done     {name}  ({time.perf_counter() - started:.1f} s)")
    return report


class RefreshError(RuntimeError):
    def __init__(self, asset: str, message: str):
        super().__init__(f"{asset} failed: {message}")
        self.asset = asset


def _failure_message(result) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            while err.cause is not None and "dagster" in (err.cls_name or "").lower():
                err = err.cause
            message = err.message.strip()
            # "lexgpt.atomic.LakeWriteError: cannot write ..." -> "cannot write ..."
            if err.cls_name and message.split(":", 1)[0].endswith(err.cls_name) and err.cls_name.endswith("Error") \
                    and err.cls_name not in ("ValueError", "RuntimeError", "KeyError", "TypeError"):
                message = message.split(":", 1)[1].strip()
            return message
    return "run failed (see the Dagster UI for the log)"
