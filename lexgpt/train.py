"""The training loop: Muon + AdamW, a time- or step-driven schedule, bf16 where it pays.

    python -m lexgpt.train --data data_lake/token_shards --max-minutes 8
    torchrun --nproc_per_node 2 -m lexgpt.train --data data_lake/token_shards --preset gpu-small

Needs only torch, numpy and tqdm. Reads ``train.bin`` / ``val.bin`` (``lexgpt.shards``)
through memory maps. The loop, top to bottom: pick device and precision, build the model
and optimizers, resume from ``out/checkpoint.pt`` if there is one, then step until the step
or time budget is spent, evaluating on an evenly spread part of val every ``eval_every``
steps (keeping the best weights) and checkpointing every ``checkpoint_every`` steps or
``checkpoint_minutes``, whichever comes first. At the end the kept weights are scored on
the **whole** val split: that is the reported number.

Reproducibility: a fixed seed, a stateless sampler (``lexgpt.dataloader``) and the RNG
states in the checkpoint, so a resumed run on CPU reproduces the uninterrupted run's
losses exactly. Distributed (``torchrun``): DDP over NCCL on CUDA, gloo on CPU; only rank 0
writes files, logs and calls back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from lexgpt.checkpoint import CHECKPOINT, load_checkpoint, rng_state, save_checkpoint, save_model, set_rng_state
from lexgpt.dataloader import BatchSampler
from lexgpt.interrupts import stop_on_interrupt
from lexgpt.device import autocast_for, compile_pays, dist_env, peak_flops, pick_device, set_cpu_threads
from lexgpt.loss_eval import evaluate
from lexgpt.model import PRESET_ALIASES, GPT, GPTConfig
from lexgpt.optim import build_optimizers, lr_multiplier


@dataclass
class TrainConfig:
    preset: str = "cpu-small"
    max_steps: int = 0  # 0 = no step limit (then max_minutes must be set)
    max_minutes: float | None = 8.0  # training-time budget, summed over resumes
    batch_size: int = 16  # sequences per micro-step and rank
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
    keep_best: bool = True  # the weights written are those of the best in-training eval
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 1.0  # a kill -9 loses at most this much training
    seed: int = 1337
    device: str = "auto"  # auto = cuda > mps > cpu
    compile: bool | None = None  # None = on for CUDA, and for CPUs with a C++ compiler (1.4-1.6x, measured)
    dtype: str = "auto"  # auto = bfloat16 autocast where matmuls are native bf16, else float32
    threads: int = 0  # CPU threads; 0 = the measured default (lexgpt.device)

    @classmethod
    def for_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """The training recipe for a model preset (``RECIPES``), then ``overrides``."""
        preset = PRESET_ALIASES.get(preset, preset)
        return cls(**{**RECIPES.get(preset, {}), "preset": preset, **overrides})


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
    cfg = train_config
    if not cfg.max_steps and not cfg.max_minutes:
        raise ValueError("set max_steps or max_minutes: training needs a budget")
    data_dir, out_dir = Path(data_dir), Path(out_dir)

    # --- device, precision, process group
    rank, world, local_rank = dist_env()
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
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    dtype_name, autocast = autocast_for(cfg.dtype, device)

    # --- model, optimizers, resume
    torch.manual_seed(cfg.seed)  # identical init on every rank
    raw_model = GPT(model_config).to(device)
    optimizers = build_optimizers(
        raw_model, optimizer=cfg.optimizer, matrix_lr=cfg.matrix_lr, embedding_lr=cfg.embedding_lr,
        head_lr=cfg.head_lr, scalar_lr=cfg.scalar_lr, weight_decay=cfg.weight_decay, device_type=device.type,
    )  # fmt: skip
    step, history, elapsed_before, best = 0, [], 0.0, {"bpc": float("inf"), "step": 0, "state": None}
    ckpt_path = out_dir / CHECKPOINT
    ckpt = load_checkpoint(ckpt_path)
    if ckpt is not None:
        if ckpt["model_config"] != model_config.to_dict():
            raise ValueError(f"{ckpt_path} is for model {ckpt['model_config']}, not {model_config.to_dict()};"
                             " use another out_dir or delete the checkpoint")  # fmt: skip
        raw_model.load_state_dict(ckpt["model"])
        for opt, state in zip(optimizers, ckpt["optimizers"]):
            opt.load_state_dict(state)
        step, history, elapsed_before = ckpt["step"], ckpt["history"], ckpt["elapsed_s"]
        best = ckpt["best"]
        if len(ckpt["rng"]) == world:
            set_rng_state(ckpt["rng"][rank], device)
        else:  # another world size: exact replay is impossible anyway
            torch.manual_seed(cfg.seed + 1000 * step + rank)
        del ckpt
    else:
        torch.manual_seed(cfg.seed + rank)  # independent dropout per rank

    use_compile = cfg.compile if cfg.compile is not None else compile_pays(device)
    model = torch.compile(raw_model) if use_compile else raw_model
    ddp_model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None) if world > 1 else model
    block = model_config.block_size
    sampler = BatchSampler(data_dir / "train.bin", block, cfg.batch_size, cfg.seed)
    tokens_per_step = cfg.batch_size * cfg.grad_accum * block * world
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    flops_per_token = raw_model.estimate_flops_per_token()
    peak = peak_flops(device)

    def run_eval(max_windows: int) -> dict[str, float]:
        # Eager: compiling the eval shapes too would spend the training budget on recompiles.
        return evaluate(raw_model, data_dir / "val.bin", block, cfg.batch_size, token_chars,
                        max_windows=max_windows, device=device, autocast=autocast, rank=rank,
                        world_size=world)  # fmt: skip

    def save(elapsed_s: float) -> None:
        rng = [rng_state(device)]
        if world > 1:
            rng = [None] * world
            dist.all_gather_object(rng, rng_state(device))
            rng = [{k: v.cpu() for k, v in r.items()} for r in rng]
        if master:
            save_checkpoint(ckpt_path, {
                "model": raw_model.state_dict(), "optimizers": [o.state_dict() for o in optimizers],
                "step": step, "rng": rng, "best": best, "history": history, "elapsed_s": elapsed_s,
                "model_config": model_config.to_dict(), "train_config": asdict(cfg),
            })  # fmt: skip

    def emit(metrics: dict[str, float]) -> None:
        history.append({"step": float(step), **metrics})
        if on_metrics is not None:
            on_metrics(step, metrics)

    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        print(f"lexgpt.train: {raw_model.num_params() / 1e6:.2f}M params, device={device}, dtype={dtype_name}, "
              f"threads={torch.get_num_threads()}, compile={use_compile}, world={world}, "
              f"{tokens_per_step} tokens/step, from step {step}", file=sys.stderr)  # fmt: skip
    # Redraw often on a terminal; in a log file (CI, Dagster) a line every 30 s is plenty.
    interactive = sys.stderr.isatty()
    bar = tqdm(total=cfg.max_steps or None, initial=step, disable=not (progress and master), unit="step",
               mininterval=0.1 if interactive else 30.0)  # fmt: skip

    # --- the loop (Ctrl-C stops it between two steps; see lexgpt.interrupts)
    with bar, stop_on_interrupt() as stop:
        t0 = time.perf_counter()
        t_log, step_log, t_ckpt, step_ckpt = t0, step, t0, step
        tokens_timed, seconds_timed, tok_s = 0, 0.0, 0.0  # training throughput, evals excluded
        while True:
            elapsed = _synced(elapsed_before + time.perf_counter() - t0, device, world)
            progress_frac = max(step / cfg.max_steps if cfg.max_steps else 0.0,
                                elapsed / budget_s if budget_s else 0.0)
            if progress_frac >= 1.0:
                break
            stop.check()
            mult = lr_multiplier(progress_frac, step, cfg.warmup_steps, cfg.warmdown, cfg.min_lr_frac)
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] = group["base_lr"] * mult
            loss_sum = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                x, y = sampler.batch((step * cfg.grad_accum + micro) * world + rank, device)
                # Gradients are all-reduced once per step, on the last micro-step only.
                last = micro == cfg.grad_accum - 1
                with contextlib.nullcontext() if world == 1 or last else ddp_model.no_sync():
                    with autocast or contextlib.nullcontext():
                        _, loss = ddp_model(x, y)
                    (loss / cfg.grad_accum).backward()
                loss_sum += loss.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip or float("inf"))
            for opt in optimizers:
                opt.step()
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)

            metrics: dict[str, float] = {}
            if step % cfg.log_every == 0:
                train_loss = float(_mean_over_ranks(loss_sum / cfg.grad_accum, device, world))
                t_now = time.perf_counter()
                tok_s = (step - step_log) * tokens_per_step / max(t_now - t_log, 1e-9)
                tokens_timed += (step - step_log) * tokens_per_step
                seconds_timed += t_now - t_log
                t_log, step_log = t_now, step
                metrics.update(train_loss=train_loss, lr_multiplier=mult, grad_norm=float(grad_norm),
                               tokens_per_s=tok_s, tokens_seen=float(step * tokens_per_step))  # fmt: skip
                if peak:
                    metrics["mfu"] = tok_s * flops_per_token / (peak * world)
                bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}", refresh=interactive)
            if step % cfg.eval_every == 0:
                val = run_eval(cfg.eval_windows)
                metrics.update(val_loss=val["val_loss"], val_bpc=val["val_bpc"])
                if cfg.keep_best and val["val_bpc"] < best["bpc"]:
                    best = {"bpc": val["val_bpc"], "step": step, "state": _cpu_copy(raw_model.state_dict())}
                if master:
                    left = f"{(budget_s - elapsed) / 60:.1f} min left" if budget_s else f"{cfg.max_steps - step} steps left"
                    bar.write(f"step {step}: train loss {metrics.get('train_loss', float(loss_sum)):.3f}, "
                              f"val {val['val_bpc']:.3f} bits/char ({val['val_fraction']:.0%} of val), "
                              f"{tok_s:,.0f} tokens/s, {left}", file=sys.stderr)  # fmt: skip
                t_log = time.perf_counter()  # eval time is not training throughput
            if metrics and master:
                emit(metrics)
            now = time.perf_counter()
            if step - step_ckpt >= cfg.checkpoint_every or now - t_ckpt >= cfg.checkpoint_minutes * 60:
                save(elapsed_before + now - t0)
                t_ckpt, step_ckpt = time.perf_counter(), step
                t_log += t_ckpt - now  # nor is checkpoint time

    # --- pick the kept weights and score them on the whole val split
    if cfg.keep_best:
        val = run_eval(cfg.eval_windows)  # the final weights, on the same windows as before
        if val["val_bpc"] <= best["bpc"] or best["state"] is None:
            best = {"bpc": val["val_bpc"], "step": step, "state": None}
        else:
            raw_model.load_state_dict(best["state"])
    total_elapsed = elapsed_before + time.perf_counter() - t0
    final = run_eval(0)
    if master:
        emit({"val_loss": final["val_loss"], "val_bpc": final["val_bpc"], "val_fraction": final["val_fraction"]})
    save(total_elapsed)
    weights_path, config_path = save_model(raw_model, out_dir) if master else (None, None)
    if world > 1:
        dist.barrier()
        if own_group:
            dist.destroy_process_group()
    tokens_per_s = tokens_timed / seconds_timed if seconds_timed else 0.0
    return TrainResult(
        val_loss=final["val_loss"], val_bpc=final["val_bpc"], val_fraction=final["val_fraction"],
        steps=step, best_step=best["step"] if cfg.keep_best else step, tokens_seen=step * tokens_per_step,
        elapsed_s=total_elapsed, tokens_per_s=tokens_per_s,
        mfu=tokens_per_s * flops_per_token / (peak * world) if peak else None,
        history=history, weights_path=weights_path, config_path=config_path,
    )  # fmt: skip


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _synced(value: float, device: torch.device, world: int) -> float:
    """Rank 0's value on every rank (all ranks must stop and anneal on the same step)."""
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    dist.broadcast(t, 0)
    return float(t.item())


def _mean_over_ranks(t: torch.Tensor, device: torch.device, world: int) -> torch.Tensor:
    if world == 1:
        return t
    out = t.detach().double().reshape(1).to(device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.cpu()[0] / world


def shards_vocab_size(data_dir: Path) -> int | None:
    """The vocab size recorded in the shards' ``manifest.json``, if any."""
    manifest = data_dir / "manifest.json"
    if not manifest.exists():
        return None
    m = json.loads(manifest.read_text())
    for holder in (m, m.get("tokenizer") or {}):
        if isinstance(holder, dict) and isinstance(holder.get("vocab_size"), int):
            return holder["vocab_size"]
    return None


def load_token_chars(data_dir: Path, tokenizer: Path | None = None, token_chars: Path | None = None) -> np.ndarray | None:
    """Characters per token id: from ``tokenizer``, an .npy, DATA/token_chars.npy, or the
    lake's ``bpe_vocab/tokenizer.json`` next to the shards folder."""
    lake_tokenizer = data_dir.parent / "bpe_vocab" / "tokenizer.json"
    if tokenizer is None and token_chars is None and not (data_dir / "token_chars.npy").exists():
        tokenizer = lake_tokenizer if lake_tokenizer.exists() else None
    if tokenizer is not None:
        from lexgpt.bpe import BPETokenizer

        return BPETokenizer.load(tokenizer).token_char_counts()
    path = token_chars or data_dir / "token_chars.npy"
    return np.load(path, allow_pickle=False) if path.exists() else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lexgpt.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, type=Path, help="folder with train.bin, val.bin")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoints and weights (default: runs/train)")
    p.add_argument("--vocab-size", type=int, help="default: manifest.json's vocab_size")
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json, for characters per token (bits/char)")
    p.add_argument("--token-chars", type=Path, help=".npy of characters per token id")
    for name in ("block_size", "n_layer", "n_head", "n_embd", "mlp_hidden"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help="override the preset")
    p.add_argument("--dropout", type=float, help="override the preset")
    p.add_argument("--no-progress", action="store_true")
    for f in fields(TrainConfig):  # unset flags take the preset's recipe
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("keep_best", "compile"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = float if f.name == "max_minutes" else type(f.default)
            p.add_argument(flag, type=kind, default=None, help=f"default: {f.default}")
    args = p.parse_args(argv)

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    preset = given.pop("preset") or TrainConfig.preset
    cfg = TrainConfig.for_preset(preset, **{k: v for k, v in given.items() if v is not None})
    vocab_size = args.vocab_size or shards_vocab_size(args.data)
    if vocab_size is None:
        p.error("--vocab-size is needed: manifest.json has no vocab_size")
    overrides = {k: getattr(args, k) for k in ("block_size", "n_layer", "n_head", "n_embd", "mlp_hidden", "dropout")
                 if getattr(args, k) is not None}  # fmt: skip
    model_config = GPTConfig.from_preset(cfg.preset, vocab_size, **overrides)
    token_chars = load_token_chars(args.data, args.tokenizer, args.token_chars)
    result = train(model_config, cfg, args.data, args.out, token_chars, progress=not args.no_progress)
    if int(os.environ.get("RANK", 0)) == 0:
        summary = {k: v for k, v in asdict(result).items() if k != "history"}
        print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
