"""Raw subtitles: every caption cue of every episode, parsed from the VTT source."""

import time

import dagster as dg

from lexgpt.data import ingest
from lexgpt.infra import atomic
from lexgpt.infra.hashing import sha256_file, short
from pipelines.assets.lexicap_vtt import lexicap_vtt
from pipelines.assets.shared import DATA_GROUP, SHOWN_ROWS
from pipelines.lake import INPUT_VERSION_TAG, column_schema, table, write_lineage
from pipelines.resources import DataLake, LexicapSource
from pipelines.versioning import code_version


@dg.asset(
    group_name=DATA_GROUP,
    deps=[lexicap_vtt],
    code_version=code_version(
        "lexgpt.data.vtt", "lexgpt.data.ingest", "lexgpt.data.lexicap", "lexgpt.data.archive",
        "lexgpt.infra.stable_read", "pipelines.assets.raw_subtitles", "pipelines.assets.shared",
    ),
    description="Every caption cue of every episode, parsed from WebVTT (one row per cue). "
    "Every entry of the source folder is ingested or listed as ignored with a reason; a name "
    "that looks like a mistyped episode file stops the run (LEXICAP_ALLOW_NEAR_MISSES=1 "
    "ignores those instead).",
    owners=["team:data"],
    kinds={"parquet", "polars"},
)
def raw_subtitles(context: dg.AssetExecutionContext, source: LexicapSource, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.for_asset(context)
    folder = source.resolve()
    started = time.perf_counter()
    ingested = ingest.ingest_folder(folder, variant=source.variant)
    seconds = time.perf_counter() - started
    # The version of the bytes that were parsed, not of a separate read: a file rewritten
    # since lexicap_vtt was observed must not be labelled with the observed version.
    fingerprint = ingested.source_fingerprint()
    cues = ingested.cues
    out = layout.cues_file()
    atomic.write_parquet(out, cues)
    digest = sha256_file(out)
    ignored = ingested.scan.ignored
    write_lineage(out.parent, source_folder=str(folder), variant=source.variant,
                  source_sha256=fingerprint, output_sha256=digest,
                  ignored=[{"name": e.name, "reason": e.reason} for e in ignored])
    summary = ingest.summarize(cues)
    dropped = ingested.dropped_lines()
    context.log.info(f"parsed {summary['cues']} cues from {summary['episodes']} episodes in {seconds:.1f}s; "
                     f"ignored {len(ignored)} other entr{'y' if len(ignored) == 1 else 'ies'}")
    identifier_rows = [[f.name, line, text] for f in ingested.files for line, text in f.identifiers]
    return dg.MaterializeResult(
        metadata={
            "episodes": summary["episodes"],
            "cues": summary["cues"],
            "hours_of_audio": round(float(summary["hours"]), 1),
            # Whisper timestamp glitches: kept (their text is fine), but counted, never hidden.
            "cues_ending_before_start": summary["backwards_cues"],
            # Lines the WebVTT spec drops: counted, so a lost transcript line is visible.
            **dropped,
            "identifier_examples": table(["file", "line", "identifier"], identifier_rows[:SHOWN_ROWS]),
            "ignored_entries": len(ignored),
            "ignored": table(["entry", "reason"], [[repr(e.name), e.reason] for e in ignored[:SHOWN_ROWS]]),
            "parse_seconds": round(seconds, 2),
            "source": dg.MetadataValue.path(str(folder)),
            "path": dg.MetadataValue.path(str(out)),
            "dagster/row_count": summary["cues"],
            "dagster/column_schema": column_schema(
                [(f.name, str(f.type), "") for f in cues.schema]
            ),
            **layout.files_metadata("raw_subtitles"),
        },
        data_version=dg.DataVersion(short(digest)),
        # Dagster would record the last observation of lexicap_vtt as the input version;
        # record what was ingested instead, so `lexgpt status` compares the folder now with
        # what is in the lake (a later change, or one during the run, shows as stale).
        tags={INPUT_VERSION_TAG + lexicap_vtt.key.to_user_string(): short(fingerprint)},
    )
