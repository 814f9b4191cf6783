"""Where the Lexicap transcripts come from, and which files of that folder are episodes.

``resolve_source`` picks, in order: an explicit folder, ``paths.lexicap_dir()``
(``$LEXICAP_DIR``, else a shared copy beside the repo), or the official zip downloaded
once into ``paths.cache_dir()`` and extracted there.

``scan_source`` accounts for every entry of the folder: an episode file of the chosen
variant is ingested; anything else is *ignored, with a reason*. An ignored entry that
looks like it was meant to be an episode (``episode_5_large.vtt``, a trailing space,
Arabic-Indic digits, a directory or broken link named like an episode, ``notes.vtt``)
is a *near miss*: :meth:`SourceScan.check` refuses those unless the user opts out
(``LEXICAP_ALLOW_NEAR_MISSES=1``), because a silently skipped file is lost data.

>>> EPISODE_FILE_RE.fullmatch("episode_042_large.vtt").groups()
('042', 'large')
>>> EPISODE_FILE_RE.fullmatch("episode_\u0660\u0664\u0662_large.vtt") is None  # ASCII digits only
True
>>> near_miss_reason("episode_5_large.vtt")
'episode id must be exactly 3 ASCII digits'
>>> near_miss_reason("README.txt") is None
True
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lexgpt.data import archive, vtt
from lexgpt.infra import paths
from lexgpt.infra.hashing import sha256_bytes, sha256_file
from lexgpt.infra.stable_read import read_regular_file

DATA_ZIP_URL = "https://karpathy.ai/lexicap/data.zip"
EPISODE_FILE_RE = re.compile(r"episode_([0-9]{3})_(large|small)\.vtt")
VARIANTS = ("large", "small")
ALLOW_NEAR_MISSES_ENV = "LEXICAP_ALLOW_NEAR_MISSES"

_EXTRACT_NAME = "lexicap"
# The pattern's shape with the strictness taken out: any digits, any word as the variant.
_LOOSE_RE = re.compile(r"episode_(\d+)_(\w+)\.vtt")
# What a bad or hostile archive raises while being read (zlib: a corrupt deflate stream).
_BROKEN_ARCHIVE = (archive.UnsafeArchiveError, zipfile.BadZipFile, zlib.error, EOFError)


class SourceUnavailableError(RuntimeError):
    """No local folder of VTT files is configured and data.zip could not be used."""


class SourceIntegrityError(ValueError):
    """The source folder holds near-miss names or two files for one episode."""


@dataclass(frozen=True)
class IgnoredEntry:
    """A folder entry that is not ingested; ``near_miss`` if it looks like an episode."""

    name: str
    reason: str
    near_miss: bool = False


@dataclass(frozen=True)
class SourceScan:
    """Every entry of a source folder: ``episodes`` [(id, path)] sorted by id, the rest ``ignored``."""

    folder: Path
    variant: str
    episodes: list[tuple[int, Path]] = field(default_factory=list)
    ignored: list[IgnoredEntry] = field(default_factory=list)

    @property
    def near_misses(self) -> list[IgnoredEntry]:
        return [e for e in self.ignored if e.near_miss]

    def check(self, allow_near_misses: bool | None = None) -> None:
        """Raise SourceIntegrityError (one line) if there are near misses and they are not allowed.

        ``allow_near_misses=None`` reads ``LEXICAP_ALLOW_NEAR_MISSES`` (``1``/``true``/``yes``).
        """
        if allow_near_misses is None:
            allow_near_misses = allow_near_misses_from_env()
        misses = self.near_misses
        if misses and not allow_near_misses:
            shown = "; ".join(f"{e.name!r}: {e.reason}" for e in misses[:5])
            more = f" (and {len(misses) - 5} more)" if len(misses) > 5 else ""
            raise SourceIntegrityError(
                f"{self.folder}: {len(misses)} entr{'y' if len(misses) == 1 else 'ies'} named like an "
                f"episode but not episode_NNN_{self.variant}.vtt: {shown}{more}. Rename or remove "
                f"{'it' if len(misses) == 1 else 'them'}, or set {ALLOW_NEAR_MISSES_ENV}=1 to ignore "
                f"{'it' if len(misses) == 1 else 'them'}."
            )


def allow_near_misses_from_env() -> bool:
    return os.environ.get(ALLOW_NEAR_MISSES_ENV, "").strip().lower() in ("1", "true", "yes")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def near_miss_reason(name: str) -> str | None:
    """Why ``name`` looks like a mistyped episode file, or None if it does not look like one.

    Names that match the pattern exactly are not near misses (whatever their variant);
    hidden files (``.episode_001_large.vtt.swp``) are an editor's, not the user's.
    """
    if EPISODE_FILE_RE.fullmatch(name) or name.startswith("."):
        return None
    folded = unicodedata.normalize("NFKC", name).strip().casefold()
    if "episode" not in folded and ".vtt" not in folded:
        return None
    if name != name.strip():
        return "has leading or trailing whitespace"
    if not name.isascii():
        odd = next(c for c in name if not c.isascii())
        return f"has a non-ASCII character {odd!r} (U+{ord(odd):04X})"
    if EPISODE_FILE_RE.fullmatch(folded):
        return "wrong letter case (names are lower case)"
    loose = _LOOSE_RE.fullmatch(name)
    if loose and loose.group(2) in VARIANTS:
        return "episode id must be exactly 3 ASCII digits"
    if loose:
        return f"unknown variant {loose.group(2)!r} (use large or small)"
    return "looks like a caption file but is not named episode_NNN_{large,small}.vtt"


def _entry_problem(entry: os.DirEntry) -> str | None:
    """Why an entry with an episode's name cannot be read as one (None: a readable file)."""
    if entry.is_file():  # follows symlinks: a link to a file is that file
        return None
    if entry.is_symlink():
        return "is a broken symlink" if not os.path.exists(entry.path) else "is a symlink to a non-file"
    if entry.is_dir():
        return "is a directory"
    return "is not a regular file"


def scan_source(folder: str | os.PathLike[str], variant: str = "large") -> SourceScan:
    """Classify every entry of ``folder``: episodes of ``variant``, or ignored with a reason.

    Raises FileNotFoundError if ``folder`` is not a folder, and SourceIntegrityError if
    two files name the same episode. Near misses are only reported here
    (:meth:`SourceScan.check` refuses them), so ``lexgpt status`` can show them.
    """
    _check_variant(variant)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Lexicap folder {folder} does not exist or is not a folder")
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    wanted = {
        int(m.group(1))
        for e in entries
        if (m := EPISODE_FILE_RE.fullmatch(e.name)) and m.group(2) == variant
    }
    episodes: dict[int, Path] = {}
    ignored: list[IgnoredEntry] = []
    for entry in entries:
        m = EPISODE_FILE_RE.fullmatch(entry.name)
        if m is None:
            why = near_miss_reason(entry.name)
            ignored.append(IgnoredEntry(entry.name, why or "not an episode file", why is not None))
            continue
        episode, its_variant = int(m.group(1)), m.group(2)
        problem = _entry_problem(entry)
        if problem:
            ignored.append(IgnoredEntry(entry.name, problem, near_miss=its_variant == variant))
        elif its_variant != variant:
            note = "" if episode in wanted else f"; episode {episode} has no {variant} file"
            ignored.append(IgnoredEntry(entry.name, f"other variant ({its_variant}){note}"))
        elif episode in episodes:
            raise SourceIntegrityError(
                f"{folder}: two files for episode {episode}: {episodes[episode].name!r} and "
                f"{entry.name!r}; keep one"
            )
        else:
            episodes[episode] = Path(entry.path)
    return SourceScan(folder, variant, sorted(episodes.items()), ignored)


def list_episode_files(folder: str | os.PathLike[str], variant: str = "large") -> list[tuple[int, Path]]:
    """``[(episode_id, path), ...]`` of ``folder``'s ``episode_NNN_{variant}.vtt`` files, by id.

    Raises FileNotFoundError if there are none. Which other entries were ignored and why:
    :func:`scan_source`.
    """
    scan = scan_source(folder, variant)
    if not scan.episodes:
        raise FileNotFoundError(f"no episode_NNN_{variant}.vtt files in {folder}")
    return scan.episodes


def read_episode_bytes(path: str | os.PathLike[str]) -> bytes:
    """An episode file's bytes, read once (size checked first, regular files only): what is
    hashed is what is parsed. UnreadableFileError names the file."""
    return read_regular_file(path, vtt.MAX_FILE_BYTES, "episode file")


def check_distinct_contents(folder: Path, sha256_by_path: Mapping[Path, str]) -> None:
    """SourceIntegrityError naming both files if two episodes hold the same bytes.

    A copied (or symlinked) episode under a second id can put validation text into training.
    """
    first_with: dict[str, Path] = {}
    for path, digest in sha256_by_path.items():
        other = first_with.setdefault(digest, path)
        if other != path:
            raise SourceIntegrityError(
                f"{folder}: {other.name!r} and {path.name!r} have identical contents (a copy of, "
                "or a link to, another episode would put one text under two ids); remove one"
            )


def fingerprint_of(sha256_by_path: Mapping[Path, str], near_misses: list[IgnoredEntry]) -> str:
    """The source fingerprint from per-file hashes: see :func:`source_fingerprint`.

    Ingestion computes it from the bytes it parsed, the observation from the bytes it read;
    both give the same value for the same files.
    """
    h = hashlib.sha256()
    for path in sorted(sha256_by_path):
        h.update(path.name.encode() + b"\0" + sha256_by_path[path].encode() + b"\n")
    digest = h.hexdigest()
    if near_misses:
        listed = "\n".join(f"{e.name}\0{e.reason}" for e in near_misses)
        digest = sha256_bytes(f"{digest}\n{listed}".encode("utf-8", "surrogateescape"))
    return digest


def source_fingerprint(folder: str | os.PathLike[str], variant: str = "large") -> str:
    """SHA-256 over the names and contents of the variant's files, and the near misses.

    Other files (READMEs, the other variant) do not count. A near miss does, so adding
    one makes ``raw_subtitles`` stale and its refresh then reports it; a folder without
    near misses keeps the hash it always had. Each file is read once, with the bounds of
    :func:`read_episode_bytes`; two episodes with the same bytes are refused.
    """
    scan = scan_source(folder, variant)
    hashes = {path: sha256_bytes(read_episode_bytes(path)) for _, path in scan.episodes}
    check_distinct_contents(scan.folder, hashes)
    return fingerprint_of(hashes, scan.near_misses)


def resolve_source(variant: str = "large", folder: str | os.PathLike[str] | None = None) -> Path:
    """The folder of VTT files: ``folder`` > ``paths.lexicap_dir()`` > downloaded data.zip.

    The download is cached in ``paths.cache_dir()`` per URL; extraction goes to a temporary
    folder renamed into place, so an interrupted run never leaves half a dataset.
    """
    _check_variant(variant)
    chosen = Path(folder) if folder is not None else paths.lexicap_dir()
    if chosen is None:
        chosen = _download_and_extract()
    list_episode_files(chosen, variant)  # fail here, with the folder named, not later
    return chosen


def _cache_key(url: str) -> str:
    """Names the cached download after its URL: another URL never reuses it."""
    return sha256_bytes(url.encode("utf-8", "surrogateescape"))[:16]


def _drop(*cached: Path) -> None:
    for path in cached:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _download_and_extract() -> Path:
    """The ``vtt/`` folder of the zip at ``LEXICAP_URL`` (else Lexicap's), cached per URL.

    The download is ``lexicap-<url hash>.zip``; its extraction is named by the URL and the
    zip's content hash, so neither another URL nor a replaced zip reuses an old extraction.
    Whatever fails to extract is dropped, so the next run starts clean.
    """
    cache = paths.cache_dir()
    # Read at call time so tests (and mirrors: ``LEXICAP_URL``) can point it elsewhere.
    url = os.environ.get("LEXICAP_URL") or DATA_ZIP_URL
    key = _cache_key(url)
    zip_path = cache / f"{_EXTRACT_NAME}-{key}.zip"
    if zip_path.is_file() and archive.zip_problem(zip_path):
        zip_path.unlink()  # cached by an older version that did not check: fetch again
    try:
        archive.download(url, zip_path, check=archive.zip_problem)
    except (OSError, ValueError) as err:  # requests' errors are OSErrors too
        reason = str(err)
        reason = reason if len(reason) <= 300 else reason[:300] + "..."
        raise SourceUnavailableError(
            f"could not download the Lexicap transcripts from {url} "
            f"({type(err).__name__}: {reason}). Set LEXICAP_DIR to a folder of "
            "episode_NNN_large.vtt files, or check the network (or LEXICAP_URL)."
        ) from err
    extracted = cache / f"{_EXTRACT_NAME}-{key}-{sha256_file(zip_path)[:16]}"
    for old in cache.glob(f"{_EXTRACT_NAME}-{key}-*"):
        if old != extracted and old.is_dir():  # from a zip this URL no longer gives
            shutil.rmtree(old, ignore_errors=True)
    if not extracted.is_dir():
        try:
            archive.extract_fresh(zip_path, extracted)
        except (*_BROKEN_ARCHIVE, OSError) as err:
            _drop(zip_path, extracted)
            remedy = ("check LEXICAP_URL or set LEXICAP_DIR" if isinstance(err, _BROKEN_ARCHIVE)
                      else f"check the space and permissions of {cache} (LEXGPT_CACHE), or set LEXICAP_DIR")
            raise SourceUnavailableError(
                f"cannot use {zip_path} (downloaded from {url}): {type(err).__name__}: {err}. "
                f"It was removed, so the next run downloads it again; {remedy}."
            ) from err
    vtt_folder = extracted / "vtt"
    if not vtt_folder.is_dir():
        found = sorted(str(PurePosixPath(p.relative_to(extracted))) for p in extracted.iterdir())
        _drop(extracted, zip_path)
        raise SourceUnavailableError(
            f"{zip_path} (downloaded from {url}) has no vtt/ folder (found {found[:10]}). "
            "It was removed, so the next run downloads it again; check LEXICAP_URL or set "
            "LEXICAP_DIR."
        )
    return vtt_folder
