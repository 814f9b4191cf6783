"""Small helpers the assets share: lineage sidecars and Dagster metadata tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from lexgpt import atomic


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


def latest_data_version(instance: dg.DagsterInstance, key: dg.AssetKey, is_source: bool = False) -> str | None:
    """The data version last recorded for ``key`` (materialization or, for sources, observation)."""
    from dagster._core.definitions.data_version import extract_data_version_from_entry

    record = instance.get_latest_data_version_record(key, is_source=is_source)
    if record is None:
        return None
    version = extract_data_version_from_entry(record.event_log_entry)
    return version.value if version else None
