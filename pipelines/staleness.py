"""Fresh, stale or missing: the rule behind ``lexgpt status`` and ``lexgpt refresh``.

An asset is *stale* when what it was made from differs from what it would be made from
now, or when its files differ from what was recorded. Every cause is read from the
asset's latest materialization, through Dagster's public API:

- ``code version changed``: the ``dagster/code_version`` tag vs the definition's;
- ``input X: has a new data version``: the ``dagster/input_data_version/X`` tag vs X's
  latest data version (for the VTT source: the version of the folder *now*, so new files
  show before anything has observed them);
- ``run config changed``: the ``config_sha256`` metadata vs the config a refresh would use;
- ``file on disk differs from the recorded version``: the ``files_sha256`` metadata vs a
  hash of the asset's folder now (a process killed between writing and recording);
- ``check X failed``: a blocking check of the asset failed on its latest materialization
  (a refresh retries the asset; nothing below it runs on what the check rejected).

Staleness is one level deep: after ``cleaned_corpus`` re-runs, ``bpe_vocab`` becomes stale
only if the corpus's data version changed. So :func:`refresh` walks the graph in
topological order and decides each asset when its turn comes; an unchanged output (same
content hash) stops the walk from re-running anything below it.

>>> fmt_seconds(0.42), fmt_seconds(42.0), fmt_seconds(200.0)
('0.4 s', '42 s', '3.3 min')
"""

from __future__ import annotations

import graphlib
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from lexgpt.infra import paths
from lexgpt.infra.interrupts import stop_on_interrupt
from pipelines.lake import (
    CONFIG_HASH_KEY,
    CODE_VERSION_TAG,
    FILES_KEY,
    INPUT_VERSION_TAG,
    config_hash,
    failed_blocking_check,
    files_sha256,
    latest_data_version,
    recorded_value,
)
from pipelines.run_outcome import failed_check_lines, failure_message, interrupted

DISK_DIFFERS = "file on disk differs from the recorded version"

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


def fmt_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


@dataclass(frozen=True)
class AssetNode:
    """What staleness needs to know about one asset definition."""

    key: dg.AssetKey
    deps: tuple[dg.AssetKey, ...]
    code_version: str | None
    materializable: bool

    @property
    def name(self) -> str:
        return self.key.to_user_string()


def asset_nodes(defs: dg.Definitions) -> list[AssetNode]:
    """Every asset (sources included), inputs before the assets made from them."""
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    listed = [k for a in (defs.assets or []) for k in getattr(a, "keys", [getattr(a, "key", None)]) if k in specs]
    position = {key: i for i, key in enumerate(dict.fromkeys([*listed, *specs]))}  # as definitions.py lists them
    deps = {key: tuple(d.asset_key for d in spec.deps) for key, spec in specs.items()}
    sorter = graphlib.TopologicalSorter({k: [d for d in v if d in specs] for k, v in deps.items()})
    sorter.prepare()
    order: list[dg.AssetKey] = []
    while sorter.is_active():  # ties in definition order, so the walk is the same every time
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order += ready
        sorter.done(*ready)
    return [AssetNode(key, deps[key], specs[key].code_version, defs.resolve_assets_def(key).is_materializable)
            for key in order]


def effective_config(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The full run config of every configurable asset: defaults merged with ``overrides``.

    Raises ``ValueError`` (one line) for an unknown asset, a misspelt field or a bad value,
    which would otherwise be ignored without a word.
    """
    import pydantic

    from pipelines.assets.bpe_vocab import BPEConfig
    from pipelines.assets.evaluation_samples import SamplesConfig
    from pipelines.assets.ngram_baseline import NgramConfig
    from pipelines.assets.trained_model import TrainingConfig

    overrides = overrides or {}
    classes = {"bpe_vocab": BPEConfig, "ngram_baseline": NgramConfig, "trained_model": TrainingConfig,
               "evaluation_samples": SamplesConfig}
    unknown = set(overrides) - set(classes)
    if unknown:
        raise ValueError(f"no configurable asset named {', '.join(sorted(unknown))} (choose from {', '.join(classes)})")
    effective = {}
    for name, cls in classes.items():
        given = overrides.get(name, {})
        typos = sorted(set(given) - set(cls.model_fields))
        if typos:
            raise ValueError(f"{name}: no config field {', '.join(typos)} (fields: {', '.join(cls.model_fields)})")
        try:
            effective[name] = cls(**given).model_dump()
        except pydantic.ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ValueError(f"{name}: {problems}") from None
    return effective


@dataclass
class AssetState:
    name: str
    status: str  # "fresh" | "stale" | "missing"
    causes: list[str] = field(default_factory=list)
    cost: str = ""  # what a refresh would do with it: "runs", "runs only if ... changes", ""
    last_seconds: float | None = None  # how long its last materialization took


class Staleness:
    """Decides fresh / stale / missing for the assets of ``defs`` against ``instance``.

    ``config`` maps asset name -> the effective run config a refresh would use;
    ``sources_now`` maps source asset name -> its version now (else the last observation).
    """

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance,
                 config: Mapping[str, Mapping[str, Any]] | None = None,
                 sources_now: Mapping[str, str] | None = None):
        self.instance = instance
        self.nodes = asset_nodes(defs)
        self.by_key = {n.key: n for n in self.nodes}
        self.lake = defs.resources["lake"]
        self.config = config or {}
        self.sources_now = sources_now or {}
        self.blocking_checks: dict[dg.AssetKey, list[dg.AssetCheckKey]] = {}
        for checks in defs.asset_checks or []:
            for spec in checks.check_specs:
                if spec.blocking:
                    self.blocking_checks.setdefault(spec.asset_key, []).append(spec.key)

    def current_version(self, key: dg.AssetKey) -> str | None:
        node = self.by_key.get(key)
        if node is not None and not node.materializable:
            return self.sources_now.get(node.name) or latest_data_version(self.instance, key, is_source=True)
        return latest_data_version(self.instance, key)

    def state(self, node: AssetNode) -> AssetState:
        entry = self.instance.get_latest_materialization_event(node.key)
        if entry is None or entry.asset_materialization is None:
            return AssetState(node.name, "missing", ["never materialized"])
        tags = entry.asset_materialization.tags or {}
        causes = []
        if node.code_version is not None and tags.get(CODE_VERSION_TAG) != node.code_version:
            causes.append("code version changed")
        for dep in node.deps:
            now = self.current_version(dep)
            if now is None and dep in self.by_key and self.by_key[dep].materializable:
                causes.append(f"input {dep.to_user_string()}: missing")
            elif now is not None and tags.get(INPUT_VERSION_TAG + dep.to_user_string()) != now:
                causes.append(f"input {dep.to_user_string()}: has a new data version")
        recorded_config = recorded_value(entry, CONFIG_HASH_KEY)
        if node.name in self.config and recorded_config and recorded_config != config_hash(self.config[node.name]):
            causes.append("run config changed")
        recorded_files = recorded_value(entry, FILES_KEY)
        if recorded_files and files_sha256(self.lake.path(node.name)) != recorded_files:
            causes.append(DISK_DIFFERS)
        causes += self.failed_blocking_checks(node.key)
        return AssetState(node.name, "stale" if causes else "fresh", causes,
                          last_seconds=self._last_seconds(node, entry))

    def failed_blocking_checks(self, key: dg.AssetKey) -> list[str]:
        """``check X failed (why)`` for each blocking check that failed on the asset's latest
        materialization (in its run, or run again alone later)."""
        causes = []
        for check_key in self.blocking_checks.get(key, []):
            why = failed_blocking_check(self.instance, check_key)
            if why is not None:
                causes.append(f"check {check_key.name} failed" + (f" ({why})" if why else ""))
        return causes

    def _last_seconds(self, node: AssetNode, entry) -> float | None:
        """Materialization time minus the start of its run, or of its last input made in the same run."""
        record = self.instance.get_run_record_by_id(entry.run_id)
        if record is None or record.start_time is None:
            return None
        start = record.start_time
        for dep in node.deps:
            dep_entry = self.instance.get_latest_materialization_event(dep)
            if dep_entry is not None and dep_entry.run_id == entry.run_id:
                start = max(start, dep_entry.timestamp)
        return max(entry.timestamp - start, 0.0)

    def states(self) -> list[AssetState]:
        """Every materializable asset in topological order, with what a refresh would cost."""
        states, will_run, may_run = [], set(), set()
        for node in self.nodes:
            if not node.materializable:
                continue
            state = self.state(node)
            if state.status != "fresh":
                state.cost = "runs"
                will_run.add(node.key)
            else:
                changing = [d.to_user_string() for d in node.deps if d in will_run or d in may_run]
                if changing:
                    state.cost = f"runs only if {' or '.join(changing)} changes content"
                    may_run.add(node.key)
            states.append(state)
        return states


def asset_states(defs: dg.Definitions, instance: dg.DagsterInstance,
                 config: Mapping[str, Mapping[str, Any]] | None = None,
                 sources_now: Mapping[str, str] | None = None) -> list[AssetState]:
    return Staleness(defs, instance, config, sources_now).states()


def observe_sources(defs: dg.Definitions, instance: dg.DagsterInstance,
                    on_run: Callable[[str], None] = lambda run_id: None) -> None:
    """Record the versions of source assets (the VTT folder), as the UI's "Observe" does."""
    sources = [n.key for n in asset_nodes(defs) if not n.materializable]
    if sources:
        _execute(defs, instance, sources, {}, on_run, label=", ".join(k.to_user_string() for k in sources))


# Dagster's console logger would print every event (and a failure's whole traceback);
# the refresh prints its own one-line progress and the root cause instead.
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
RUN_PID_TAG = "lexgpt/pid"


def _execute(defs, instance, keys, op_config, on_run, label: str):
    config: dict[str, Any] = dict(_QUIET)
    if op_config:
        config["ops"] = op_config
    run_id = str(uuid.uuid4())
    on_run(run_id)  # recorded before the run exists, so a kill at any point leaves it findable
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=keys, run_config=config, raise_on_error=False,
        run_id=run_id, tags={RUN_PID_TAG: str(os.getpid())},
    )
    if not result.success:
        if interrupted(result):
            raise Interrupted(label)
        raise RefreshError(label, failure_message(result))
    return result


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
    on_run: Callable[[str], None] = lambda run_id: None,
) -> RefreshReport:
    """Materialize what is missing or stale, one asset at a time in topological order.

    ``run_config`` maps asset name -> config overrides passed to that asset's run;
    ``effective_config`` maps asset name -> the full config (defaults + overrides), used
    to notice config changes. ``only`` restricts the walk to these asset names.
    ``on_run`` is told each Dagster run id before the run starts. Ctrl-C raises
    :class:`Interrupted` naming the asset that was running.
    """
    run_config = run_config or {}
    report = RefreshReport()
    current = "the source observation"
    try:
        # Records Ctrl-C as well as raising it: a KeyboardInterrupt swallowed by a GC
        # callback (SQLAlchemy's, while Dagster writes the run) still stops the walk, and
        # the training loop inside the run sees it too (lexgpt.infra.interrupts).
        with stop_on_interrupt() as stop:
            observe_sources(defs, instance, on_run)
            staleness = Staleness(defs, instance, effective_config)
            for node in staleness.nodes:
                if not node.materializable or (only is not None and node.name not in only):
                    continue
                current = f"the status check of {node.name}"
                stop.check()
                state = staleness.state(node)  # decided now: its inputs may just have changed
                if state.status == "fresh":
                    report.skipped.append(node.name)
                    log(f"  fresh    {node.name}")
                    continue
                current = node.name
                log(f"  running  {node.name}  ({state.status}: {'; '.join(state.causes)})")
                started = time.perf_counter()
                op_config = {node.name: {"config": dict(run_config[node.name])}} if run_config.get(node.name) else {}
                try:
                    result = _execute(defs, instance, [node.key], op_config, on_run, label=node.name)
                except RefreshError:
                    stop.check()  # a run that failed because of Ctrl-C was interrupted
                    raise
                for line in failed_check_lines(result):
                    log(f"  {line}")
                report.executed.append(node.name)
                log(f"  done     {node.name}  ({time.perf_counter() - started:.1f} s)")
    except KeyboardInterrupt:
        raise Interrupted(current) from None
    return report


class RefreshError(RuntimeError):
    def __init__(self, asset: str, message: str):
        super().__init__(f"{asset} failed: {message}")
        self.asset = asset


class Interrupted(RuntimeError):
    """Ctrl-C: the asset that was running keeps its previous version (writes are atomic)."""

    def __init__(self, during: str):
        super().__init__(f"interrupted during {during}; previous version kept")
        self.during = during
