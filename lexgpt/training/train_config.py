"""What a training run is asked to do: ``TrainConfig``, checked on construction, and the
per-preset recipes (``RECIPES``). ``lexgpt.training.train`` re-exports both.

>>> TrainConfig.for_preset("test-tiny").max_steps
50
>>> TrainConfig(batch_size=0)
Traceback (most recent call last):
...
ValueError: train config batch_size=0: expected an integer >= 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lexgpt.modeling.model import PRESET_ALIASES

@dataclass
class TrainConfig:
    preset: str = "cpu-small"
    max_steps: int = 0  # 0 = no step limit (then max_minutes must be set)
    max_minutes: float | None = 8.0  # training-time budget, summed over resumes; None = none
    batch_size: int = 32  # sequences per micro-step and rank (32 x cpu-small's 128 tokens)
    grad_accum: int = 1
    optimizer: str = "muon"  # muon (hidden matrices) + adamw (the rest), or adamw everywhere
    matrix_lr: float = 0.03  # measured: 0.013 / 0.02 / 0.03 / 0.04 (BENCHMARKS.md)
    embedding_lr: float = 0.3
    head_lr: float = 0.004
    scalar_lr: float = 0.004
    weight_decay: float = 0.0
    warmup_steps: int = 20
    warmdown: float = 0.6  # the last fraction of the run decays the lr linearly (measured: 0.25-0.8)
    min_lr_frac: float = 0.0
    grad_clip: float = 1.0  # 0 = no clipping (the norm is still reported)
    log_every: int = 10
    eval_every: int = 200
    eval_windows: int = 256  # val windows per in-training eval, spread over all of val; 0 = all
    # True: write the weights of the best in-training eval instead of the last. It selects on
    # val windows, the split that is then reported, so the number is optimistic: off by
    # default (the warmdown ends on the best weights anyway; auto stops data-bound runs at
    # MAX_EPOCHS, before repetition hurts).
    keep_best: bool = False
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 1.0  # a kill -9 loses at most this much training
    seed: int = 1337
    device: str = "auto"  # auto = cuda > mps > cpu
    compile: bool | None = None  # None = on for CUDA, and for CPUs with a C++ compiler (1.4-1.6x, measured)
    dtype: str = "auto"  # auto = bfloat16 autocast where matmuls are native bf16, else float32
    threads: int = 0  # CPU threads; 0 = the measured default (lexgpt.training.device)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field out of bounds, e.g.
        ``train config batch_size=0: expected an integer >= 1``."""
        for name, low in _LEAST_COUNT.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"train config {name}={value!r}: expected an integer >= {low}")
        for name, (low, high, low_allowed) in _NUMBER_BOUNDS.items():
            value = getattr(self, name)
            if name == "max_minutes" and value is None:
                continue
            number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            if not (number and (low <= value if low_allowed else low < value) and value <= high):
                bounds = f"{'>=' if low_allowed else '>'} {low}" + (f" and <= {high}" if high < math.inf else "")
                raise ValueError(f"train config {name}={value!r}: expected a finite number {bounds}")
        for name, allowed in (("optimizer", ("muon", "adamw")), ("dtype", ("auto", "float32", "bfloat16")),
                              ("keep_best", (True, False)), ("compile", (None, True, False))):  # fmt: skip
            value = getattr(self, name)
            if not any(value is a or (isinstance(a, str) and value == a) for a in allowed):
                raise ValueError(f"train config {name}={value!r}: expected one of {', '.join(map(str, allowed))}")
        if not self.max_steps and self.max_minutes is None:
            raise ValueError("train config: set max_steps or max_minutes: training needs a budget")

    @classmethod
    def for_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """The training recipe for a model preset (``RECIPES``), then ``overrides``."""
        preset = PRESET_ALIASES.get(preset, preset)
        return cls(**{**RECIPES.get(preset, {}), "preset": preset, **overrides})


# The smallest value of each count (seed: numpy's generators take no negative seed), and
# (low, high, whether low itself is allowed) of each number; max_minutes may also be None.
_LEAST_COUNT = dict(max_steps=0, batch_size=1, grad_accum=1, warmup_steps=0, log_every=1, eval_every=1,
                    eval_windows=0, checkpoint_every=1, seed=0, threads=0)  # fmt: skip
_NUMBER_BOUNDS = {
    "max_minutes": (0, math.inf, False), "checkpoint_minutes": (0, math.inf, False),
    **{name: (0, math.inf, True)
       for name in ("matrix_lr", "embedding_lr", "head_lr", "scalar_lr", "weight_decay", "grad_clip")},
    "warmdown": (0, 1, True), "min_lr_frac": (0, 1, True),
}  # fmt: skip

# Per-preset settings on top of the defaults (which are cpu-small's, measured: BENCHMARKS.md).
RECIPES: dict[str, dict[str, Any]] = {
    "cpu-small": {},
    # On a GPU the data (12M tokens) binds, not compute: many epochs, so dropout, weight
    # decay and keeping the best-val weights matter; not yet measured on a GPU.
    "gpu-small": dict(batch_size=64, max_minutes=10.0, weight_decay=0.1, warmup_steps=100,
                      matrix_lr=0.02, warmdown=0.4, embedding_lr=0.2, head_lr=0.004, eval_every=250,
                      eval_windows=0, checkpoint_every=2000),
    "test-tiny": dict(max_minutes=None, max_steps=50, batch_size=4, eval_every=25, eval_windows=8, compile=False),
}  # fmt: skip
