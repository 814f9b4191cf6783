"""Where the Lexicap transcripts come from: a local folder, or Karpathy's data.zip.

``resolve_source`` picks, in order: an explicit folder, ``paths.lexicap_dir()``
(``$LEXICAP_DIR``, else a shared copy beside the repo), or the official zip downloaded
once into ``paths.cache_dir()`` and extracted there.

>>> EPISODE_FILE_RE.fullmatch("episode_042_large.vtt").groups()
('042', 'large')
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from lexgpt import paths
from lexgpt.atomic import atomic_path
from lexgpt.hashing import sha256_files

DATA_ZIP_URL = "https://karpathy.ai/lexicap/data.zip"
EPISODE_FILE_RE = re.compile(r"episode_(\d{3})_(large|small)\.vtt")
VARIANTS = ("large", "small")

_ZIP_NAME = "lexicap-data.zip"
_EXTRACT_NAME = "lexicap"
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


class UnsafeArchiveError(ValueError):
    """A zip member would be written outside the target folder (or is a symlink)."""


class SourceUnavailableError(RuntimeError):
    """No local folder of VTT files is configured and data.zip could not be downloaded."""


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def list_episode_files(folder: str | os.PathLike[str], variant: str = "large") -> list[tuple[int, Path]]:
    """``[(episode_id, path), ...]`` for ``episode_NNN_{variant}.vtt`` files, sorted by id.

    Other files (READMEs, the other variant, near-miss names) are ignored.
    """
    _check_variant(variant)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Lexicap folder {folder} does not exist or is not a folder")
    found = []
    for entry in os.scandir(folder):
        m = EPISODE_FILE_RE.fullmatch(entry.name)
        if m and m.group(2) == variant and entry.is_file():
            found.append((int(m.group(1)), Path(entry.path)))
    if not found:
        raise FileNotFoundError(f"no episode_NNN_{variant}.vtt files in {folder}")
    found.sort()
    return found


def source_fingerprint(folder: str | os.PathLike[str], variant: str = "large") -> str:
    """SHA-256 over the names and contents of the variant's files (other files don't count)."""
    return sha256_files(p for _, p in list_episode_files(folder, variant))


def download(url: str, dest: str | os.PathLike[str], progress: bool = True) -> Path:
    """Stream ``url`` to ``dest`` atomically; skip if ``dest`` already exists.

    A short read (fewer bytes than Content-Length) raises and leaves ``dest`` absent.
    """
    import requests
    from tqdm.auto import tqdm

    dest = Path(dest)
    if dest.is_file():
        return dest
    with requests.get(url, stream=True, timeout=(10, 60)) as resp:
        resp.raise_for_status()
        # Content-Length counts encoded bytes; only trust it when nothing re-encodes the body.
        declared = resp.headers.get("Content-Length")
        total = int(declared) if declared and not resp.headers.get("Content-Encoding") else None
        got = 0
        with atomic_path(dest) as tmp, open(tmp, "wb") as fh, tqdm(
            total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            for chunk in resp.iter_content(chunk_size=1 << 20):
                fh.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
            if total is not None and got != total:
                raise OSError(f"download of {url} truncated: got {got} of {total} bytes")
    return dest


def _unsafe_reason(info: zipfile.ZipInfo, root: Path) -> str | None:
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symlink"
    if "\0" in name:
        return "has a NUL byte in its name"
    if name.startswith(("/", "\\")):
        return "has an absolute path"
    if _DRIVE_RE.match(name):
        return "has a drive letter"
    if ".." in re.split(r"[\\/]", name):
        return "has a '..' component"
    if not (root / name).resolve().is_relative_to(root):
        return "resolves outside the target folder"
    return None


def safe_extract(zip_path: str | os.PathLike[str], target: str | os.PathLike[str]) -> list[Path]:
    """Extract every member of ``zip_path`` under ``target``; return the files written.

    All members are checked first: if any is absolute, has a drive letter or ``..``,
    is a symlink, or resolves outside ``target``, UnsafeArchiveError names it and
    nothing is extracted.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        members = zf.infolist()
        for info in members:
            why = _unsafe_reason(info, root)
            if why:
                raise UnsafeArchiveError(f"unsafe member {info.filename!r} in {zip_path}: {why}")
        written = []
        for info in members:
            out = Path(zf.extract(info, root))
            if not info.is_dir():
                written.append(out)
    return written


def resolve_source(variant: str = "large", folder: str | os.PathLike[str] | None = None) -> Path:
    """The folder of VTT files: ``folder`` > ``paths.lexicap_dir()`` > downloaded data.zip.

    The download is cached in ``paths.cache_dir()``; extraction goes to a temporary
    folder renamed into place, so an interrupted run never leaves half a dataset.
    """
    _check_variant(variant)
    chosen = Path(folder) if folder is not None else paths.lexicap_dir()
    if chosen is None:
        chosen = _download_and_extract()
    list_episode_files(chosen, variant)  # fail here, with the folder named, not later
    return chosen


def _download_and_extract() -> Path:
    cache = paths.cache_dir()
    extracted = cache / _EXTRACT_NAME
    if not extracted.is_dir():
        # Read at call time so tests (and mirrors: ``LEXICAP_URL``) can point it elsewhere.
        url = os.environ.get("LEXICAP_URL") or DATA_ZIP_URL
        try:
            zip_path = download(url, cache / _ZIP_NAME)
        except OSError as err:  # requests' errors are OSErrors too
            reason = str(err)
            reason = reason if len(reason) <= 300 else reason[:300] + "..."
            raise SourceUnavailableError(
                f"could not download the Lexicap transcripts from {url} "
                f"({type(err).__name__}: {reason}). Set LEXICAP_DIR to a folder of "
                "episode_NNN_large.vtt files, or check the network."
            ) from err
        tmp = Path(tempfile.mkdtemp(prefix=f".{_EXTRACT_NAME}.", dir=cache))
        try:
            safe_extract(zip_path, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.replace(tmp, extracted)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not extracted.is_dir():  # else a concurrent run won the rename: use its copy
                raise
    vtt = extracted / "vtt"
    if not vtt.is_dir():
        found = sorted(str(PurePosixPath(p.relative_to(extracted))) for p in extracted.iterdir())
        raise FileNotFoundError(f"{DATA_ZIP_URL} has no vtt/ folder (found {found[:10]})")
    return vtt
