"""Small helpers the assets share: lineage sidecars, metadata tables, what Dagster recorded.

Every asset records ``files_sha256`` (:data:`FILES_KEY`): one hash over the files in its
folder of the lake. ``lexgpt status`` hashes the folder again and compares, so a file
written by a process killed before Dagster recorded it is never labelled fresh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from lexgpt.infra import atomic
from lexgpt.infra.hashing import sha256_files, sha256_json

FILES_KEY = "files_sha256"
CONFIG_HASH_KEY = "config_sha256"  # the run config an asset was made with (run config is no part of versions)
DATA_VERSION_TAG = "dagster/data_version"  # the tags Dagster puts on every materialization
CODE_VERSION_TAG = "dagster/code_version"
INPUT_VERSION_TAG = "dagster/input_data_version/"


def write_lineage(folder: Path, **fields: Any) -> dict[str, Any]:
    """Record next to an artifact what it was made from (input hashes, config, code)."""
    atomic.write_json(folder / "lineage.json", fields)
    return fields


def table(header: list[str], rows: list[list[Any]]) -> dg.MetadataValue:
    """A metadata table the UI renders and sorts: ``table(["rule", "hits"], [["a", 3]])``."""

    def kind(column: int) -> str:
        values = [row[column] for row in rows]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "int"
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return "float"
        return "string"

    kinds = [kind(i) for i in range(len(header))]
    records = [dg.TableRecord({name: (value if k != "string" else str(value))
                               for name, value, k in zip(header, row, kinds)}) for row in rows]
    return dg.MetadataValue.table(
        records=records, schema=dg.TableSchema(columns=[dg.TableColumn(n, k) for n, k in zip(header, kinds)]))


def column_schema(columns: list[tuple[str, str, str]]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, dtype, description=desc) for name, dtype, desc in columns]
    )


def asset_files(folder: Path) -> list[Path]:
    """The files an asset wrote: the visible files directly in its folder (subfolders such as
    ``trained_model/runs/`` are work areas, hidden ``.*.tmp`` files are unfinished writes)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def files_sha256(folder: Path) -> str | None:
    """One short hash over the asset's files (names and contents); None if there are none."""
    files = asset_files(folder)
    return sha256_files(files)[:16] if files else None


def files_metadata(folder: Path) -> dict[str, str]:
    """The metadata entry every asset adds last: ``{FILES_KEY: hash of its files}``."""
    return {FILES_KEY: files_sha256(folder) or ""}


def recorded_value(entry, key: str) -> Any:
    """A metadata value of a materialization event log entry, as a plain value."""
    value = entry.asset_materialization.metadata.get(key)
    return getattr(value, "value", value)


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, Any] | None:
    """The metadata of ``key``'s latest materialization as plain values; None if it has none.

    This is how an asset learns about its inputs (versions, hashes, scores): from what
    Dagster recorded, not from files beside the upstream's output.
    """
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def latest_tags(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, str]:
    """The tags of ``key``'s latest materialization (data version, input versions, ...)."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return dict(event.asset_materialization.tags or {})


def latest_data_version(instance: dg.DagsterInstance, key: dg.AssetKey, is_source: bool = False) -> str | None:
    """The data version last recorded for ``key`` (materialization or, for sources, observation)."""
    if is_source:
        records = instance.fetch_observations(key, limit=1).records  # newest first
        observation = records[0].asset_observation if records else None
        version = observation.data_version if observation else None
        return version if version else None
    entry = instance.get_latest_materialization_event(key)
    if entry is None or entry.asset_materialization is None:
        return None
    return entry.asset_materialization.tags.get(DATA_VERSION_TAG)


def config_hash(config: dict[str, Any]) -> str:
    """The short hash recorded as :data:`CONFIG_HASH_KEY`."""
    return sha256_json(dict(config))[:16]


def _evaluation_on_latest(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey):
    """``(has a materialization, the check's latest evaluation if it was made on the asset's
    latest materialization, else None)``: in the run that made it, or later on its own (the
    UI's Checks tab), where Dagster records which materialization it read."""
    records = instance.fetch_materializations(check_key.asset_key, limit=1).records  # newest first
    if not records:
        return False, None
    latest, record = records[0], instance.get_latest_asset_check_evaluation_record(check_key)
    if record is None:
        return True, None
    target = getattr(record.evaluation, "target_materialization_data", None)
    on_latest = target.storage_id == latest.storage_id if target is not None else record.run_id == latest.run_id
    return True, record if on_latest else None


def _failure(record) -> str | None:
    """Why an evaluation failed ("" if it said nothing); None if it did not fail."""
    if record is None or record.status.value != "FAILED":
        return None
    return (record.evaluation.description if record.evaluation is not None else None) or ""


def failed_blocking_check(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey) -> str | None:
    """Why ``check_key`` failed on its asset's latest materialization ("" if it said nothing);
    None if its latest evaluation there did not fail (passed, or never ran on it)."""
    return _failure(_evaluation_on_latest(instance, check_key)[1])


def blocking_check_refusal(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey) -> str | None:
    """None if ``check_key`` passed on its asset's latest materialization; else one line why
    not (it failed, or it has not run on that materialization)."""
    materialized, record = _evaluation_on_latest(instance, check_key)
    if not materialized:
        return f"has no materialization for {check_key.name} to check"
    why = _failure(record)
    if why is not None:
        return f"failed {check_key.name}" + (f" ({why})" if why else "")
    if record is None or record.status.value != "SUCCEEDED":
        asset = check_key.asset_key.to_user_string()
        return (f"has not passed {check_key.name} on its latest materialization (it did not run there): "
                f"execute the check (UI: {asset} > Checks) or materialize {asset} with it")
    return None
