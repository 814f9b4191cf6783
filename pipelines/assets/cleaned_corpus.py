"""The cleaned corpus: one text per episode, cleaned by the user's rules and checked by a
pandera schema (here and in the ``corpus_matches_schema`` check)."""

import dagster as dg

from lexgpt.data import cleaning, corpus
from lexgpt.infra import atomic
from lexgpt.infra.hashing import sha256_file, short
from pipelines.assets.raw_subtitles import raw_subtitles
from pipelines.assets.shared import DATA_GROUP, SHOWN_ROWS
from pipelines.lake import column_schema, table, write_lineage
from pipelines.resources import DataLake
from pipelines.versioning import code_version


@dg.asset(
    group_name=DATA_GROUP,
    deps=[raw_subtitles],
    # The rules' hash, computed without raising: a broken rules file must not stop the
    # definitions from loading; the asset reports it when it runs.
    code_version=code_version(
        "lexgpt.data.cleaning", "lexgpt.data.corpus", "pipelines.assets.cleaned_corpus", extra=cleaning.rules_version()
    ),
    description="One cleaned text per episode. The cleaning rules are in "
    "lexgpt/data/cleaning_rules.toml; this asset's code version is their hash. "
    "Validated by a pandera schema before anything is written.",
    owners=["team:data"],
    kinds={"parquet", "pandera"},
)
def cleaned_corpus(context: dg.AssetExecutionContext, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.for_asset(context)
    # RuleError (a broken rules file, a rule past its time limit) and MixedEpisodeError
    # propagate as they are: one line naming the rule (and episode), nothing written.
    rules = cleaning.load_rules()
    rules_sha256 = cleaning.rules_fingerprint(rules)
    cues = layout.read_cues()
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
    out = layout.corpus_file()
    atomic.write_parquet(out, df)
    version = corpus.content_hash(df)
    write_lineage(out.parent, raw_subtitles_sha256=sha256_file(layout.cues_file()),
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
            **layout.files_metadata("cleaned_corpus"),
        },
        data_version=dg.DataVersion(short(version)),
    )


@dg.asset_check(
    asset=cleaned_corpus,
    blocking=True,  # a corpus that fails its schema must not reach the tokenizer
    description="The written corpus passes the pandera schema (one row per episode, unique "
    "ids, text non-empty, counts consistent).",
)
def corpus_matches_schema(context: dg.AssetCheckExecutionContext, lake_reader: DataLake) -> dg.AssetCheckResult:
    try:
        corpus.validate(lake_reader.for_check(context).read_corpus())
    except corpus.CorpusValidationError as err:
        cases = err.failure_cases
        rows = [list(r) for r in cases.head(SHOWN_ROWS).rows()] if cases is not None else []
        return dg.AssetCheckResult(passed=False, description=str(err).splitlines()[0], metadata={
            "failure_cases": table(list(cases.columns) if cases is not None else [], rows)})
    return dg.AssetCheckResult(passed=True)
