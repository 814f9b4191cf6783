"""Training killed with SIGKILL mid-run resumes from its last checkpoint, loss for loss."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import child_env

TRAIN_ARGS = [
    "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
    "--batch-size", "4", "--max-steps", "400", "--warmup-steps", "10", "--log-every", "10",
    "--eval-every", "100", "--eval-windows", "32", "--checkpoint-every", "40", "--checkpoint-minutes", "1000",
    "--max-minutes", "0", "--no-compile", "--no-progress",
]


def _tiny_shards(folder: Path, vocab_size: int = 256) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rng.integers(0, vocab_size, 40_000).astype("<u2").tofile(folder / "train.bin")
    rng.integers(0, vocab_size, 4_000).astype("<u2").tofile(folder / "val.bin")
    (folder / "manifest.json").write_text(json.dumps({"vocab_size": vocab_size}))
    return folder


def _train_cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lexgpt.training.train", "--data", str(data), "--out", str(out), *TRAIN_ARGS]


def _history(out: Path) -> list[dict]:
    import torch

    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["history"]


def test_training_killed_mid_run_resumes(tmp_path: Path):
    data = _tiny_shards(tmp_path / "shards")
    out = tmp_path / "run"
    ckpt = out / "checkpoint.pt"
    proc = subprocess.Popen(_train_cmd(data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(), text=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert ckpt.exists(), f"no checkpoint (rc={proc.poll()})"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (out / "model.pt").exists()
    killed_at = int(max(row["step"] for row in _history(out)))
    assert 0 < killed_at < 400

    resumed = subprocess.run(_train_cmd(data, out), capture_output=True, text=True, env=child_env(),
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first = int(resumed.stderr.split("from step ")[1].split()[0])
    assert first >= 40 and first % 40 == 0, resumed.stderr[-2000:]  # a checkpoint step, not 0
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 400
    assert (out / "model.pt").exists()
    history = _history(out)
    steps = [row["step"] for row in history if "train_loss" in row]
    assert steps == sorted(set(steps)), "a step was logged twice: the resume replayed old steps"
    assert steps[-1] == 400 and steps[0] == 10

    # The killed-and-resumed run is the uninterrupted run, loss for loss (CPU, same seed).
    straight_out = tmp_path / "straight"
    straight = subprocess.run(_train_cmd(data, straight_out), capture_output=True, text=True,
                              env=child_env(), timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]
    expected = _history(straight_out)
    keys = ("train_loss", "val_loss", "lr")
    got = [{k: r[k] for k in keys if k in r} | {"step": r["step"]} for r in history]
    want = [{k: r[k] for k in keys if k in r} | {"step": r["step"]} for r in expected]
    assert got == want
