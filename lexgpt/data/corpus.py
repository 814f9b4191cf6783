"""The cleaned corpus: one row per episode, validated before it is ever written.

Cues of an episode are stripped and joined with single spaces (captions are sentence fragments; the
line breaks inside a cue are Whisper's layout, not the speaker's), then the cleaning rules
run over the whole episode text. The pandera schema guards what downstream relies on:
one row per episode, non-empty text without control characters, and ``n_chars`` that
matches the text. Cues of one episode id from two files are refused, not merged.

>>> import pyarrow as pa
>>> from lexgpt.data.cleaning import Rule
>>> cues = pa.table({"episode_id": [1, 1], "cue_index": [0, 1], "start_s": [0.0, 1.0],
...                  "end_s": [1.0, 2.5], "text": [" Hello ", "world ."], "source_file": ["e1.vtt"] * 2})
>>> df, hits = build_corpus(cues, [Rule("ws", r"\\s+", " "), Rule("punct", r" ([.])", r"\\1")])
>>> df.select("episode_id", "text", "n_chars").rows()
[(1, 'Hello world.', 12)]
"""

from __future__ import annotations

import polars as pl
import pandera.polars as pa
import pyarrow

from lexgpt.data.cleaning import Rule, RunBudget, clean
from lexgpt.infra.hashing import sha256_bytes

# Characters that are never text: C0/C1 controls other than tab and newline, and Unicode
# noncharacters. The default rules remove them (``control_characters``) or turn them into
# spaces (VT, FF, NEL); this check catches a rules file that does not. Rust regex syntax,
# for polars.
_NONCHARACTERS = "".join(rf"\x{{{plane:X}FFFE}}\x{{{plane:X}FFFF}}" for plane in range(17))
CONTROL_CHARACTERS = rf"[\x00-\x08\x0B-\x1F\x7F-\x9F\x{{FDD0}}-\x{{FDEF}}{_NONCHARACTERS}]"


class CorpusSchema(pa.DataFrameModel):
    """One row per episode of cleaned caption text."""

    episode_id: int = pa.Field(unique=True, ge=0, description="Lexicap episode number")
    text: str = pa.Field(str_length={"min_value": 1}, description="cleaned text of the episode")
    n_chars: int = pa.Field(gt=0, description="characters in `text`")
    n_cues: int = pa.Field(gt=0, description="caption cues the text was built from")
    duration_s: float = pa.Field(ge=0, description="end of the last cue, in seconds")
    source_file: str = pa.Field(description="VTT file the episode came from")

    class Config:
        strict = True
        coerce = True

    @pa.check("text", name="no_control_characters")
    def no_control_characters(cls, data) -> pl.LazyFrame:
        """``text`` holds no control characters (other than tab and newline) and no noncharacters."""
        return data.lazyframe.select(pl.col(data.key).str.contains(CONTROL_CHARACTERS).not_())

    @pa.dataframe_check
    def n_chars_matches_text(cls, data) -> pl.LazyFrame:
        """``n_chars`` must equal the length of ``text``."""
        return data.lazyframe.select(pl.col("n_chars") == pl.col("text").str.len_chars())


class CorpusValidationError(ValueError):
    """The corpus broke the schema; ``failure_cases`` is a polars DataFrame of what failed."""

    def __init__(self, message: str, failure_cases: pl.DataFrame | None = None):
        super().__init__(message)
        self.failure_cases = failure_cases


class MixedEpisodeError(ValueError):
    """Cues of one episode id came from more than one file."""


def build_corpus(
    cues: pyarrow.Table, rules: list[Rule], budget: RunBudget | None = None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Join each episode's cues and clean them. Returns the corpus and total hits per rule.

    Raises MixedEpisodeError if an episode id has cues from two files, and
    ``cleaning.RuleError`` (naming the rule and the episode) if a rule runs too long or
    grows the text too much, or if all rules together run past ``budget`` (default: a
    fresh ``RunBudget``, whose bound ``$LEXGPT_CLEANING_TIMEOUT_S`` sets).
    Not validated here: call :func:`validate` (the asset does, before writing).
    """
    per_episode = (
        pl.from_arrow(cues)
        .sort("episode_id", "cue_index")
        .group_by("episode_id", maintain_order=True)
        .agg(
            pl.col("text").str.strip_chars().str.join(" ").alias("raw_text"),
            pl.len().alias("n_cues"),
            pl.col("end_s").max().alias("duration_s"),
            pl.col("source_file").unique(maintain_order=True).alias("source_files"),
        )
    )
    mixed = per_episode.filter(pl.col("source_files").list.len() > 1)
    if mixed.height:
        eid, files = mixed.row(0)[0], mixed["source_files"][0].to_list()
        raise MixedEpisodeError(
            f"episode {eid} has cues from {len(files)} files ({', '.join(map(repr, files))}); "
            f"{mixed.height} episode(s) affected. Keep one file per episode."
        )
    per_episode = per_episode.with_columns(pl.col("source_files").list.first().alias("source_file"))
    totals = {rule.name: 0 for rule in rules}
    texts: list[str] = []
    budget = RunBudget() if budget is None else budget
    for eid, source, raw in per_episode.select("episode_id", "source_file", "raw_text").iter_rows():
        text, hits = clean(raw, rules, where=f"episode {eid} ({source})", budget=budget)
        texts.append(text)
        for name, n in hits.items():
            totals[name] += n
    corpus = per_episode.drop("raw_text").with_columns(
        pl.Series("text", texts, dtype=pl.String),
    ).with_columns(pl.col("text").str.len_chars().alias("n_chars"))
    corpus = corpus.select(
        pl.col("episode_id").cast(pl.Int64),
        "text",
        pl.col("n_chars").cast(pl.Int64),
        pl.col("n_cues").cast(pl.Int64),
        pl.col("duration_s").cast(pl.Float64),
        "source_file",
    )
    return corpus, totals


def validate(corpus: pl.DataFrame) -> pl.DataFrame:
    """Validate against :class:`CorpusSchema`, collecting every failure, not just the first."""
    try:
        return CorpusSchema.validate(corpus, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        cases = cases if isinstance(cases, pl.DataFrame) else pl.DataFrame(cases)
        shown = cases.select([c for c in ("column", "check", "failure_case", "index") if c in cases.columns])
        with pl.Config(tbl_rows=20, fmt_str_lengths=60, tbl_width_chars=120):
            table = str(shown.head(20))
        raise CorpusValidationError(
            f"the cleaned corpus failed validation ({cases.height} failure case(s)):\n{table}", shown
        ) from err


def content_hash(corpus: pl.DataFrame) -> str:
    """Hash of what the corpus says (episode ids and texts), independent of Parquet encoding."""
    parts = [f"{eid}\0{text}\x1e" for eid, text in corpus.select("episode_id", "text").iter_rows()]
    return sha256_bytes("".join(parts).encode("utf-8"))


def schema_columns() -> list[tuple[str, str, str]]:
    """(name, dtype, description) for each column: shown as the asset's column schema."""
    schema = CorpusSchema.to_schema()
    return [(name, str(col.dtype), col.description or "") for name, col in schema.columns.items()]
