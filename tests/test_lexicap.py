"""lexgpt.data.lexicap and lexgpt.data.archive: listing, fingerprint, download, bounded safe unzip,
source resolution. (Which folder entries are ingested or ignored: test_source_scan.py.)"""

from __future__ import annotations

import io
import os
import shutil
import stat
import threading
import time
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lexgpt.data import archive, lexicap
from lexgpt.data.archive import UnsafeArchiveError, download, safe_extract, zip_problem
from lexgpt.data.lexicap import (
    EPISODE_FILE_RE,
    SourceUnavailableError,
    list_episode_files,
    resolve_source,
    source_fingerprint,
)
from lexgpt.infra import paths
from lexgpt.infra.hashing import sha256_file

FOLDER = Path(__file__).parent / "fixtures" / "vtt" / "lexicap_folder"
REAL = Path(os.environ.get("LEXICAP_DIR", Path(__file__).resolve().parents[1] / "../shared/lexicap/vtt"))


# --- a tiny local web server: the real URL is unreachable from CI ---------------------


class _Server:
    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.short: set[str] = set()  # routes that promise more bytes than they send
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                extra = 1000 if self.path in server.short else 0
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _zip_file(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, link_target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, link_target)
    return path


VTT = b"WEBVTT\n\n00:00.000 --> 00:01.000\n hi\n"


# --- listing and fingerprint -----------------------------------------------------------


def test_episode_file_re():
    assert EPISODE_FILE_RE.fullmatch("episode_001_small.vtt").groups() == ("001", "small")
    for bad in ("episode_1_large.vtt", "episode_0001_large.vtt", "episode_001_medium.vtt", "episode_001_large.vtt.bak",
                "episode_\u0660\u0660\u0661_large.vtt", "episode_\uff10\uff10\uff11_large.vtt"):
        assert EPISODE_FILE_RE.fullmatch(bad) is None


def test_list_episode_files_sorted_and_filtered():
    assert list_episode_files(FOLDER) == [
        (1, FOLDER / "episode_001_large.vtt"),
        (2, FOLDER / "episode_002_large.vtt"),
        (10, FOLDER / "episode_010_large.vtt"),
    ]
    assert list_episode_files(FOLDER, "small") == [(1, FOLDER / "episode_001_small.vtt")]


def test_list_episode_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_episode_files(tmp_path / "nope")
    (tmp_path / "README.txt").write_text("x")
    (tmp_path / "episode_001_small.vtt").write_bytes(VTT)
    with pytest.raises(FileNotFoundError, match=r"no episode_NNN_large\.vtt files"):
        list_episode_files(tmp_path)
    with pytest.raises(ValueError, match="variant"):
        list_episode_files(tmp_path, "medium")


def test_source_fingerprint_tracks_names_and_contents(tmp_path):
    folder = tmp_path / "vtt"
    shutil.copytree(FOLDER, folder)
    base = source_fingerprint(folder)
    assert base == source_fingerprint(FOLDER)

    (folder / "README.txt").write_text("changed, but not an episode")
    (folder / "episode_001_small.vtt").write_bytes(b"other variant changed")
    assert source_fingerprint(folder) == base
    assert source_fingerprint(folder, "small") != source_fingerprint(FOLDER, "small")

    (folder / "episode_003_large.vtt").write_bytes(VTT)
    added = source_fingerprint(folder)
    assert added != base

    (folder / "episode_003_large.vtt").rename(folder / "episode_004_large.vtt")
    renamed = source_fingerprint(folder)
    assert renamed not in (base, added)

    p = folder / "episode_002_large.vtt"
    p.write_bytes(p.read_bytes().replace(b"one", b"One"))
    assert source_fingerprint(folder) not in (base, added, renamed)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Lexicap folder {REAL} absent (set LEXICAP_DIR)")
def test_source_fingerprint_is_fast_on_real_data():
    source_fingerprint(REAL)  # warm the page cache: we time hashing, not the disk
    t0 = time.perf_counter()
    source_fingerprint(REAL)
    assert time.perf_counter() - t0 < 0.5


# --- download -------------------------------------------------------------------------


def test_download_streams_atomically_and_caches(server, tmp_path):
    body = os.urandom(3 << 20)  # several chunks
    server.routes["/data.zip"] = body
    dest = tmp_path / "cache" / "data.zip"
    assert download(server.url + "/data.zip", dest, progress=False) == dest
    assert dest.read_bytes() == body
    assert download(server.url + "/data.zip", dest, progress=True) == dest
    assert server.hits["/data.zip"] == 1
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.zip"]


def test_download_http_error_leaves_nothing(server, tmp_path):
    import requests

    dest = tmp_path / "data.zip"
    with pytest.raises(requests.HTTPError):
        download(server.url + "/missing.zip", dest, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_truncated_leaves_nothing(server, tmp_path):
    server.routes["/short.zip"] = b"x" * 5000
    server.short.add("/short.zip")
    dest = tmp_path / "data.zip"
    with pytest.raises(archive.DownloadError, match=r"/short\.zip (truncated|failed)"):
        download(server.url + "/short.zip", dest, progress=False)
    assert list(tmp_path.iterdir()) == []


# --- safe_extract ---------------------------------------------------------------------


def test_safe_extract_good_zip(tmp_path):
    z = _zip_file(tmp_path / "ok.zip", {"vtt/episode_001_large.vtt": VTT, "vtt/sub/a.txt": b"a", "top.txt": b"t"})
    out = tmp_path / "out"
    written = safe_extract(z, out)
    assert sorted(written) == sorted([out / "vtt/episode_001_large.vtt", out / "vtt/sub/a.txt", out / "top.txt"])
    assert (out / "vtt/episode_001_large.vtt").read_bytes() == VTT


@pytest.mark.parametrize(
    "bad, why",
    [
        ("../evil.txt", "'..'"),
        ("vtt/../../evil.txt", "'..'"),
        ("vtt\\..\\..\\evil.txt", "'..'"),
        ("/etc/evil.txt", "absolute"),
        ("\\evil.txt", "absolute"),
        ("C:/evil.txt", "drive letter"),
        ("c:evil.txt", "drive letter"),
    ],
)
def test_safe_extract_rejects_escaping_names_and_extracts_nothing(tmp_path, bad, why):
    # The good member comes first: it must not be written either.
    z = _zip_file(tmp_path / "bad.zip", {"vtt/good.vtt": VTT, bad: b"pwned"})
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=why) as info:
        safe_extract(z, out)
    assert repr(bad) in str(info.value)
    assert list(out.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_rejects_symlink_members(tmp_path):
    z = _zip_file(tmp_path / "link.zip", {"vtt/good.vtt": VTT}, symlinks={"vtt/passwd": "/etc/passwd"})
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="'vtt/passwd'.*symlink"):
        safe_extract(z, out)
    assert list(out.iterdir()) == []


def test_safe_extract_rejects_paths_through_existing_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(outside)
    z = _zip_file(tmp_path / "through.zip", {"link/evil.txt": b"pwned"})
    with pytest.raises(UnsafeArchiveError, match="outside the target"):
        safe_extract(z, out)
    assert list(outside.iterdir()) == []


# --- resolve_source -------------------------------------------------------------------


def cached_zip(cache: Path, url: str) -> Path:
    """Where the download of ``url`` is cached (the name holds a hash of the URL)."""
    return cache / f"lexicap-{lexicap._cache_key(url)}.zip"


def no_local_copy(monkeypatch, tmp_path):
    """No LEXICAP_DIR, and a home with no shared copy beside it: the zip is the source."""
    monkeypatch.delenv("LEXICAP_DIR", raising=False)
    monkeypatch.delenv("LEXICAP_URL", raising=False)
    monkeypatch.setenv("LEXGPT_HOME", str(tmp_path / "repo"))


def test_shared_copy_beside_the_home_is_the_default_source(tmp_path, monkeypatch):
    no_local_copy(monkeypatch, tmp_path)
    assert paths.lexicap_dir() is None
    shared = tmp_path / "shared" / "lexicap" / "vtt"
    shutil.copytree(FOLDER, shared)
    assert paths.lexicap_dir() == shared
    assert resolve_source() == shared
    monkeypatch.setenv("LEXICAP_DIR", str(FOLDER))  # the variable still wins
    assert resolve_source() == FOLDER.resolve()


def test_resolve_source_prefers_explicit_folder_then_env(tmp_path, monkeypatch):
    other = tmp_path / "other"
    shutil.copytree(FOLDER, other)
    monkeypatch.setenv("LEXICAP_DIR", str(other))
    assert resolve_source(folder=FOLDER) == FOLDER
    assert resolve_source() == other.resolve()
    monkeypatch.setenv("LEXICAP_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        resolve_source()


def test_resolve_source_downloads_and_extracts_once(server, tmp_path, monkeypatch):
    server.routes["/data.zip"] = _zip_bytes(
        {"vtt/episode_001_large.vtt": VTT, "vtt/episode_001_small.vtt": VTT, "README": b"x"}
    )
    monkeypatch.setattr(lexicap, "DATA_ZIP_URL", server.url + "/data.zip")
    no_local_copy(monkeypatch, tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LEXGPT_CACHE", str(cache))

    folder = resolve_source()
    zip_path = cached_zip(cache, server.url + "/data.zip")
    assert folder == cache / f"{zip_path.stem}-{sha256_file(zip_path)[:16]}" / "vtt"
    assert list_episode_files(folder) == [(1, folder / "episode_001_large.vtt")]
    assert resolve_source("small") == folder
    assert server.hits["/data.zip"] == 1
    assert sorted(p.name for p in cache.iterdir()) == sorted([zip_path.name, folder.parent.name])


def test_failed_download_says_what_to_do(server, tmp_path, monkeypatch):
    no_local_copy(monkeypatch, tmp_path)
    monkeypatch.setenv("LEXICAP_URL", server.url + "/nowhere.zip")
    cache = tmp_path / "cache"
    monkeypatch.setenv("LEXGPT_CACHE", str(cache))
    with pytest.raises(SourceUnavailableError, match=r"could not download .*/nowhere\.zip .*404.*Set LEXICAP_DIR"):
        resolve_source()
    assert not cache.exists() or list(cache.iterdir()) == []


def use_mirror(server, monkeypatch, tmp_path, body: bytes) -> tuple[str, Path]:
    """Serve ``body`` as the data.zip mirror named by LEXICAP_URL; return (url, cache folder)."""
    server.routes["/mirror.zip"] = body
    no_local_copy(monkeypatch, tmp_path)
    url = server.url + "/mirror.zip"
    monkeypatch.setenv("LEXICAP_URL", url)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LEXGPT_CACHE", str(cache))
    return url, cache


def test_resolve_source_zip_without_vtt_folder(server, tmp_path, monkeypatch):
    url, cache = use_mirror(server, monkeypatch, tmp_path, _zip_bytes({"other/episode_001_large.vtt": VTT}))
    with pytest.raises(SourceUnavailableError, match="no vtt/ folder") as info:
        resolve_source()
    assert url in str(info.value) and str(cached_zip(cache, url)) in str(info.value)
    assert list(cache.iterdir()) == []  # nothing kept that would fail the same way forever


def test_resolve_source_unsafe_zip_leaves_nothing(server, tmp_path, monkeypatch):
    url, cache = use_mirror(server, monkeypatch, tmp_path, _zip_bytes({"vtt/episode_001_large.vtt": VTT, "../evil": b"x"}))
    with pytest.raises(SourceUnavailableError, match=r"UnsafeArchiveError: unsafe member '\.\./evil'") as info:
        resolve_source()
    assert url in str(info.value) and str(cached_zip(cache, url)) in str(info.value)
    assert list(cache.iterdir()) == []


def test_a_download_that_is_not_a_zip_is_not_cached(server, tmp_path, monkeypatch):
    page = b"<html>Sign in to this Wi-Fi network</html>"
    url, cache = use_mirror(server, monkeypatch, tmp_path, page)
    for attempt in (1, 2):  # the second run asks again instead of failing on a cached page
        with pytest.raises(SourceUnavailableError, match="not a zip file") as info:
            resolve_source()
        assert url in str(info.value) and str(cached_zip(cache, url)) in str(info.value)
        assert "\n" not in str(info.value)
        assert list(cache.iterdir()) == []
        assert server.hits["/mirror.zip"] == attempt
    # A bad file cached by an older version is fetched again, not used.
    server.routes["/mirror.zip"] = _zip_bytes({"vtt/episode_001_large.vtt": VTT})
    cached_zip(cache, url).write_bytes(page)
    assert resolve_source().parent.name.startswith(cached_zip(cache, url).stem)
    assert server.hits["/mirror.zip"] == 3


def test_corrupt_zip_names_url_and_cache_and_is_dropped(server, tmp_path, monkeypatch):
    good = _zip_bytes({"vtt/episode_001_large.vtt": VTT})  # stored, not deflated
    corrupt = good.replace(b" hi\n", b" HI\n")  # the member's CRC no longer matches
    url, cache = use_mirror(server, monkeypatch, tmp_path, corrupt)
    with pytest.raises(SourceUnavailableError, match="BadZipFile: Bad CRC-32") as info:
        resolve_source()
    assert url in str(info.value) and str(cached_zip(cache, url)) in str(info.value)
    assert list(cache.iterdir()) == []


# --- bounds on extraction -----------------------------------------------------------


def _bomb(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("vtt/episode_001_large.vtt", VTT)
        zf.writestr("vtt/zeros.vtt", b"\0" * size)
    return path


def test_extraction_refuses_a_compression_bomb_before_writing(tmp_path):
    z = _bomb(tmp_path / "bomb.zip", 20 << 20)  # 20 MB of zeros deflate to ~20 kB: ratio ~1000
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=r"'vtt/zeros\.vtt'.*ratio \d+ > 200") as info:
        safe_extract(z, out)
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_extraction_caps_the_total_size(tmp_path):
    z = _zip_file(tmp_path / "big.zip", {f"vtt/{i}.vtt": os.urandom(300_000) for i in range(4)})
    with pytest.raises(UnsafeArchiveError, match=r"'vtt/3\.vtt'.*past 1000000 bytes"):
        safe_extract(z, tmp_path / "out", max_total_bytes=1_000_000)
    assert len(safe_extract(z, tmp_path / "ok", max_total_bytes=1_300_000)) == 4


def test_zip_problem():
    assert zip_problem(Path(__file__)).startswith("not a zip file: starts with b'")
