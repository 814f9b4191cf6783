"""Raw ingestion: every VTT file of a Lexicap folder -> one Arrow table of cues.

One row per cue, nothing cleaned or dropped; rows sorted by (episode_id, cue_index).
What is not a cue is counted, never silently lost: :func:`ingest_folder` returns, beside
the table, the folder scan (every ignored entry with its reason) and per-file counts of
the lines the WebVTT spec drops (cue identifiers, NOTE and STYLE/REGION blocks, header
metadata). A file without a single cue is an error naming it, not an episode that
vanishes.

>>> import pyarrow as pa
>>> t = pa.table({"episode_id": pa.array([1, 1, 2], pa.int32()),
...               "start_s": [0.0, 2.0, 0.0], "end_s": [2.0, 3.5, 1800.0]})
>>> summarize(t)  # doctest: +ELLIPSIS
{'episodes': 2, 'cues': 3, 'hours': 0.500972..., 'backwards_cues': 0}
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lexgpt.data import lexicap
from lexgpt.data.lexicap import SourceScan, scan_source
from lexgpt.data.vtt import VTTParseError, parse_vtt_document
from lexgpt.infra.hashing import sha256_bytes
from lexgpt.infra.workers import reset_signals

SCHEMA = pa.schema(
    [
        ("episode_id", pa.int32()),
        ("cue_index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("text", pa.large_string()),
        ("source_file", pa.string()),
    ]
)

# Below this many files a pool costs more to start (~0.3 s per spawned worker) than it saves.
_MIN_FILES_FOR_POOL = 8


# Lines of each file that hold no cue text; counted so that nothing vanishes unseen.
DROPPED_LINE_KINDS = ("header_lines", "identifier_lines", "note_lines", "style_lines")


@dataclass(frozen=True)
class FileCounts:
    """What one file held besides its cues. ``identifiers``: the first few (line, text);
    ``sha256``: the hash of exactly the bytes that were parsed."""

    name: str
    cues: int
    header_lines: int
    identifier_lines: int
    note_lines: int
    style_lines: int
    identifiers: tuple[tuple[int, str], ...] = ()
    sha256: str = field(default="", compare=False)


@dataclass(frozen=True)
class Ingested:
    """The cue table, the folder scan behind it, and per-file counts (in episode order)."""

    cues: pa.Table
    scan: SourceScan
    files: list[FileCounts]

    def dropped_lines(self) -> dict[str, int]:
        """Totals over all files, one per kind in DROPPED_LINE_KINDS."""
        return {k: sum(getattr(f, k) for f in self.files) for k in DROPPED_LINE_KINDS}

    def source_fingerprint(self) -> str:
        """``lexicap.source_fingerprint`` of the bytes that were parsed (not of a second read)."""
        hashes = {path: f.sha256 for (_, path), f in zip(self.scan.episodes, self.files)}
        return lexicap.fingerprint_of(hashes, self.scan.near_misses)


_IDENTIFIER_EXAMPLES = 5  # per file: enough to see what was there, bounded for metadata


def _read_episode(episode_id: int, path: Path) -> tuple[pa.Table, FileCounts]:
    # Read once: the bytes hashed are the bytes parsed (a file rewritten between two reads
    # would otherwise be versioned as one content and ingested as another).
    data = lexicap.read_episode_bytes(path)
    # Lexicap has two cues whose end precedes their start (episodes 153 and 276); their
    # text is fine, so they are kept as they are and counted by summarize().
    doc = parse_vtt_document(data, str(path), allow_backwards=True)
    cues = doc.cues
    n = len(cues)
    if n == 0:
        raise VTTParseError(
            str(path), None,
            "no cues (only a header, NOTE, STYLE or REGION blocks): an episode needs at least "
            "one cue; fix or remove the file",
        )
    table = pa.table(
        [
            pa.array([episode_id] * n, pa.int32()),
            pa.array(range(n), pa.int32()),
            pa.array([c.start for c in cues], pa.float64()),
            pa.array([c.end for c in cues], pa.float64()),
            pa.array([c.text for c in cues], pa.large_string()),
            pa.array([path.name] * n, pa.string()),
        ],
        schema=SCHEMA,
    )
    counts = FileCounts(
        path.name, n, doc.header_lines, doc.identifier_lines, doc.note_lines, doc.style_lines,
        doc.identifiers[:_IDENTIFIER_EXAMPLES], sha256_bytes(data),
    )
    return table, counts


def _read_episode_args(args: tuple[int, Path]) -> tuple[pa.Table, FileCounts]:
    return _read_episode(*args)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ingest_folder(
    folder: str | os.PathLike[str],
    variant: str = "large",
    workers: int | None = None,
    *,
    allow_near_misses: bool | None = None,
) -> Ingested:
    """Scan ``folder``, refuse near misses (see ``lexicap.SourceScan.check``), parse every episode.

    ``workers``: parser processes; None uses every available core when there are enough
    files to pay for the pool, 1 parses in this process. Each file is read once and its
    bytes are both hashed and parsed (:meth:`Ingested.source_fingerprint`). A VTTParseError
    (file and line), an unreadable or changing file (``stable_read``) and two episodes with
    the same bytes (SourceIntegrityError) propagate as they are. Workers are spawned, so a pool
    cannot start from code piped into ``python -``; pass ``workers=1`` there.
    """
    scan = scan_source(folder, variant)
    scan.check(allow_near_misses)
    files = scan.episodes
    if not files:
        raise FileNotFoundError(f"no episode_NNN_{variant}.vtt files in {folder}")
    if workers is None:
        workers = _available_cpus() if len(files) >= _MIN_FILES_FOR_POOL else 1
    workers = max(1, min(workers, len(files)))
    if workers == 1:
        results = [_read_episode(eid, p) for eid, p in files]
    else:
        # spawn, not fork: callers (Dagster) run threads, and forking those can deadlock.
        ctx = multiprocessing.get_context("spawn")
        chunksize = max(1, len(files) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=reset_signals) as pool:
            results = list(pool.map(_read_episode_args, files, chunksize=chunksize))
    counts = [c for _, c in results]
    lexicap.check_distinct_contents(scan.folder, {path: c.sha256 for (_, path), c in zip(files, counts)})
    # Files are sorted by episode id and cue_index follows file order, so rows are sorted.
    table = pa.concat_tables([t for t, _ in results]).combine_chunks()
    return Ingested(table, scan, counts)


def read_cues(
    folder: str | os.PathLike[str],
    variant: str = "large",
    workers: int | None = None,
    *,
    allow_near_misses: bool | None = None,
) -> pa.Table:
    """Just the cue table of :func:`ingest_folder` (see SCHEMA)."""
    return ingest_folder(folder, variant, workers, allow_near_misses=allow_near_misses).cues


def summarize(table: pa.Table) -> dict:
    """Counts for logs and Dagster metadata.

    ``hours`` is the sum over episodes of the last cue end, i.e. the length of the
    transcribed audio; summing cue durations instead would count overlaps twice and the
    gaps not at all. ``backwards_cues`` counts cues whose end precedes their start.
    """
    if table.num_rows == 0:
        return {"episodes": 0, "cues": 0, "hours": 0.0, "backwards_cues": 0}
    last_end = table.group_by("episode_id").aggregate([("end_s", "max")])["end_s_max"]
    backwards = pc.sum(pc.less(table["end_s"], table["start_s"])).as_py() or 0
    return {
        "episodes": last_end.length(),
        "cues": table.num_rows,
        "hours": pc.sum(last_end).as_py() / 3600,
        "backwards_cues": backwards,
    }
