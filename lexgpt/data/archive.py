"""Fetch a zip and unpack it safely: atomic download, zip-slip refusal, bounded size.

``download`` streams a URL into a file atomically (a short read leaves nothing) and can
check the result before it is kept, so a bad response (an HTML error page, a captive
portal) is never cached. ``safe_extract`` refuses members that would land outside the
target folder (or share a path with another member) and bounds what it writes:
``MAX_TOTAL_BYTES`` in all and ``MAX_RATIO`` uncompressed bytes per compressed byte, per
member and for the whole archive (a zip bomb inflates 2.6 MB into gigabytes). The bounds are checked against the sizes the zip declares before anything
is written, and counted again while writing (``zipfile`` already stops a member at its
declared size; the count does not rely on that).

>>> import io, zipfile
>>> buf = io.BytesIO()
>>> with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
...     zf.writestr("bomb.txt", b"0" * 1_000_000)
>>> _ = buf.seek(0)
>>> safe_extract(buf, "/nonexistent", max_ratio=100)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lexgpt.data.archive.UnsafeArchiveError: unsafe member 'bomb.txt' in <zip>: inflates 1000000 bytes from ... > 100), a zip bomb?
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lexgpt.infra.atomic import atomic_path

# Lexicap's data.zip holds ~120 MB of captions that deflate ~4:1. Text rarely deflates
# beyond 20:1; a zip that does is a bomb or not what we expect.
MAX_TOTAL_BYTES = 2 << 30
MAX_RATIO = 200  # per member of 64 KiB or more, and for the whole archive
MAX_DOWNLOAD_BYTES = 1 << 30  # the zip itself is ~30 MB
DOWNLOAD_DEADLINE_S = 900.0  # ~40 kB/s for the real zip; a stalled mirror fails, not hangs
_RATIO_MIN_BYTES = 1 << 16  # tiny members may compress absurdly well (b"0" * 1000): fine
_ARCHIVE_RATIO_MIN_BYTES = 1 << 20  # the same, for a whole archive of tiny members
_CHUNK = 1 << 20
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


class DownloadError(ValueError):
    """A download was stopped: past its byte bound or deadline, stalled, or cut short.

    Not an OSError, so the atomic writer passes the message through as it is.
    """


class UnsafeArchiveError(ValueError):
    """A zip member would escape the target folder, is a symlink, or inflates past a bound."""


def download(
    url: str,
    dest: str | os.PathLike[str],
    progress: bool = True,
    check: Callable[[Path], str | None] | None = None,
    *,
    max_bytes: int | None = None,
    deadline_s: float | None = None,
) -> Path:
    """Stream ``url`` to ``dest`` atomically; skip if ``dest`` already exists.

    A short read (fewer bytes than Content-Length) raises DownloadError and leaves ``dest``
    absent, and so does a body past ``max_bytes`` (default ``MAX_DOWNLOAD_BYTES``, counted as it streams,
    whatever the headers say) or a download still running after ``deadline_s`` seconds
    (default ``DOWNLOAD_DEADLINE_S``, in all: a server that sends a byte now and then never
    trips the per-read timeout). ``check(tmp_path)`` returns None if the downloaded file is
    good, else the reason it is not; then ``ValueError`` names the URL and ``dest``, and
    nothing is kept.
    """
    import requests
    from tqdm.auto import tqdm

    max_bytes = MAX_DOWNLOAD_BYTES if max_bytes is None else max_bytes
    deadline_s = DOWNLOAD_DEADLINE_S if deadline_s is None else deadline_s
    dest = Path(dest)
    if dest.is_file():
        return dest
    started = time.monotonic()
    with requests.get(url, stream=True, timeout=(10, min(60.0, deadline_s))) as resp:
        resp.raise_for_status()
        # Content-Length counts encoded bytes; only trust it when nothing re-encodes the body.
        declared = resp.headers.get("Content-Length")
        total = int(declared) if declared and not resp.headers.get("Content-Encoding") else None
        if total is not None and total > max_bytes:
            raise DownloadError(f"{url} announces {total} bytes, over the {max_bytes}-byte bound; not fetched")
        got = 0
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as fh, tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                while chunk := _read_some(resp, url):
                    got += len(chunk)
                    if got > max_bytes:
                        raise DownloadError(f"{url} sent more than {max_bytes} bytes; stopped, nothing cached")
                    if time.monotonic() - started > deadline_s:
                        raise DownloadError(f"download of {url} took longer than {deadline_s:g} s "
                                           f"({got} bytes so far); stopped, nothing cached")
                    fh.write(chunk)
                    bar.update(len(chunk))
            if total is not None and got != total:
                raise DownloadError(f"download of {url} truncated: got {got} of {total} bytes")
            why = check(tmp) if check else None
            if why:
                raise ValueError(f"{url} did not return what was expected ({why}); not cached at {dest}")
    return dest


def _read_some(resp, url: str) -> bytes:
    """The next bytes of the body, from one socket read: ``read1`` returns what arrived, so
    the caller's deadline is checked at least once per read timeout (``iter_content`` waits
    for a full chunk, however slowly it trickles in)."""
    import urllib3

    try:
        return resp.raw.read1(_CHUNK, decode_content=True)
    except urllib3.exceptions.ReadTimeoutError as err:
        raise DownloadError(f"download of {url} stalled: {err}") from err
    except urllib3.exceptions.HTTPError as err:  # a connection cut mid-body, a bad encoding
        raise DownloadError(f"download of {url} failed: {err}") from err


def zip_problem(path: Path) -> str | None:
    """None if ``path`` is a zip file, else why not (a ``check`` for :func:`download`)."""
    if zipfile.is_zipfile(path):
        return None
    with open(path, "rb") as fh:
        head = fh.read(60)
    return f"not a zip file: starts with {head!r}"


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


def _too_inflated(size: int, compressed: int, max_ratio: float) -> str | None:
    if size >= _RATIO_MIN_BYTES and size > max_ratio * max(compressed, 1):
        ratio = size / max(compressed, 1)
        return f"inflates {size} bytes from {compressed} (ratio {ratio:.0f} > {max_ratio:g}), a zip bomb?"
    return None


def _check_declared_sizes(members: list[zipfile.ZipInfo], label: str, max_total_bytes: int,
                          max_ratio: float) -> None:
    """Refuse, before writing, a member or a whole archive that declares too much.

    The whole-archive ratio catches many small members (each under the per-member
    threshold) that together inflate a few MB into gigabytes.
    """
    declared = packed = 0
    for info in members:
        declared += info.file_size
        packed += info.compress_size
        why = _too_inflated(info.file_size, info.compress_size, max_ratio)
        if why is None and declared > max_total_bytes:
            why = f"brings the total past {max_total_bytes} bytes"
        if why:
            raise UnsafeArchiveError(f"unsafe member {info.filename!r} in {label}: {why}")
    if declared >= _ARCHIVE_RATIO_MIN_BYTES and declared > max_ratio * max(packed, 1):
        raise UnsafeArchiveError(
            f"unsafe archive {label}: its {len(members)} members inflate {declared} bytes from "
            f"{packed} (ratio {declared / max(packed, 1):.0f} > {max_ratio:g} for the whole archive), a zip bomb?"
        )


def safe_extract(
    zip_file: str | os.PathLike[str] | IO[bytes],
    target: str | os.PathLike[str],
    *,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
) -> list[Path]:
    """Extract every member of ``zip_file`` under ``target``; return the files written.

    All members are checked first: if any is absolute, has a drive letter or ``..``, is a
    symlink, resolves outside ``target`` or to the path of another member, or declares
    sizes past the bounds (per member or for the whole archive),
    UnsafeArchiveError names it and nothing is extracted. While writing, a member that
    inflates past its declared size or the total bound also raises (what was written
    stays in ``target``: extract into a temporary folder, as ``resolve_source`` does).
    """
    label = os.fspath(zip_file) if isinstance(zip_file, (str, os.PathLike)) else "<zip>"
    with zipfile.ZipFile(zip_file) as zf:
        members = zf.infolist()
        _check_declared_sizes(members, label, max_total_bytes, max_ratio)
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        first_at: dict[Path, str] = {}
        for info in members:
            why = _unsafe_reason(info, root)
            if why:
                raise UnsafeArchiveError(f"unsafe member {info.filename!r} in {label}: {why}")
            # Two members for one path: which one wins would depend on the order of writing.
            where = (root / info.filename).resolve()
            if where in first_at:
                raise UnsafeArchiveError(
                    f"unsafe member {info.filename!r} in {label}: the same path as member {first_at[where]!r}"
                )
            first_at[where] = info.filename
        written, total = [], 0
        for info in members:
            out = root / info.filename
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                size = 0
                while chunk := src.read(_CHUNK):
                    size += len(chunk)
                    total += len(chunk)
                    if size > info.file_size or total > max_total_bytes:
                        raise UnsafeArchiveError(
                            f"unsafe member {info.filename!r} in {label}: inflates past its "
                            f"declared {info.file_size} bytes or the {max_total_bytes}-byte total"
                        )
                    dst.write(chunk)
            written.append(out)
    return written


def extract_fresh(zip_path: Path, target: Path, **bounds) -> Path:
    """Extract into a temporary sibling of ``target``, then rename it into place.

    An interrupted or refused extraction leaves no half folder. If another process won
    the rename, its copy is used.
    """
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        safe_extract(zip_path, tmp, **bounds)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    return target
