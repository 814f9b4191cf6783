"""Surviving faults: killed writers, full disks, read-only folders (killed training:
test_training_killed.py).

Everything here uses real processes and real OS errors where the machine allows it:
writers are killed with SIGKILL mid-write, "disk full" is the kernel's ENOSPC from
``/dev/full``, "permission denied" is a read-only folder (written to by an unprivileged
user when the tests run as root, since root ignores file modes).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from lexgpt.infra import atomic
from lexgpt.infra.atomic import LakeWriteError

from conftest import child_env, free_port, lexgpt_cli

REPO = Path(__file__).resolve().parents[1]
KINDS = ["parquet", "json", "bytes", "torch"]
FILENAMES = {"parquet": "table.parquet", "json": "doc.json", "bytes": "train.bin", "torch": "checkpoint.pt"}

# --------------------------------------------------------------------------------------
# Versioned artifacts: version ``i`` of each kind is a deterministic, large payload that
# records ``i`` inside itself, so a reader can tell which version it got and check every
# byte of it. Shared (as source) by the test process and the child writer process.
# --------------------------------------------------------------------------------------

ARTIFACTS_SRC = textwrap.dedent(
    '''
    import json
    import numpy as np

    def payload(kind, i):
        rng = np.random.default_rng([7, i])
        if kind == "bytes":
            return i.to_bytes(8, "little") + rng.bytes(24 * 2**20)
        if kind == "parquet":
            import pyarrow as pa
            n = 1_000_000
            return pa.table({"version": np.full(n, i, dtype=np.int64),
                             "x": rng.integers(0, 2**62, n, dtype=np.int64),
                             "y": rng.random(n)})
        if kind == "json":
            return {"version": i, "values": rng.integers(0, 10**9, 200_000).tolist()}
        if kind == "torch":
            import torch
            g = torch.Generator().manual_seed(1000 + i)
            return {"version": torch.tensor(i), "w": torch.randn(4 * 2**20, generator=g)}
        raise ValueError(kind)

    def write(kind, dest, i):
        from lexgpt.infra import atomic
        obj = payload(kind, i)
        if kind == "bytes":
            atomic.write_bytes(dest, obj)
        elif kind == "parquet":
            atomic.write_parquet(dest, obj)
        elif kind == "json":
            atomic.write_json(dest, obj)
        else:
            atomic.write_torch(dest, obj)

    def read_version(kind, dest):
        """Read ``dest`` back completely; return its version after checking every value."""
        if kind == "bytes":
            data = open(dest, "rb").read()
            i = int.from_bytes(data[:8], "little")
            assert data == payload(kind, i), "bytes differ from the version they claim"
            return i
        if kind == "parquet":
            import pyarrow.parquet as pq
            table = pq.read_table(dest)
            i = int(table["version"][0].as_py())
            assert table.equals(payload(kind, i)), "parquet differs from the version it claims"
            return i
        if kind == "json":
            doc = json.loads(open(dest, encoding="utf-8").read())
            assert doc == payload(kind, doc["version"]), "json differs from the version it claims"
            return doc["version"]
        import torch
        obj = torch.load(dest, map_location="cpu", weights_only=True)
        i = int(obj["version"])
        assert torch.equal(obj["w"], payload(kind, i)["w"]), "checkpoint differs from its version"
        return i
    '''
)

_ns: dict = {}
exec(compile(ARTIFACTS_SRC, "<artifacts>", "exec"), _ns)
write_version, read_version = _ns["write"], _ns["read_version"]

CHILD_SRC = ARTIFACTS_SRC + textwrap.dedent(
    '''
    import itertools, sys
    kind, dest = sys.argv[1], sys.argv[2]
    for i in itertools.count(1):
        write(kind, dest, i)
        print(i, flush=True)
    '''
)


def _temp_files(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.tmp"))


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_mid_write_keeps_previous_version(tmp_path: Path, kind: str):
    dest = tmp_path / "lake" / FILENAMES[kind]
    write_version(kind, dest, 0)
    assert read_version(kind, dest) == 0

    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_SRC, kind, str(dest)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
    )
    done: list[int] = []
    reader = threading.Thread(target=lambda: done.extend(int(line) for line in proc.stdout), daemon=True)
    reader.start()
    try:
        # Let one full overwrite land first, so "previous" is a version the child wrote...
        deadline = time.monotonic() + 90
        while not done and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done, f"child wrote nothing (rc={proc.poll()}): {proc.stderr.read() if proc.poll() is not None else ''}"
        # ...then kill it while the next version is half written into its temp file.
        killed_mid_write = False
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if _temp_files(dest.parent, dest.name):
                proc.send_signal(signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.0005)
        assert killed_mid_write, "never saw the writer's temp file"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    last = done[-1]
    # The destination is the last complete version (or the one whose rename had just
    # happened when the signal landed, before the child could report it) -- never a mix.
    assert read_version(kind, dest) in (last, last + 1)
    # Whatever the kill left behind is a hidden temp file, not something that shadows the
    # artifact; the next write succeeds and replaces the destination.
    assert [p.name for p in dest.parent.iterdir() if not p.name.startswith(".")] == [dest.name]
    write_version(kind, dest, 99)
    assert read_version(kind, dest) == 99
    # The killed writer's PID is gone, so its temp file went at once with that write.
    assert _temp_files(dest.parent, dest.name) == []


def test_next_write_cleans_stray_temp_file(tmp_path: Path):
    dest = tmp_path / "lake" / "doc.json"
    atomic.write_json(dest, {"v": 1})
    stray = dest.parent / f".{dest.name}.deadbeef.tmp"  # what a SIGKILLed writer leaves
    stray.write_text('{"v": ')
    os.utime(stray, (time.time() - 3600, time.time() - 3600))
    young = dest.parent / f".{dest.name}.cafebabe.tmp"  # may be a writer still running
    young.write_text('{"v": ')
    atomic.write_json(dest, {"v": 2})
    assert not stray.exists()
    assert young.exists()


def test_temp_file_of_a_dead_writer_goes_at_once(tmp_path: Path):
    """A temp file names its writer's PID: gone PID -> removed now, live PID -> kept."""
    dest = tmp_path / "lake" / "doc.json"
    atomic.write_json(dest, {"v": 1})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        orphan = dest.parent / f".{dest.name}.{dead.pid}.x1y2.tmp"  # fresh, but its writer is dead
        orphan.write_text('{"v": ')
        running = dest.parent / f".{dest.name}.{live.pid}.x1y2.tmp"
        running.write_text('{"v": ')
        atomic.write_json(dest, {"v": 2})
        assert not orphan.exists()
        assert running.exists()
    finally:
        live.kill()
        live.wait()


# --------------------------------------------------------------------------------------
# Disk full and permission denied: a LakeWriteError that names the path and the cause.
# --------------------------------------------------------------------------------------

SMALL_WRITERS_SRC = textwrap.dedent(
    '''
    def small_write(kind, dest, value):
        from lexgpt.infra import atomic
        if kind == "bytes":
            atomic.write_bytes(dest, bytes([value]) * 100_000)
        elif kind == "parquet":
            import pyarrow as pa
            atomic.write_parquet(dest, pa.table({"v": [value] * 100_000}))
        elif kind == "json":
            atomic.write_json(dest, {"v": [value] * 100_000})
        else:
            import torch
            atomic.write_torch(dest, {"v": torch.full((100_000,), value)})
    '''
)
exec(compile(SMALL_WRITERS_SRC, "<small-writers>", "exec"), _ns)
small_write = _ns["small_write"]


def _assert_clean_error(err: LakeWriteError, dest: Path, why: str) -> None:
    message = str(err)
    assert str(dest) in message, message
    assert why in message, message
    assert "\n" not in message.strip() and "Traceback" not in message and "enforce fail" not in message


@pytest.fixture
def dev_full():
    path = Path("/dev/full")
    if not (path.exists() and stat.S_ISCHR(path.stat().st_mode)):
        pytest.skip("/dev/full is not a character device here")
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_disk_full_raises_lake_write_error(tmp_path: Path, kind: str, dev_full: Path, monkeypatch):
    """The temp file is made a link to /dev/full: the real writer gets the kernel's ENOSPC."""
    dest = tmp_path / "lake" / FILENAMES[kind]
    small_write(kind, dest, 1)
    before = dest.read_bytes()
    real_mkstemp = atomic.tempfile.mkstemp

    def mkstemp_on_full_disk(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        os.unlink(name)
        os.symlink(dev_full, name)
        return os.open(os.devnull, os.O_RDONLY), name

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp_on_full_disk)
    with pytest.raises(LakeWriteError) as info:
        small_write(kind, dest, 2)
    assert info.value.errno == errno.ENOSPC
    _assert_clean_error(info.value, dest, "disk is full")
    assert dest.read_bytes() == before
    assert _temp_files(dest.parent, dest.name) == []
    assert dev_full.exists() and stat.S_ISCHR(dev_full.stat().st_mode)


@pytest.mark.parametrize("code, why", [(errno.ENOSPC, "disk is full"), (errno.EACCES, "permission denied"),
                                       (errno.EROFS, "permission denied")])
@pytest.mark.parametrize("kind", KINDS)
def test_failed_rename_raises_lake_write_error(tmp_path: Path, kind: str, code: int, why: str, monkeypatch):
    dest = tmp_path / "lake" / FILENAMES[kind]
    small_write(kind, dest, 1)
    before = dest.read_bytes()

    def failing_replace(src, dst):
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(LakeWriteError) as info:
        small_write(kind, dest, 2)
    assert info.value.errno == code
    _assert_clean_error(info.value, dest, why)
    assert dest.read_bytes() == before
    assert _temp_files(dest.parent, dest.name) == []


def test_missing_parent_permission_error_on_mkdir(tmp_path: Path, monkeypatch):
    """The lake folder cannot even be created: still a LakeWriteError naming the file."""
    dest = tmp_path / "lake" / "new" / "corpus.parquet"

    def no_mkdir(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", no_mkdir)
    with pytest.raises(LakeWriteError) as info:
        atomic.write_json(dest, {"a": 1})
    _assert_clean_error(info.value, dest, "permission denied")


def _modes_are_enforced(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"")
    except PermissionError:
        return True
    probe.unlink()
    return False  # root (or CAP_DAC_OVERRIDE): file modes do not stop writes


@pytest.mark.parametrize("kind", KINDS)
def test_read_only_folder_raises_lake_write_error(tmp_path: Path, kind: str, monkeypatch):
    """chmod 0o555 on the folder; as root (modes ignored) the kernel's EACCES is simulated."""
    folder = tmp_path / "lake"
    dest = folder / FILENAMES[kind]
    small_write(kind, dest, 1)
    before = dest.read_bytes()
    folder.chmod(0o555)
    try:
        if not _modes_are_enforced(folder):
            def mkstemp_denied(*args, dir=None, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))

            monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp_denied)
        with pytest.raises(LakeWriteError) as info:
            small_write(kind, dest, 2)
        assert info.value.errno == errno.EACCES
        _assert_clean_error(info.value, dest, "permission denied")
        assert dest.read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == [dest.name]  # no temp file left behind
    finally:
        folder.chmod(0o755)


DISK_FULL_CLI_SRC = textwrap.dedent(
    '''
    import os, sys
    import lexgpt.infra.atomic as atomic

    real_mkstemp = atomic.tempfile.mkstemp

    def mkstemp_on_full_disk(*args, **kwargs):  # every lake write hits the kernel's ENOSPC
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return os.open(os.devnull, os.O_RDONLY), name

    atomic.tempfile.mkstemp = mkstemp_on_full_disk
    from pipelines.cli import main
    sys.exit(main(sys.argv[1:]))
    '''
)


def test_cli_refresh_on_full_disk_says_so(lexgpt_home: Path, dev_full: Path):
    """`lexgpt refresh` on a full disk: exit 1, one line naming the file and the cause."""
    result = subprocess.run(
        [sys.executable, "-c", DISK_FULL_CLI_SRC, "refresh", "--only", "raw_subtitles"],
        cwd=REPO, capture_output=True, text=True, env=child_env(), timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    dest = lexgpt_home / "data_lake" / "raw_subtitles" / "cues.parquet"
    assert last.startswith("refresh stopped: raw_subtitles failed:"), last
    assert f"cannot write {dest}: the disk is full" in last, last
    assert not dest.exists()
    assert not dest.parent.exists() or _temp_files(dest.parent, dest.name) == []


def test_cli_refresh_without_any_source_says_what_to_do(lexgpt_home: Path, tmp_path: Path, monkeypatch):
    """No LEXICAP_DIR, no shared copy, no network: one line that names the URL and the fix."""
    monkeypatch.delenv("LEXICAP_DIR")
    monkeypatch.setenv("LEXICAP_URL", f"http://127.0.0.1:{free_port()}/data.zip")  # nothing listens
    monkeypatch.setenv("LEXGPT_CACHE", str(tmp_path / "cache"))
    result = lexgpt_cli("refresh", check=False, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("refresh stopped: lexicap_vtt failed: could not download the Lexicap transcripts"), last
    assert "Set LEXICAP_DIR" in last, last
    assert not (lexgpt_home / "data_lake" / "raw_subtitles").exists()
