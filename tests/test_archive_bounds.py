"""Downloads and the zip cache with bounds (issue 20, items 4-5): bytes streamed, total
time, a cache keyed by URL and content that a failed extraction never poisons, duplicate
members, and the unpacked total of many small members."""

from __future__ import annotations

import io
from contextlib import nullcontext
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lexgpt.data import archive, lexicap
from lexgpt.data.archive import UnsafeArchiveError, download, safe_extract
from lexgpt.data.lexicap import SourceUnavailableError, resolve_source
from test_lexicap import VTT, _zip_bytes, cached_zip, no_local_copy, server, use_mirror  # noqa: F401


class _Hostile:
    """A server whose bodies never end: one without Content-Length, one that drips."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                if self.path == "/drip":
                    self.send_header("Content-Length", str(1 << 20))  # 14 hours at this pace
                self.end_headers()
                try:
                    while True:
                        if self.path == "/drip":
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.05)
                        else:
                            self.wfile.write(b"x" * (64 << 10))
                except OSError:  # the client gave up: what the test wants
                    pass
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def hostile(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    s = _Hostile()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.mark.timeout(120)
def test_a_body_without_length_stops_at_the_byte_bound(hostile, tmp_path):
    dest = tmp_path / "data.zip"
    with pytest.raises(archive.DownloadError, match=rf"^{hostile.url}/endless sent more than 1048576 bytes; stopped"):
        download(hostile.url + "/endless", dest, progress=False, max_bytes=1 << 20)
    assert list(tmp_path.iterdir()) == []


def test_a_declared_length_over_the_bound_is_not_fetched(server, tmp_path):
    server.routes["/big.zip"] = b"x" * 5000
    with pytest.raises(archive.DownloadError, match="announces 5000 bytes, over the 4000-byte bound; not fetched"):
        download(server.url + "/big.zip", tmp_path / "data.zip", progress=False, max_bytes=4000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(120)
def test_a_dripping_server_hits_the_overall_deadline(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "DOWNLOAD_DEADLINE_S", 0.5)
    no_local_copy(monkeypatch, tmp_path)
    url = hostile.url + "/drip"
    monkeypatch.setenv("LEXICAP_URL", url)
    monkeypatch.setenv("LEXGPT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SourceUnavailableError) as err:
        resolve_source()
    message = str(err.value)
    assert "\n" not in message
    assert f"DownloadError: download of {url} took longer than 0.5 s" in message
    assert "Set LEXICAP_DIR to a folder of episode_NNN_large.vtt files" in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_failed_extraction_drops_the_cache_and_the_next_run_recovers(server, tmp_path, monkeypatch):
    url, cache = use_mirror(server, monkeypatch, tmp_path, _zip_bytes({"vtt/episode_001_large.vtt": VTT}))
    real = archive.safe_extract

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archive, "safe_extract", disk_full)
    with pytest.raises(SourceUnavailableError) as err:
        resolve_source()
    assert "OSError: [Errno 28] No space left on device" in str(err.value) and url in str(err.value)
    assert "It was removed, so the next run downloads it again" in str(err.value)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(archive, "safe_extract", real)
    assert (resolve_source() / "episode_001_large.vtt").read_bytes() == VTT
    assert server.hits["/mirror.zip"] == 2


def test_another_url_never_reuses_an_extraction(server, tmp_path, monkeypatch):
    other = VTT.replace(b" hi", b" other mirror")
    server.routes["/other.zip"] = _zip_bytes({"vtt/episode_001_large.vtt": other})
    _, cache = use_mirror(server, monkeypatch, tmp_path, _zip_bytes({"vtt/episode_001_large.vtt": VTT}))
    first = resolve_source()
    monkeypatch.setenv("LEXICAP_URL", server.url + "/other.zip")
    second = resolve_source()
    assert second != first and (second / "episode_001_large.vtt").read_bytes() == other
    assert (first / "episode_001_large.vtt").read_bytes() == VTT  # each URL keeps its own


def test_a_replaced_zip_is_extracted_again(server, tmp_path, monkeypatch):
    url, cache = use_mirror(server, monkeypatch, tmp_path, _zip_bytes({"vtt/episode_001_large.vtt": VTT}))
    first = resolve_source()
    changed = VTT.replace(b" hi", b" changed")
    cached_zip(cache, url).write_bytes(_zip_bytes({"vtt/episode_001_large.vtt": changed}))
    second = resolve_source()
    assert second != first and not first.exists()
    assert (second / "episode_001_large.vtt").read_bytes() == changed


@pytest.mark.parametrize("twin", ["vtt/episode_001_large.vtt", "vtt/./episode_001_large.vtt"])
def test_two_members_for_one_path_are_refused_naming_both(tmp_path, twin):
    path = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate name") if twin.count("/") == 1 else nullcontext():
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("vtt/episode_001_large.vtt", VTT)
            zf.writestr(twin, b"WEBVTT\n\n00:00.000 --> 00:01.000\n swapped\n")
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(path, tmp_path / "out")
    assert str(err.value) == (f"unsafe member {twin!r} in {path}: the same path as member "
                              "'vtt/episode_001_large.vtt'")
    assert list((tmp_path / "out").iterdir()) == []


def test_many_small_members_are_bounded_as_a_whole(tmp_path):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(100):  # each under the per-member threshold, ~60 kB -> ~70 bytes
            zf.writestr(f"vtt/{i:03d}.vtt", b"0" * 60_000)
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(path, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"unsafe archive {path}: its 100 members inflate 6000000 bytes from ")
    assert "for the whole archive), a zip bomb?" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_real_looking_text_passes_the_whole_archive_ratio(tmp_path):
    words = b" ".join(b"word%d" % (i * 7919 % 5000) for i in range(400_000))  # ~4 MB, deflates ~3:1
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(40):
            zf.writestr(f"vtt/{i:03d}.vtt", words[i * 60_000:(i + 1) * 60_000])
    assert len(safe_extract(io.BytesIO(buf.getvalue()), tmp_path / "out")) == 40


def test_the_cache_key_depends_on_the_url_only():
    assert lexicap._cache_key("https://a/data.zip") == lexicap._cache_key("https://a/data.zip")
    assert lexicap._cache_key("https://a/data.zip") != lexicap._cache_key("https://b/data.zip")
