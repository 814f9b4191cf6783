"""A training run's state: what :mod:`lexgpt.training.train_loop` carries from step to step
(one :class:`RunState` per rank) and what it returns (:class:`TrainResult`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lexgpt.data.dataloader import BatchSampler
from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.training.train_config import TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite numbers; nothing past the last finite
    checkpoint is saved."""


@dataclass
class TrainResult:
    val_loss: float  # the kept weights on the whole val split
    val_bpc: float
    val_fraction: float  # of val targets scored: 1.0
    steps: int
    best_step: int
    tokens_seen: int
    elapsed_s: float
    tokens_per_s: float
    mfu: float | None  # model FLOPs utilisation, where the device's peak is known
    history: list[dict[str, float]]
    weights_path: Path
    config_path: Path
    dtype: str = "float32"  # the autocast dtype of the run, and of its val score


@dataclass
class RunState:
    """One rank's training state, carried from step to step."""

    cfg: TrainConfig
    model_config: GPTConfig
    data_dir: Path
    out_dir: Path
    token_chars: np.ndarray | None
    on_metrics: Callable[[int, dict[str, float]], None] | None
    rank: int
    world: int
    own_group: bool  # we started the process group, so we end it
    device: torch.device
    comm_device: torch.device  # where collectives' tensors live (NCCL's are on the GPU)
    autocast: Any
    dtype: str  # autocast_for's name for it: "bfloat16" or "float32"
    raw_model: GPT
    optimizers: list[torch.optim.Optimizer]
    model: torch.nn.Module | None = None  # what a step calls: raw_model compiled and/or DDP-wrapped
    sampler: BatchSampler | None = None
    flops_per_token: float = 0.0
    peak: float | None = None  # the device's FLOP/s, where known (for MFU)
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    elapsed_before: float = 0.0  # training seconds of the runs this one resumes
    best: dict[str, Any] = field(default_factory=lambda: {"bpc": float("inf"), "step": 0, "state": None})
    # perf_counter clocks; only rank 0's decide anything (_decide)
    t0: float = 0.0
    t_log: float = 0.0
    t_ckpt: float = 0.0
    step_log: int = 0
    step_ckpt: int = 0
    step_at_start: int = 0  # of this session (a resumed run starts past 0)
    tokens_timed: int = 0  # training throughput, evals and checkpoints excluded
    seconds_timed: float = 0.0
    tok_s: float = 0.0

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum * self.model_config.block_size * self.world

    def start_clocks(self, now: float) -> None:
        """``now``: the loop's ``time.perf_counter()`` (the loop owns the clock; tests fake it)."""
        self.t0 = self.t_log = self.t_ckpt = now
        self.step_log = self.step_ckpt = self.step_at_start = self.step

    def progress(self, elapsed: float) -> float:
        """The fraction of the budget spent: of the steps or of the time, whichever is further."""
        budget_s = self.cfg.max_minutes * 60 if self.cfg.max_minutes else None
        return max(self.step / self.cfg.max_steps if self.cfg.max_steps else 0.0,
                   elapsed / budget_s if budget_s else 0.0)  # fmt: skip

    def emit(self, metrics: dict[str, float]) -> None:
        self.history.append({"step": float(self.step), **metrics})
        if self.on_metrics is not None:
            self.on_metrics(self.step, metrics)
