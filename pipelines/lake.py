"""Small helpers the assets share: lineage sidecars, Dagster metadata tables, recorded versions.

Every asset records ``files_sha256`` (:data:`FILES_KEY`): one hash over the files in its
folder of the lake. ``lexgpt status`` hashes the folder again and compares, so a file
written by a process killed before Dagster recorded it is never labelled fresh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from lexgpt import atomic
from lexgpt.hashing import sha256_files

FILES_KEY = "files_sha256"
DATA_VERSION_TAG = "dagster/data_version"  # the tags Dagster puts on every materialization
CODE_VERSION_TAG = "dagster/code_version"
INPUT_VERSION_TAG = "dagster/input_data_version/"


def write_lineage(folder: Path, **fields: Any) -> dict[str, Any]:
    """Record next to an artifact what it was made from (input hashes, config, code)."""
    atomic.write_json(folder / "lineage.json", fields)
    return fields


def markdown_table(header: list[str], rows: list[list[Any]]) -> dg.MetadataValue:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


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
