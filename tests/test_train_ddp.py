"""Two gloo ranks on the CPU: every decision that starts a collective is taken once.

A rank that checkpoints (``all_gather_object``) while another steps (DDP's all-reduce)
hangs both forever, so the time-based checkpoint, the stop at the budget and Ctrl-C are
decided on rank 0 and shared. The clocks here are fake and per rank (rank 0's races,
rank 1's stands still), so the tests do not depend on machine load.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lexgpt.training.train_loop as train_module
from lexgpt.modeling.checkpoint import CheckpointError
from lexgpt.training.train import train

from conftest import free_port
from test_train import model_config, steps, write_shards

COLLECTIVE_TIMEOUT_S = 30
KEYS = ("step", "train_loss", "grad_norm", "lr_multiplier", "val_loss", "val_bpc")


def _rows(history: list[dict]) -> list[dict]:
    """The in-training rows (not the final full-val score), with the keys that must match."""
    return [{k: r[k] for k in KEYS if k in r} for r in history if "val_fraction" not in r]


def _fake_clock(tick: float) -> SimpleNamespace:
    """A stand-in for the ``time`` module whose perf_counter moves ``tick`` s per call."""
    now = [0.0]

    def perf_counter() -> float:
        now[0] += tick
        return now[0]

    return SimpleNamespace(perf_counter=perf_counter)


def _spawn(worker, *args) -> None:
    mp.spawn(worker, args=(free_port(), *args), nprocs=2, join=True)


def _join(rank: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    # A collective that waits longer than this raises on every rank: a regression fails the
    # test instead of leaving hung processes behind pytest's timeout.
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))


def _clock_skew_worker(rank: int, port: int, data: str, out: str, report: str) -> None:
    _join(rank, port)
    # Rank 0's clock says a checkpoint is due at every step, rank 1's never: a rank that
    # decided on its own clock would enter the checkpoint's collective alone.
    train_module.time = _fake_clock(0.02 if rank == 0 else 0.0)
    saved = []
    real_save = train_module.save_checkpoint
    train_module.save_checkpoint = lambda path, state: (saved.append(state["step"]), real_save(path, state))
    tc = steps(max_steps=6, batch_size=2, grad_accum=1, warmup_steps=1, log_every=1, eval_every=2,
               checkpoint_every=1000, checkpoint_minutes=0.0005, seed=5)  # fmt: skip
    result = train(model_config(), tc, data, out, np.load(Path(data) / "token_chars.npy"), progress=False)
    if rank == 0:
        Path(report).write_text(json.dumps({"history": result.history, "saved": saved, "steps": result.steps}))
    dist.destroy_process_group()


@pytest.mark.timeout(180)  # the bug this guards against is a hang
def test_time_based_checkpoints_on_two_ranks_with_skewed_clocks(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    report = tmp_path / "report.json"
    _spawn(_clock_skew_worker, str(tmp_path / "data"), str(tmp_path / "ddp"), str(report))
    got = json.loads(report.read_text())
    assert got["steps"] == 6
    assert len([s for s in got["saved"] if 0 < s < 6]) >= 3  # several time-based checkpoints mid-run
    assert len([r for r in got["history"] if "val_bpc" in r and "val_fraction" not in r]) == 3  # evals

    # The same global batch in one process: the same losses.
    tc = steps(max_steps=6, batch_size=2, grad_accum=2, warmup_steps=1, log_every=1, eval_every=2,
               checkpoint_every=1000, checkpoint_minutes=60, seed=5)  # fmt: skip
    single = train(model_config(), tc, tmp_path / "data", tmp_path / "one", token_chars, progress=False)
    ddp_rows, one_rows = _rows(got["history"]), _rows(single.history)
    assert [r["step"] for r in ddp_rows] == [r["step"] for r in one_rows]
    for a, b in zip(ddp_rows, one_rows):
        assert a == pytest.approx(b, abs=1e-6)


class Crash(Exception):
    pass


def _crash_at_step(step: int, grad_accum: int):
    """A BatchSampler that raises on every rank when ``step``'s first batch is drawn."""

    class Crashing(train_module.BatchSampler):
        def batch(self, g, device):
            if g >= step * grad_accum * 2:
                raise Crash
            return super().batch(g, device)

    return Crashing


def _resume_worker(rank: int, port: int, data: str, out: str, report: str) -> None:
    _join(rank, port)
    token_chars = np.load(Path(data) / "token_chars.npy")
    mc = model_config(dropout=0.1)  # dropout: each rank's RNG state must come back
    # warmdown=0: the lr does not depend on max_steps, so 3 steps are the first 3 of 6.
    base = dict(batch_size=2, grad_accum=2, warmup_steps=2, warmdown=0.0, log_every=1, eval_every=2,
                checkpoint_every=3, checkpoint_minutes=60, seed=0)  # fmt: skip
    full = train(mc, steps(max_steps=6, **base), data, f"{out}/full", token_chars, progress=False)

    real_sampler = train_module.BatchSampler
    train_module.BatchSampler = _crash_at_step(5, base["grad_accum"])  # killed after the step-3 checkpoint
    try:
        train(mc, steps(max_steps=6, **base), data, f"{out}/killed", token_chars, progress=False)
    except Crash:
        pass
    train_module.BatchSampler = real_sampler
    crashed_at = torch.load(f"{out}/killed/checkpoint.pt", weights_only=True)["step"]
    first_step = {}  # the first step each continuation logs: it resumed, not restarted

    def continue_run(name: str, max_steps: int):
        seen = []
        result = train(mc, steps(max_steps=max_steps, **base), data, f"{out}/{name}", token_chars,
                       on_metrics=lambda step, _: seen.append(step), progress=False)  # fmt: skip
        first_step[name] = seen[0] if seen else None
        return result

    resumed = continue_run("killed", 6)
    continue_run("extended", 3)
    extended = continue_run("extended", 6)
    if rank == 0:
        runs = {"full": full, "resumed": resumed, "extended": extended}
        Path(report).write_text(json.dumps({
            "crashed_at": crashed_at, "first_step": first_step,
            **{name: {"history": r.history, "val_bpc": r.val_bpc, "steps": r.steps} for name, r in runs.items()},
        }))  # fmt: skip
    dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_two_ranks_resume_exactly(tmp_path):
    write_shards(tmp_path / "data")
    report = tmp_path / "report.json"
    _spawn(_resume_worker, str(tmp_path / "data"), str(tmp_path / "ddp"), str(report))
    got = json.loads(report.read_text())
    assert got["crashed_at"] == 3
    assert got["first_step"] == {"killed": 4, "extended": 4}
    full = got["full"]
    assert full["steps"] == 6 and len(_rows(full["history"])) == 6
    for name in ("resumed", "extended"):  # killed mid-run; stopped at max_steps, then given more
        assert _rows(got[name]["history"]) == _rows(full["history"]), name  # exact, not approximate
        assert (got[name]["val_bpc"], got[name]["steps"]) == (full["val_bpc"], 6), name


def _ctrl_c_worker(rank: int, port: int, data: str, out: str, report: str) -> None:
    _join(rank, port)
    drawn = []

    class CtrlCOnRankOne(train_module.BatchSampler):
        def batch(self, g, device):
            step = g // 2  # grad_accum 1, 2 ranks
            drawn.append(step)
            if rank == 1 and step == 3 and drawn.count(3) == 1:
                try:  # Ctrl-C reaches rank 1 only, inside code that swallows it
                    os.kill(os.getpid(), signal.SIGINT)
                except KeyboardInterrupt:
                    pass
            return super().batch(g, device)

    train_module.BatchSampler = CtrlCOnRankOne
    tc = steps(max_steps=1000, batch_size=2, log_every=1, eval_every=1000, checkpoint_every=1000, seed=5)
    try:
        train(model_config(), tc, data, out, np.load(Path(data) / "token_chars.npy"), progress=False)
        outcome = "finished"
    except KeyboardInterrupt:
        outcome = "interrupted"
    Path(f"{report}.{rank}").write_text(json.dumps({"outcome": outcome, "last_step": drawn[-1]}))
    dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    write_shards(tmp_path / "data")
    report = tmp_path / "report"
    _spawn(_ctrl_c_worker, str(tmp_path / "data"), str(tmp_path / "ddp"), str(report))
    ranks = [json.loads(Path(f"{report}.{rank}").read_text()) for rank in (0, 1)]
    assert ranks[0] == ranks[1] == {"outcome": "interrupted", "last_step": 3}


def _split_folder_worker(rank: int, port: int, data: str, out: str, report: str) -> None:
    _join(rank, port)
    tc = steps(max_steps=6, batch_size=2, log_every=1, seed=5)
    try:  # each rank its own folder, as on nodes that do not share the work folder
        train(model_config(), tc, data, f"{out}/rank{rank}", np.load(Path(data) / "token_chars.npy"), progress=False)
        outcome = "trained"
    except CheckpointError as err:
        outcome = str(err)
    Path(f"{report}.{rank}").write_text(outcome)
    dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_ranks_that_resume_at_different_steps_stop_before_training(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    train(model_config(), steps(max_steps=3, batch_size=2, log_every=1, seed=5), tmp_path / "data",
          tmp_path / "ddp" / "rank0", token_chars, progress=False)  # only rank 0's folder has a checkpoint
    report = tmp_path / "report"
    _spawn(_split_folder_worker, str(tmp_path / "data"), str(tmp_path / "ddp"), str(report))
    for rank in (0, 1):
        assert "the ranks resumed at steps 0 to 3" in Path(f"{report}.{rank}").read_text(), rank
