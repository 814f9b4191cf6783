"""The training loop: Muon + AdamW, a time- or step-driven schedule, bf16 where it pays.

    result = train(GPTConfig.from_preset("cpu-small", 1000), TrainConfig(), "data_lake/token_shards",
                   "runs/train", token_chars)   # or: python -m lexgpt.training.train --data ... (lexgpt.training.train)

Needs only torch, numpy and tqdm. Reads ``train.bin`` / ``val.bin`` (``lexgpt.data.shards``)
through memory maps. :func:`train` reads top to bottom: ``_setup`` picks device and
precision, builds the model and optimizers and resumes from ``out/checkpoint.pt`` if there
is one; the loop then runs ``_train_step`` until the step or time budget is spent,
evaluating on an evenly spread part of val every ``eval_every`` steps (keeping the best
weights if ``keep_best``) and checkpointing every ``checkpoint_every`` steps or ``checkpoint_minutes``,
whichever comes first; ``_finish`` scores the kept weights on the **whole** val split:
that is the reported number. The command line is :mod:`lexgpt.training.train`; what a
run carries from step to step, :mod:`lexgpt.training.run_state`.

Reproducibility: a fixed seed, a stateless sampler (``lexgpt.data.dataloader``) and the RNG
states in the checkpoint, so a resumed run on CPU reproduces the uninterrupted run's
losses exactly. Distributed (``torchrun``): DDP over NCCL on CUDA, gloo on CPU; only rank 0
writes files, logs and calls back. Whatever starts a collective (a checkpoint, the stop)
is decided once per step for all ranks (``_decide``): a rank that checkpointed alone
would wait forever for the others.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from lexgpt.data.dataloader import BatchSampler
from lexgpt.evaluation.loss_eval import evaluate
from lexgpt.infra.interrupts import StopRequest, stop_on_interrupt
from lexgpt.modeling.checkpoint import (CHECKPOINT, CheckpointError, load_checkpoint, rng_state, save_checkpoint,
                                        save_model, set_rng_state)  # fmt: skip
from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.training.device import autocast_for, compile_pays, dist_env, peak_flops, pick_device, set_cpu_threads
from lexgpt.training.optim import build_optimizers, lr_multiplier
from lexgpt.training.run_state import RunState, TrainingDiverged, TrainResult
from lexgpt.training.train_config import TrainConfig
from lexgpt.training.train_progress import EvalSchedule, progress_bar, show, time_left


def train(
    model_config: GPTConfig,
    train_config: TrainConfig,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    token_chars: np.ndarray | None,
    *,
    on_metrics: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) a GPT on ``data_dir``'s shards; checkpoints and weights go to ``out_dir``."""
    train_config.validate()  # again: a dataclass can be changed after it was built
    run = _setup(model_config, train_config, Path(data_dir), Path(out_dir), token_chars, on_metrics)
    cfg = run.cfg
    bar = progress_bar(run.progress(run.elapsed_before), enabled=progress and run.master)
    evals = EvalSchedule(cfg.eval_every, run.progress(run.elapsed_before))
    with bar, stop_on_interrupt() as stop:  # Ctrl-C stops between two steps (lexgpt.infra.interrupts)
        run.start_clocks(time.perf_counter())
        while True:
            elapsed, checkpoint_due, interrupted = _decide(run, stop)
            done = run.progress(elapsed)
            if done >= 1.0:
                break
            if checkpoint_due:
                _checkpoint(run, elapsed)
            if interrupted:
                raise KeyboardInterrupt
            mult = lr_multiplier(done, run.step, cfg.warmup_steps, cfg.warmdown, cfg.min_lr_frac)
            loss_sum, grad_norm = _train_step(run, mult)
            bar.update(round(100 * run.progress(elapsed), 1) - bar.n)
            metrics = {}
            if run.step % cfg.log_every == 0:
                metrics = _train_metrics(run, loss_sum, grad_norm, mult, bar, elapsed)
            if evals.due(run.step, done):
                train_loss = metrics.get("train_loss", float(loss_sum) / cfg.grad_accum)  # this rank's, off log steps
                metrics.update(_eval_in_training(run, elapsed, train_loss, bar))
            if metrics and run.master:
                run.emit(metrics)
    return _finish(run)


def _setup(model_config: GPTConfig, cfg: TrainConfig, data_dir: Path, out_dir: Path,
           token_chars: np.ndarray | None, on_metrics: Callable | None) -> RunState:  # fmt: skip
    """Device, process group, model, optimizers, resumed state, the compiled/DDP wrapper."""
    rank, world, local_rank = dist_env()
    device = _prepare_device(cfg, local_rank)
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    nccl = world > 1 and dist.get_backend() == "nccl"
    dtype_name, autocast = autocast_for(cfg.dtype, device)
    torch.manual_seed(cfg.seed)  # identical init on every rank
    raw_model = GPT(model_config).to(device)
    optimizers = build_optimizers(
        raw_model, optimizer=cfg.optimizer, matrix_lr=cfg.matrix_lr, embedding_lr=cfg.embedding_lr,
        head_lr=cfg.head_lr, scalar_lr=cfg.scalar_lr, weight_decay=cfg.weight_decay, device_type=device.type,
    )  # fmt: skip
    run = RunState(cfg, model_config, data_dir, out_dir, token_chars, on_metrics, rank, world, own_group, device,
                   device if nccl else torch.device("cpu"), autocast, dtype_name, raw_model, optimizers)  # fmt: skip
    _resume(run)
    _agree_on_start(run)
    use_compile = compile_pays(device, cfg.compile)
    model = torch.compile(raw_model) if use_compile else raw_model
    run.model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None) if world > 1 else model
    run.sampler = BatchSampler(data_dir / "train.bin", model_config.block_size, cfg.batch_size, cfg.seed)
    run.flops_per_token, run.peak = raw_model.estimate_flops_per_token(), peak_flops(device)
    if run.master:
        out_dir.mkdir(parents=True, exist_ok=True)
        print(f"lexgpt.training.train: {raw_model.num_params() / 1e6:.2f}M params, device={device}, dtype={dtype_name}, "
              f"threads={torch.get_num_threads()}, compile={use_compile}, world={world}, "
              f"{run.tokens_per_step} tokens/step, from step {run.step}", file=sys.stderr)  # fmt: skip
    return run


def _prepare_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    device = pick_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before any collective: NCCL binds to the current device
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if device.type == "cpu":
        set_cpu_threads(cfg.threads)
        # Zero-initialised projections produce denormal floats early on; without this a
        # CPU step was measured ~15x slower.
        torch.set_flush_denormal(True)
    return device


def _resume(run: RunState) -> None:
    """Continue from ``out_dir/checkpoint.pt`` if there is one; else seed this rank's dropout."""
    path = run.out_dir / CHECKPOINT
    ckpt = load_checkpoint(path)
    if ckpt is None:
        torch.manual_seed(run.cfg.seed + run.rank)  # independent dropout per rank
        return
    if ckpt["model_config"] != run.model_config.to_dict():
        raise CheckpointError.at(path, f"is for model {ckpt['model_config']}, not {run.model_config.to_dict()}")
    if len(ckpt["optimizers"]) != len(run.optimizers):
        raise CheckpointError.at(path, f"holds {len(ckpt['optimizers'])} optimizer states, not "
                                       f"{len(run.optimizers)} (optimizer={run.cfg.optimizer!r})")  # fmt: skip
    try:
        run.raw_model.load_state_dict(ckpt["model"])
        for opt, state in zip(run.optimizers, ckpt["optimizers"]):
            opt.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError.at(path, f"does not fit this model ({str(err).strip().splitlines()[0][:200]})") from None
    run.step, run.history, run.elapsed_before = ckpt["step"], ckpt["history"], ckpt["elapsed_s"]
    run.best = ckpt["best"]
    if len(ckpt["rng"]) == run.world:
        set_rng_state(ckpt["rng"][run.rank], run.device)
    else:  # another world size: exact replay is impossible anyway
        torch.manual_seed(run.cfg.seed + 1000 * run.step + run.rank)


def _agree_on_start(run: RunState) -> None:
    """Fail at once if the ranks resumed at different steps (each reads ``out_dir``: a node
    that does not share the folder starts at 0); otherwise their collectives would part ways."""
    if run.world == 1:
        return
    steps = torch.tensor([run.step, -run.step], dtype=torch.float64, device=run.comm_device)
    dist.all_reduce(steps, op=dist.ReduceOp.MAX)
    lowest, highest = int(-steps[1].item()), int(steps[0].item())
    if lowest != highest:
        raise CheckpointError(f"the ranks resumed at steps {lowest} to {highest}: every rank must see the "
                              f"same {run.out_dir} (a folder all nodes share)")


def _decide(run: RunState, stop: StopRequest) -> tuple[float, bool, bool]:
    """(training seconds so far, checkpoint now?, Ctrl-C?), the same on every rank.

    Each answer starts or skips a collective (a checkpoint gathers every rank's RNG state;
    the stop ends the gradient all-reduces), so the ranks must agree: rank 0's clock decides
    the time and the checkpoint, and a Ctrl-C on any rank stops all. One all-reduce of three
    numbers per step (a sum: rank 0 sends its clock, the others zeros).
    """
    cfg, now = run.cfg, time.perf_counter()
    elapsed = run.elapsed_before + now - run.t0
    due = run.step > run.step_ckpt and (run.step - run.step_ckpt >= cfg.checkpoint_every
                                        or now - run.t_ckpt >= cfg.checkpoint_minutes * 60)  # fmt: skip
    if run.world == 1:
        return elapsed, due, stop.requested
    mine = [elapsed, float(due)] if run.master else [0.0, 0.0]
    shared = torch.tensor([*mine, float(stop.requested)], dtype=torch.float64, device=run.comm_device)
    dist.all_reduce(shared, op=dist.ReduceOp.SUM)
    elapsed, due_votes, interrupted = shared.tolist()
    return elapsed, due_votes > 0, interrupted > 0


def _train_step(run: RunState, mult: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over ``grad_accum`` micro-batches: (summed micro losses, grad norm)."""
    cfg = run.cfg
    for opt in run.optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * mult
    loss_sum = torch.zeros((), device=run.device)
    for micro in range(cfg.grad_accum):
        x, y = run.sampler.batch((run.step * cfg.grad_accum + micro) * run.world + run.rank, run.device)
        # Gradients are all-reduced once per step, on the last micro-step only.
        last = micro == cfg.grad_accum - 1
        with contextlib.nullcontext() if run.world == 1 or last else run.model.no_sync():
            with run.autocast or contextlib.nullcontext():
                _, loss = run.model(x, y)
            (loss / cfg.grad_accum).backward()
        loss_sum += loss.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), cfg.grad_clip or float("inf"))
    for opt in run.optimizers:
        opt.step()
    for opt in run.optimizers:
        opt.zero_grad(set_to_none=True)
    run.step += 1
    return loss_sum, grad_norm


def _train_metrics(run: RunState, loss_sum: torch.Tensor, grad_norm: torch.Tensor, mult: float, bar: tqdm,
                   elapsed: float) -> dict:  # fmt: skip
    """Train loss (mean over ranks), lr, grad norm and throughput since the last log."""
    train_loss = float(_mean_over_ranks(loss_sum / run.cfg.grad_accum, run))
    if not math.isfinite(train_loss):  # the same mean on every rank: all of them stop here
        raise TrainingDiverged(f"training diverged: train loss {train_loss} at step {run.step}; "
                               f"{_diverged_advice(run)}")
    t_now = time.perf_counter()
    run.tok_s = (run.step - run.step_log) * run.tokens_per_step / max(t_now - run.t_log, 1e-9)
    run.tokens_timed += (run.step - run.step_log) * run.tokens_per_step
    run.seconds_timed += t_now - run.t_log
    run.t_log, run.step_log = t_now, run.step
    metrics = dict(train_loss=train_loss, lr_multiplier=mult, grad_norm=float(grad_norm),
                   tokens_per_s=run.tok_s, tokens_seen=float(run.step * run.tokens_per_step))  # fmt: skip
    if run.peak:
        metrics["mfu"] = run.tok_s * run.flops_per_token / (run.peak * run.world)
    show(bar, run.step, train_loss, run.tok_s, _time_left(run, elapsed))
    return metrics


def _time_left(run: RunState, elapsed: float) -> str:
    return time_left(run.cfg, run.step, elapsed, run.step_at_start, run.elapsed_before)


def _eval_in_training(run: RunState, elapsed: float, train_loss: float, bar: tqdm) -> dict[str, float]:
    """Score ``eval_windows`` of val, remember the best weights, print one line (rank 0)."""
    cfg = run.cfg
    val = _evaluate(run, cfg.eval_windows)
    if cfg.keep_best and val["val_bpc"] < run.best["bpc"]:
        run.best = {"bpc": val["val_bpc"], "step": run.step, "state": _cpu_copy(run.raw_model.state_dict())}
    if run.master:
        bar.write(f"step {run.step}: train loss {train_loss:.3f}, val {val['val_bpc']:.3f} bits/char "
                  f"({val['val_fraction']:.0%} of val), {run.tok_s:,.0f} tokens/s, {_time_left(run, elapsed)}",
                  file=sys.stderr)  # fmt: skip
    run.t_log = time.perf_counter()  # eval time is not training throughput
    return {"val_loss": val["val_loss"], "val_bpc": val["val_bpc"]}


def _evaluate(run: RunState, max_windows: int) -> dict[str, float]:
    # Eager: compiling the eval shapes too would spend the training budget on recompiles.
    return evaluate(run.raw_model, run.data_dir / "val.bin", run.model_config.block_size, run.cfg.batch_size,
                    run.token_chars, max_windows=max_windows, device=run.device, autocast=run.autocast,
                    rank=run.rank, world_size=run.world)  # fmt: skip


def _checkpoint(run: RunState, elapsed: float) -> None:
    start = time.perf_counter()
    _save(run, elapsed)
    run.t_ckpt, run.step_ckpt = time.perf_counter(), run.step
    run.t_log += run.t_ckpt - start  # checkpoint time is not training throughput


def _diverged_advice(run: RunState) -> str:
    return (f"nothing past step {run.step_ckpt} was saved; lower the learning rates (matrix_lr, embedding_lr, "
            "head_lr) or train in float32 (dtype), then run again")


def _save(run: RunState, elapsed_s: float) -> None:
    """Write the training state (rank 0; every rank sends its RNG state), never weights that
    are not finite (the ranks' weights are equal under DDP, so all of them decide alike)."""
    if not all(bool(torch.isfinite(p).all()) for p in run.raw_model.parameters()):
        raise TrainingDiverged(f"training diverged: the weights are not finite at step {run.step}; "
                               f"{_diverged_advice(run)}")
    rng = [rng_state(run.device)]
    if run.world > 1:
        rng = [None] * run.world
        dist.all_gather_object(rng, rng_state(run.device))
        rng = [{k: v.cpu() for k, v in r.items()} for r in rng]
    if run.master:
        save_checkpoint(run.out_dir / CHECKPOINT, {
            "model": run.raw_model.state_dict(), "optimizers": [o.state_dict() for o in run.optimizers],
            "step": run.step, "rng": rng, "best": run.best, "history": run.history, "elapsed_s": elapsed_s,
            "model_config": run.model_config.to_dict(), "train_config": asdict(run.cfg),
        })  # fmt: skip


def _finish(run: RunState) -> TrainResult:
    """Save the training state, pick the kept weights, score them on the whole val split."""
    cfg = run.cfg
    elapsed = run.elapsed_before + time.perf_counter() - run.t0
    # Before the best weights replace the last: a run given more steps continues from here.
    _save(run, elapsed)
    if cfg.keep_best:
        val = _evaluate(run, cfg.eval_windows)  # the final weights, on the same windows as before
        if val["val_bpc"] <= run.best["bpc"] or run.best["state"] is None:
            run.best = {"bpc": val["val_bpc"], "step": run.step, "state": None}
        else:
            run.raw_model.load_state_dict(run.best["state"])
    final = _evaluate(run, 0)
    if run.master:
        run.emit({"val_loss": final["val_loss"], "val_bpc": final["val_bpc"], "val_fraction": final["val_fraction"]})
    weights_path, config_path = save_model(run.raw_model, run.out_dir) if run.master else (None, None)
    if run.world > 1:
        dist.barrier()
        if run.own_group:
            dist.destroy_process_group()
    tokens_per_s = run.tokens_timed / run.seconds_timed if run.seconds_timed else 0.0
    return TrainResult(
        val_loss=final["val_loss"], val_bpc=final["val_bpc"], val_fraction=final["val_fraction"],
        steps=run.step, best_step=run.best["step"] if cfg.keep_best else run.step,
        tokens_seen=run.step * run.tokens_per_step, elapsed_s=elapsed, tokens_per_s=tokens_per_s,
        mfu=tokens_per_s * run.flops_per_token / (run.peak * run.world) if run.peak else None,
        history=run.history, weights_path=weights_path, config_path=config_path, dtype=run.dtype,
    )  # fmt: skip


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _mean_over_ranks(t: torch.Tensor, run: RunState) -> torch.Tensor:
    if run.world == 1:
        return t
    out = t.detach().double().reshape(1).to(run.comm_device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.cpu()[0] / run.world

