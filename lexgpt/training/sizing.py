"""Sizing a model to a time budget: what ``preset: auto`` trains.

A budget of ``S`` seconds on a machine that trains at ``F`` FLOP/s buys ``C = F x S``
FLOPs. A shape with ``N`` parameters costs ``f(N)`` FLOPs per token
(``GPT.estimate_flops_per_token``), so it sees ``D = C / f(N)`` tokens: a bigger model
sees fewer. For a fixed ``C`` the loss is lowest near a fixed ratio ``D / N`` (Hoffmann et
al. 2022, "Chinchilla": ~20 at 10^8+ parameters; at 1-3M parameters and minutes of CPU it
was measured lower here, see ``TOKENS_PER_PARAM``). ``size_for_budget`` picks, from a
ladder of shapes, the one whose ratio is nearest the target (in log), with the recipe of
its size class (``cpu-small``'s up to width 256, ``gpu-small``'s above).

When data binds (a GPU sees the 12M-token train split a hundred times in ten minutes),
the run stops after ``MAX_EPOCHS`` passes, where repetition still pays (Muennighoff et
al. 2023: ~4 epochs are almost as good as new data, returns fade after ~16), and the
ratio counts those repeated tokens; the warmdown ends at that step.

``F`` comes from ``probe_flops_per_s``: a few eager steps of a reference shape, times the
measured speedup of ``torch.compile`` when the run compiles (``plan_here``);
``cached_flops_per_s`` keeps the eager rate per machine so the same machine always makes
the same plan (and a killed run resumes the same one).

>>> plan = size_for_budget(flops_per_s=8e10, budget_s=480, train_tokens=12_000_000, vocab_size=1000)
>>> plan.n_layer, plan.n_embd, plan.recipe
(4, 128, 'cpu-small')
>>> size_for_budget(flops_per_s=4e14, budget_s=600, train_tokens=12_000_000, vocab_size=1000).recipe
'gpu-small'
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Measured on 2 CPU cores at 8 minutes (BENCHMARKS.md, "preset: auto"): on an AVX2 box
# 1.1 / 4.9 / 16.5 tokens per parameter gave 1.5606 / 1.5071 / 1.5261 bits/char; on an
# AVX512-BF16 box 2.7 and 9 tied, 0.9 lost by 0.05.
TOKENS_PER_PARAM = 5.0
MAX_EPOCHS = 8
# Of the wall-clock budget, the share the forward and backward passes get (the rest:
# compiling, the optimizer step, evals, checkpoints; ~0.8 on 2 CPU cores, BENCHMARKS.md).
TRAIN_SHARE = 0.8
# Compiled over eager forward+backward rate, by (device, autocast dtype). Measured on 2 CPU
# cores: float32 on an AVX2-only EPYC 1.08-1.2x, bf16 on AMX 1.4-1.6x (BENCHMARKS.md). The
# CUDA figure is not measured here: a guess that moves the choice by a rung at most.
COMPILE_SPEEDUP = {("cpu", "float32"): 1.1, ("cpu", "bfloat16"): 1.5, ("cuda", "bfloat16"): 1.5,
                   ("cuda", "float32"): 1.5}  # fmt: skip

# (n_layer, n_embd, n_head): widths double every two rungs, depth grows from width 256.
# 5 x 256 splits the 2.2x jump in parameters from 4 x 256 to 6 x 320, where a 60-minute
# CPU budget falls (BENCHMARKS.md, "preset: auto").
LADDER = [(3, 96, 3), (4, 128, 2), (4, 192, 3), (4, 256, 4), (5, 256, 4), (6, 320, 5), (6, 384, 6),
          (8, 512, 8), (12, 768, 12), (16, 1024, 16)]  # fmt: skip


@dataclass(frozen=True)
class SizedPlan:
    """What auto chose, and why (the numbers are recorded with the run)."""

    recipe: str  # the preset whose training recipe (lrs, batch, schedule) the shape takes
    n_layer: int
    n_embd: int
    n_head: int
    block_size: int
    batch_size: int
    dropout: float
    max_steps: int  # 0 = the time budget alone ends the run
    params: int
    tokens: int  # the tokens the run is expected to see
    tokens_per_param: float
    epochs: float
    flops_per_s: float

    def model_fields(self) -> dict[str, Any]:
        return dict(n_layer=self.n_layer, n_embd=self.n_embd, n_head=self.n_head,
                    block_size=self.block_size, dropout=self.dropout)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shape_class(n_embd: int) -> tuple[str, int, int]:
    """(recipe, block_size, batch_size) for a width: ``gpu-small``'s settings above width 256;
    at or below it ``cpu-small``'s 4,096 tokens a step, in windows of the largest power of two
    not above the width (at least 128). Attention costs ~12 L T d FLOPs a token beside the
    weights' ~72 L d^2, so ``T <= d`` keeps it within a sixth of them. Measured on 2 CPU
    cores (BENCHMARKS.md): at width 128 context 256 made a step 10-28% slower for nothing per
    token; at width 256 it cost ~10% of the tokens and gained 0.013 bits/char in 60 minutes."""
    from lexgpt.modeling.model import PRESETS
    from lexgpt.training.train_config import RECIPES, TrainConfig

    if n_embd > 256:
        return "gpu-small", PRESETS["gpu-small"]["block_size"], RECIPES["gpu-small"]["batch_size"]
    tokens_per_step = PRESETS["cpu-small"]["block_size"] * TrainConfig.batch_size  # 128 x 32
    block = max(128, 2 ** int(math.log2(n_embd)))
    return "cpu-small", block, tokens_per_step // block


def size_for_budget(flops_per_s: float, budget_s: float, train_tokens: int, vocab_size: int,
                    tokens_per_param: float = TOKENS_PER_PARAM, max_epochs: float = MAX_EPOCHS,
                    ranks: int = 1) -> SizedPlan:
    """The ladder's shape whose tokens per parameter in this budget is nearest the target.
    ``flops_per_s`` is what all ``ranks`` together train at; each rank's step takes a batch,
    so a data-bound run's step count divides by ``ranks``."""
    from lexgpt.modeling.model import GPT, GPTConfig  # GPT on the meta device: exact counts, nothing allocated

    import torch

    if not (flops_per_s > 0 and budget_s > 0 and train_tokens > 0):
        raise ValueError(f"sizing needs positive FLOP/s, budget and train tokens, got "
                         f"{flops_per_s}, {budget_s}, {train_tokens}")
    compute = flops_per_s * budget_s * TRAIN_SHARE
    best = None
    for n_layer, n_embd, n_head in LADDER:
        recipe, block, batch = _shape_class(n_embd)
        cfg = GPTConfig(vocab_size=vocab_size, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
        with torch.device("meta"):
            per_token = GPT(cfg).estimate_flops_per_token()
        tokens = min(compute / per_token, max_epochs * train_tokens)
        params = cfg.num_params()
        miss = abs(math.log(tokens / params / tokens_per_param))
        if best is None or miss < best[0]:
            best = (miss, recipe, cfg, batch, tokens, params)
    _, recipe, cfg, batch, tokens, params = best
    epochs = tokens / train_tokens
    data_bound = tokens >= max_epochs * train_tokens
    max_steps = math.ceil(tokens / (batch * cfg.block_size * ranks)) if data_bound else 0
    return SizedPlan(recipe=recipe, n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head,
                     block_size=cfg.block_size, batch_size=batch, dropout=0.1 if epochs > 4 else 0.0,
                     max_steps=max_steps, params=params, tokens=int(tokens),
                     tokens_per_param=round(tokens / params, 2), epochs=round(epochs, 3),
                     flops_per_s=flops_per_s)  # fmt: skip


def probe_flops_per_s(device: Any, dtype: str = "auto", steps: int = 5) -> float:
    """Eager training FLOP/s this device reaches: the median of a few forward+backward steps
    of a reference shape (4 x 128 on a CPU, 8 x 512 on a GPU). A few seconds.

    The median, not the fastest step: the plan needs the rate the run will see, noisy
    neighbours included (the fastest of 5 read 131-161 GFLOP/s on one box while the runs
    trained 20-30% fewer tokens than that predicted). Five steps, not three: one 2-core box
    read 104-174 GFLOP/s in one day from three, enough to flip the chosen shape.

    Eager, not compiled: compiling the probe would cost 20-40 s on a CPU, every time the
    cache is empty (a fresh machine's first ``make run``)."""
    import torch

    from lexgpt.modeling.model import GPT, GPTConfig
    from lexgpt.training.device import autocast_for

    cuda = device.type == "cuda"
    n_layer, n_embd, n_head = (8, 512, 8) if cuda else (4, 128, 2)
    block, batch = (512, 16) if cuda else (256, 16)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=1024, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd)).to(device)
    x = torch.randint(0, 1024, (batch, block), device=device)
    _, autocast = autocast_for(dtype, device)
    times = []
    for i in range(steps + 1):  # the first step warms allocators and kernels
        start = time.perf_counter()
        with autocast or contextlib.nullcontext():
            _, loss = model(x, x)
        loss.backward()
        if cuda:
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
    return model.estimate_flops_per_token() * batch * block / statistics.median(times)


def probe_in_child(device: Any, dtype: str = "auto") -> float:
    """:func:`probe_flops_per_s` in a child process. On a GPU the probe's CUDA context would
    otherwise stay in the calling process (the Dagster step) for the whole training, beside
    rank 0's on the same GPU: memory lost, and refused outright on a GPU in exclusive-process
    mode, as clusters often set them."""
    import subprocess

    code = ("import sys, torch; from lexgpt.training.sizing import probe_flops_per_s; "
            "print(probe_flops_per_s(torch.device(sys.argv[1]), sys.argv[2]))")
    done = subprocess.run([sys.executable, "-c", code, str(device), dtype], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the throughput probe on {device} failed: {done.stderr.strip().splitlines()[-1:]}")
    return float(done.stdout.split()[-1])


def plan_here(budget_s: float, train_tokens: int, vocab_size: int, ranks: int = 1,
              dtype: str = "auto", compile: bool | None = None) -> SizedPlan:
    """The plan for this machine's ``ranks``: its cached eager probe (``LEXGPT_CACHE``/throughput.json),
    times ``COMPILE_SPEEDUP`` if the run compiles (``compile``; None: where it pays, as the
    training loop decides), times ``ranks`` on GPUs (each adds FLOP/s; CPU ranks on one
    machine share its cores)."""
    from lexgpt.infra import paths
    from lexgpt.training.device import autocast_for, compile_pays, pick_device

    device = pick_device("auto")
    flops, _ = cached_flops_per_s(device, paths.cache_dir() / "throughput.json", dtype)
    if compile_pays(device, compile):
        flops *= COMPILE_SPEEDUP.get((device.type, autocast_for(dtype, device)[0]), 1.0)
    total = flops * ranks if device.type == "cuda" else flops
    return size_for_budget(total, budget_s, train_tokens, vocab_size, ranks=ranks)


def machine_fingerprint(device: Any) -> str:
    """What decides the probe's result: the processor (or GPU), the cores and torch."""
    import torch

    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = _cpu_model() or platform.processor() or platform.machine()
    return f"{device.type}|{what}|{os.cpu_count()} cpus|{torch.get_num_threads()} threads|torch {torch.__version__}"


def cached_flops_per_s(device: Any, cache_file: Path, dtype: str = "auto") -> tuple[float, bool]:
    """``(eager FLOP/s, measured now)``: the probe's result for this machine, measured once
    and kept in ``cache_file`` (a JSON map from fingerprint to FLOP/s). Delete the file to
    measure again."""
    from lexgpt.infra import atomic

    # "|eager": entries written before the compile factor moved to plan_here included it.
    key = f"{machine_fingerprint(device)}|{dtype}|eager"
    try:
        known = json.loads(cache_file.read_text())
        value = known.get(key) if isinstance(known, dict) else None
        if isinstance(value, (int, float)) and value > 0 and math.isfinite(value):
            return float(value), False
    except (OSError, ValueError):
        known = {}
    flops = probe_flops_per_s(device, dtype) if device.type != "cuda" else probe_in_child(device, dtype)
    known = known if isinstance(known, dict) else {}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(cache_file, {**known, key: flops})
    except OSError as err:  # a read-only home: measured each time, never a failed training
        print(f"lexgpt: cannot keep the throughput probe in {cache_file} ({err.strerror or err}); "
              "set LEXGPT_CACHE to a writable folder", file=sys.stderr)
    return flops, True


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
