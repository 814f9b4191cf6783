"""Data stages: the VTT source, raw subtitles (cues), the cleaned corpus."""


import time
import warnings

import dagster as dg

from lexgpt import atomic, cleaning, corpus, ingest
from lexgpt.hashing import sha256_file, short
from pipelines.automation import observe_condition
from pipelines.lake import INPUT_VERSION_TAG, column_schema, table, write_lineage
from pipelines.resources import DataLake, LexicapSource
from pipelines.versioning import code_version

GROUP = "data"
_SHOWN = 50  # rows of a metadata table; lineage.json holds the whole list


def lexicap_vtt(source: LexicapSource) -> dg.DataVersion:
    return dg.DataVersion(source.data_version())


# observable_source_asset is Dagster's way to version an external source. It is marked
# beta; its warning is silenced for this one call (no global filter at import).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*observable_source_asset.*")
    lexicap_vtt = dg.observable_source_asset(
        group_name=GROUP,
        description="The Lexicap WebVTT caption files (a local folder, LEXICAP_DIR, or data.zip). "
        "Versioned by content: a changed or added file makes raw_subtitles stale.",
        owners=["team:data"],
        tags={"kind": "vtt"},
        automation_condition=observe_condition(),  # observed by automation, see pipelines/automation.py
    )(lexicap_vtt)


@dg.asset(
    group_name=GROUP,
    deps=[lexicap_vtt],
    code_version=code_version(
        "lexgpt.vtt", "lexgpt.ingest", "lexgpt.lexicap", "lexgpt.archive", "lexgpt.stable_read",
        "pipelines.assets.data",
    ),
    description="Every caption cue of every episode, parsed from WebVTT (one row per cue). "
    "Every entry of the source folder is ingested or listed as ignored with a reason; a name "
    "that looks like a mistyped episode file stops the run (LEXICAP_ALLOW_NEAR_MISSES=1 "
    "ignores those instead).",
    owners=["team:data"],
    kinds={"parquet", "polars"},
)
def raw_subtitles(context: dg.AssetExecutionContext, source: LexicapSource, lake: DataLake) -> dg.MaterializeResult:
    folder = source.resolve()
    started = time.perf_counter()
    ingested = ingest.ingest_folder(folder, variant=source.variant)
    seconds = time.perf_counter() - started
    # The version of the bytes that were parsed, not of a separate read: a file rewritten
    # since lexicap_vtt was observed must not be labelled with the observed version.
    fingerprint = ingested.source_fingerprint()
    cues = ingested.cues
    out = lake.cues_file()
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
            "identifier_examples": table(["file", "line", "identifier"], identifier_rows[:_SHOWN]),
            "ignored_entries": len(ignored),
            "ignored": table(["entry", "reason"], [[repr(e.name), e.reason] for e in ignored[:_SHOWN]]),
            "parse_seconds": round(seconds, 2),
            "source": dg.MetadataValue.path(str(folder)),
            "path": dg.MetadataValue.path(str(out)),
            "dagster/row_count": summary["cues"],
            "dagster/column_schema": column_schema(
                [(f.name, str(f.type), "") for f in cues.schema]
            ),
            **lake.files_metadata("raw_subtitles"),
        },
        data_version=dg.DataVersion(short(digest)),
        # Dagster would record the last observation of lexicap_vtt as the input version;
        # record what was ingested instead, so `lexgpt status` compares the folder now with
        # what is in the lake (a later change, or one during the run, shows as stale).
        tags={INPUT_VERSION_TAG + lexicap_vtt.key.to_user_string(): short(fingerprint)},
    )


@dg.asset(
    group_name=GROUP,
    deps=[raw_subtitles],
    # The rules' hash, computed without raising: a broken rules file must not stop the
    # definitions from loading; the asset reports it when it runs.
    code_version=code_version(
        "lexgpt.cleaning", "lexgpt.corpus", "pipelines.assets.data", extra=cleaning.rules_version()
    ),
    description="One cleaned text per episode. The cleaning rules are in "
    "lexgpt/cleaning_rules.toml; this asset's code version is their hash. "
    "Validated by a pandera schema before anything is written.",
    owners=["team:data"],
    kinds={"parquet", "pandera"},
)
def cleaned_corpus(context: dg.AssetExecutionContext, lake: DataLake) -> dg.MaterializeResult:
    # RuleError (a broken rules file, a rule past its time limit) and MixedEpisodeError
    # propagate as they are: one line naming the rule (and episode), nothing written.
    rules = cleaning.load_rules()
    rules_sha256 = cleaning.rules_fingerprint(rules)
    cues = lake.read_cues()
    df, hits = corpus.build_corpus(cues, rules)
    try:
        df = corpus.validate(df)
    except corpus.CorpusValidationError as err:
        cases = err.failure_cases
        rows = cases.head(50).rows() if cases is not None else []
        raise dg.Failure(
            description=str(err),
            metadata={
                "failure_cases": table(cases.columns if cases is not None else [], [list(r) for r in rows]),
                "failure_case_count": cases.height if cases is not None else 0,
            },
        ) from err
    out = lake.corpus_file()
    atomic.write_parquet(out, df)
    version = corpus.content_hash(df)
    write_lineage(out.parent, raw_subtitles_sha256=sha256_file(lake.cues_file()),
                  rules=[r.as_dict() for r in rules], rules_sha256=rules_sha256,
                  content_sha256=version)
    first = df.row(0, named=True)
    preview = first["text"][:600]
    return dg.MaterializeResult(
        metadata={
            "rows": df.height,
            "chars": int(df["n_chars"].sum()),
            "rules_sha256": rules_sha256[:16],
            "hits_per_rule": table(["rule", "hits"], [[k, v] for k, v in hits.items()]),
            "preview": dg.MetadataValue.md(f"**Episode {first['episode_id']}**\n\n> {preview}…"),
            "path": dg.MetadataValue.path(str(out)),
            "dagster/row_count": df.height,
            "dagster/column_schema": column_schema(corpus.schema_columns()),
            **lake.files_metadata("cleaned_corpus"),
        },
        data_version=dg.DataVersion(short(version)),
    )


@dg.asset_check(
    asset=cleaned_corpus,
    blocking=True,  # a corpus that fails its schema must not reach the tokenizer
    description="The written corpus passes the pandera schema (one row per episode, unique "
    "ids, text non-empty, counts consistent).",
)
def corpus_matches_schema(lake_reader: DataLake) -> dg.AssetCheckResult:
    try:
        corpus.validate(lake_reader.read_corpus())
    except corpus.CorpusValidationError as err:
        cases = err.failure_cases
        rows = [list(r) for r in cases.head(_SHOWN).rows()] if cases is not None else []
        return dg.AssetCheckResult(passed=False, description=str(err).splitlines()[0], metadata={
            "failure_cases": table(list(cases.columns) if cases is not None else [], rows)})
    return dg.AssetCheckResult(passed=True)
