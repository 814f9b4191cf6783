"""Shared fixtures: a small synthetic Lexicap folder and an isolated lexgpt home."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Servers the tests start (dagster, mlflow, and uvicorn which `mlflow models serve` execs)
# are console scripts of this interpreter's environment: find them even in a venv that was
# never activated (CI runs `.venv/bin/python -m pytest`).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
REAL_LEXICAP = Path(os.environ.get("LEXICAP_DIR", REPO.parent / "shared" / "lexicap" / "vtt"))

WORDS = (
    "the a of to and in that is it you I think we what so like this be have do know not "
    "about people there are one just really thing way life time more world mind love "
    "intelligence human machine learning system question beautiful idea consciousness "
    "universe physics program neural network robot science truth meaning, fascinating."
).split()


def fmt(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:06.3f}"


def write_episode(folder: Path, episode: int, n_cues: int = 120, seed: int | None = None) -> Path:
    rng = random.Random(episode if seed is None else seed)
    lines = ["WEBVTT", ""]
    t = 0.0
    for _ in range(n_cues):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12)))
        start, t = t, t + rng.uniform(1.0, 4.0)
        lines += [f"{fmt(start)} --> {fmt(t)}", f" {words.capitalize()}.", ""]
    path = folder / f"episode_{episode:03d}_large.vtt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def small_lexicap(tmp_path: Path) -> Path:
    """Six synthetic episodes; episode 20 is the val episode (id divisible by 20)."""
    folder = tmp_path / "vtt"
    folder.mkdir()
    for episode in (1, 2, 3, 4, 5, 20):
        write_episode(folder, episode)
    return folder


def use_home(monkeypatch, home: Path, vtt: Path, rules: Path | None = None) -> Path:
    """Point every store (data lake, Dagster, MLflow) into ``home`` and read VTT from ``vtt``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "LEXGPT_HOME": str(home),
        "DAGSTER_HOME": str(home / ".dagster"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
        "LEXICAP_DIR": str(vtt),
        "LEXGPT_DATA_LAKE": str(home / "data_lake"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LEXGPT_CONFIG", raising=False)  # run config defaults: the classes' own
    if rules is None:
        monkeypatch.delenv("LEXGPT_CLEANING_RULES", raising=False)
    else:
        monkeypatch.setenv("LEXGPT_CLEANING_RULES", str(rules))
    return home


@pytest.fixture
def lexgpt_home(tmp_path: Path, small_lexicap: Path, monkeypatch) -> Path:
    """An isolated home over the small corpus, with its own editable copy of the rules."""
    home = tmp_path / "home"
    home.mkdir()
    rules = home / "cleaning_rules.toml"
    shutil.copyfile(REPO / "lexgpt" / "data" / "cleaning_rules.toml", rules)
    return use_home(monkeypatch, home, small_lexicap, rules)


# A training config small enough for tests: a few seconds on one CPU core.
TINY_CONFIG = """\
bpe_vocab:
  vocab_size: 300
trained_model:
  preset: test-tiny
  max_steps: 30
  batch_size: 8
  eval_every: 15
  eval_windows: 32
  n_layer: 2
  n_embd: 64
  n_head: 2
  block_size: 64
  max_val_bpc: 10.0
evaluation_samples:
  max_new_tokens: 20
"""


def lexgpt_cli(*args: str, cwd: Path | None = None, check: bool = True, timeout: int = 600):
    """Run the real ``lexgpt`` command in a subprocess (fresh definitions each time)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lexgpt {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def child_env() -> dict[str, str]:
    """The environment of a child Python that imports this checkout, on one thread (the test
    process's threads would spin against it on 2 cores)."""
    env = os.environ.copy()
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True``: SIGTERM, then SIGKILL its group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    try:  # children that ignored SIGTERM (or outlived their parent) go too
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=20)


def trained_looking_model(vocab_size: int, tie: bool = False, block_size: int = 64, n_head: int = 2):
    """A 2-layer, 64-wide GPT with every weight perturbed: zero-initialised projections
    would hide a wrong mapping of o_proj/down_proj in an export."""
    import torch

    from lexgpt.modeling.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=n_head, n_embd=64,
                          tie_embeddings=tie))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()
