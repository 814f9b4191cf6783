"""The training loop: AdamW, linear warmup + cosine decay, eval in bits per character.

Data: a folder with ``train.bin`` / ``val.bin`` (little-endian uint16 token ids), read
through ``np.memmap`` so no shard is ever copied whole into memory.

Reproducibility: batch ``g`` (counted over all steps, micro-steps and ranks) is drawn
from ``np.random.default_rng([seed, g])``, so the data sampler has no hidden state and
``world_size`` processes with ``grad_accum=a`` see exactly the batches one process with
``grad_accum=a * world_size`` would. Checkpoints (``out_dir/checkpoint.pt``, atomic) hold
model, optimizer, step, every rank's torch RNG state and the sampler position; a run that
finds one resumes from it and, on CPU, reproduces the uninterrupted run's losses exactly.

Distributed: launched by ``torchrun`` (env RANK / WORLD_SIZE / LOCAL_RANK) it trains
with DDP (NCCL on CUDA, gloo on CPU); only rank 0 writes files, logs and calls back.

    torchrun --nproc_per_node 2 -m lexgpt.train --data data_lake/token_shards --out runs/x
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
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
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from lexgpt.atomic import write_json, write_torch
from lexgpt.model import GPT, GPTConfig

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.pt"
CONFIG = "config.json"
TOKEN_DTYPE = np.dtype("<u2")


@dataclass
class TrainConfig:
    preset: str = "cpu-tiny"
    max_steps: int = 2000
    # Defaults: the measured cpu-tiny recipe (BENCHMARKS.md); see RECIPES / for_preset.
    batch_size: int = 16  # sequences per micro-step and rank
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 = no clipping (the norm is still reported)
    log_every: int = 10
    eval_every: int = 250
    eval_tokens: int = 262_144  # val tokens per eval; 0 = the whole val shard
    checkpoint_every: int = 500
    seed: int = 1337
    device: str = "auto"  # auto = cuda > mps > cpu
    compile: bool = False
    dtype: str = "auto"  # auto = bfloat16 autocast on CUDA, else float32
    max_minutes: float | None = None  # training-time budget, summed over resumes

    @classmethod
    def for_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """The training recipe for a model preset (``RECIPES``), then ``overrides``."""
        return cls(**{**RECIPES.get(preset, {}), "preset": preset, **overrides})


# Per-preset settings on top of the defaults (which are cpu-tiny's, measured). The GPU
# recipes follow nanoGPT-scale practice (~32k tokens/step, lr ~ 1/sqrt(width)) and are
# not yet measured on this corpus.
RECIPES: dict[str, dict[str, Any]] = {
    "cpu-tiny": {},
    "gpu-small": dict(
        batch_size=32, grad_accum=2, lr=6e-4, min_lr=6e-5, warmup_steps=200,
        max_steps=3000, eval_every=250, eval_tokens=0, checkpoint_every=500,
    ),
    "seed-76m": dict(
        batch_size=32, grad_accum=4, lr=3e-4, min_lr=3e-5, warmup_steps=200,
        max_steps=3000, eval_every=250, eval_tokens=0, checkpoint_every=500,
    ),
}  # fmt: skip


@dataclass
class TrainResult:
    val_loss: float
    val_bpc: float
    steps: int
    tokens_seen: int
    elapsed_s: float
    history: list[dict[str, float]]
    weights_path: Path
    config_path: Path


def lr_at(step: int, cfg: TrainConfig, progress: float | None = None) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from ``lr`` to ``min_lr``.

    ``progress`` (0..1) overrides the step-based position on the cosine; the loop passes
    the larger of step and time progress under a time budget, so a run stopped by
    ``max_minutes`` has still annealed.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    steps_frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    p = min(1.0, max(steps_frac, progress or 0.0))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * p)) * (cfg.lr - cfg.min_lr)


def bits_per_char(total_nats: float, total_chars: int) -> float:
    """Bits per character: summed nats over the targets / ln 2 / their characters."""
    return total_nats / math.log(2) / total_chars


class BatchSampler:
    """Random (x, y) windows from a token shard; batch ``g`` depends only on (seed, g)."""

    def __init__(self, path: Path, block_size: int, batch_size: int, seed: int) -> None:
        self.data = np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
        if len(self.data) < block_size + 2:
            raise ValueError(f"{path} has {len(self.data)} tokens; need > {block_size + 1}")
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed

    def batch(self, g: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, g])
        starts = rng.integers(0, len(self.data) - self.block_size, size=self.batch_size)
        buf = np.stack([self.data[s : s + self.block_size + 1] for s in starts]).astype(np.int64)
        t = torch.from_numpy(buf)  # (B, T+1)
        if device.type == "cuda":
            t = t.pin_memory().to(device, non_blocking=True)
        return t[:, :-1], t[:, 1:]  # (B, T), (B, T)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    val_path: Path,
    block_size: int,
    batch_size: int,
    token_chars: np.ndarray | None,
    *,
    eval_tokens: int = 0,
    device: torch.device | str = "cpu",
    autocast: Any = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, float]:
    """Val loss (nats/token) and bpc over fixed, contiguous, non-overlapping windows.

    Every target token is scored once, so the same call always scores the same tokens.
    Ranks split the windows and the sums are all-reduced.
    """
    device = torch.device(device)
    data = np.memmap(val_path, dtype=TOKEN_DTYPE, mode="r")
    T = min(block_size, len(data) - 1)
    n_windows = (len(data) - 1) // T
    if eval_tokens:
        n_windows = min(n_windows, max(1, eval_tokens // T))
    mine = np.arange(rank, n_windows, world_size)
    chars_of = None
    if token_chars is not None:
        chars_of = torch.as_tensor(np.asarray(token_chars), dtype=torch.float64)
    sums = torch.zeros(3, dtype=torch.float64)  # nats, targets, chars
    was_training = model.training
    model.eval()
    for i in range(0, len(mine), batch_size):
        starts = mine[i : i + batch_size] * T
        buf = torch.from_numpy(np.stack([data[s : s + T + 1] for s in starts]).astype(np.int64))
        x, y = buf[:, :-1].to(device), buf[:, 1:].to(device)  # (B, T)
        with autocast or contextlib.nullcontext():
            logits, _ = model(x)  # (B, T, vocab)
        nats = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
        sums[0] += nats.double().cpu()
        sums[1] += y.numel()
        if chars_of is not None:
            sums[2] += chars_of[buf[:, 1:]].sum()
    model.train(was_training)
    if world_size > 1:
        sums = _all_reduce_sum(sums, device)
    nats, count, chars = sums.tolist()
    return {
        "val_loss": nats / count,
        "val_bpc": bits_per_char(nats, int(chars)) if chars > 0 else float("nan"),
        "val_tokens": count,
    }


def _all_reduce_sum(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    # NCCL only reduces CUDA tensors.
    out = t.to(device) if dist.get_backend() == "nccl" else t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.cpu()


def _dist_env() -> tuple[int, int, int]:
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _autocast(dtype: str, device: torch.device) -> tuple[str, Any]:
    if dtype == "auto":
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        dtype = "bfloat16" if bf16_ok else "float32"
    if dtype == "float32":
        return dtype, None
    if dtype == "bfloat16":
        return dtype, torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"dtype must be auto, float32 or bfloat16, got {dtype!r}")


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


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
    """Train (or resume) a GPT on ``data_dir``'s shards; write checkpoints and weights to ``out_dir``."""
    cfg = train_config
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    rank, world, local_rank = _dist_env()
    own_group = world > 1 and not dist.is_initialized()
    device = _pick_device(cfg.device, local_rank)
    if own_group:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype_name, autocast = _autocast(cfg.dtype, device)

    torch.manual_seed(cfg.seed)  # identical init on every rank
    raw_model = GPT(model_config).to(device)
    optimizer = raw_model.configure_optimizers(
        cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), device.type
    )
    step, history, elapsed_before, sampler_seed = 0, [], 0.0, cfg.seed
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["model_config"] != model_config.to_dict():
            raise ValueError(
                f"{ckpt_path} is for model {ckpt['model_config']}, not {model_config.to_dict()};"
                " use another out_dir or delete the checkpoint"
            )
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, history = ckpt["step"], ckpt["history"]
        elapsed_before, sampler_seed = ckpt["elapsed_s"], ckpt["sampler"]["seed"]
        if len(ckpt["rng"]) == world:
            _set_rng_state(ckpt["rng"][rank], device)
        else:  # a different world size: exact replay is impossible anyway
            torch.manual_seed(cfg.seed + 1000 * step + rank)
        del ckpt
    else:
        torch.manual_seed(cfg.seed + rank)  # independent dropout per rank

    model = torch.compile(raw_model) if cfg.compile else raw_model
    ddp_model = model
    if world > 1:
        ddp_model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)
    block = model_config.block_size
    sampler = BatchSampler(data_dir / "train.bin", block, cfg.batch_size, sampler_seed)
    tokens_per_step = cfg.batch_size * cfg.grad_accum * block * world
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes is not None else None

    def elapsed() -> float:
        e = elapsed_before + time.perf_counter() - t0
        if world > 1 and budget_s is not None:
            # Every rank must stop, and anneal, on the same step: rank 0's clock decides.
            t = torch.tensor([e], dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
            dist.broadcast(t, 0)
            e = float(t.item())
        return e

    def run_eval() -> dict[str, float]:
        return evaluate(
            model, data_dir / "val.bin", block, cfg.batch_size, token_chars,
            eval_tokens=cfg.eval_tokens, device=device, autocast=autocast,
            rank=rank, world_size=world,
        )  # fmt: skip

    def save_checkpoint() -> None:
        rng = [_rng_state(device)]
        if world > 1:
            rng = [None] * world
            dist.all_gather_object(rng, _rng_state(device))
            rng = [{k: v.cpu() for k, v in r.items()} for r in rng]
        if master:
            ckpt = {
                "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "rng": rng,
                "sampler": {"seed": sampler_seed, "next_batch": step * cfg.grad_accum * world},
                "model_config": model_config.to_dict(),
                "train_config": asdict(cfg),
                "history": history,
                "elapsed_s": elapsed_before + time.perf_counter() - t0,
            }
            write_torch(ckpt_path, ckpt)

    def emit(metrics: dict[str, float]) -> None:
        row = {"step": float(step), **metrics}
        history.append(row)
        if on_metrics is not None:
            on_metrics(step, metrics)

    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        print(
            f"lexgpt.train: {raw_model.num_params() / 1e6:.2f}M params, device={device}, "
            f"dtype={dtype_name}, world={world}, {tokens_per_step} tokens/step, from step {step}",
            file=sys.stderr,
        )
    # Redraw often on a terminal; in a log file (CI, Dagster) a line every 30 s is plenty.
    interactive = sys.stderr.isatty()
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (progress and master), unit="step",
               mininterval=0.1 if interactive else 30.0)
    t0 = time.perf_counter()
    t_log, step_log = t0, step
    last_eval_step = last_ckpt_step = -1
    val: dict[str, float] = {}
    while step < cfg.max_steps:
        now = elapsed()
        if budget_s is not None and now >= budget_s:
            break
        lr = lr_at(step, cfg, now / budget_s if budget_s else None)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            x, y = sampler.batch((step * cfg.grad_accum + micro) * world + rank, device)
            last = micro == cfg.grad_accum - 1
            # Gradients are all-reduced once per step, on the last micro-step only.
            sync = contextlib.nullcontext() if world == 1 or last else ddp_model.no_sync()
            with sync:
                with autocast or contextlib.nullcontext():
                    _, loss = ddp_model(x, y)
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            raw_model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)

        metrics: dict[str, float] = {}
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            train_loss = loss_sum / cfg.grad_accum
            if world > 1:
                summed = _all_reduce_sum(train_loss.double().cpu().view(1), device)
                train_loss = summed[0] / world
            t_now = time.perf_counter()
            tok_s = (step - step_log) * tokens_per_step / max(t_now - t_log, 1e-9)
            t_log, step_log = t_now, step
            metrics.update(
                train_loss=float(train_loss), lr=lr, grad_norm=float(grad_norm),
                tokens_per_s=tok_s, tokens_seen=float(step * tokens_per_step),
            )  # fmt: skip
            # set_postfix redraws at once unless told not to, which would defeat mininterval.
            bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}",
                            refresh=interactive)
        if step % cfg.eval_every == 0:
            val = run_eval()
            last_eval_step = step
            metrics.update(val_loss=val["val_loss"], val_bpc=val["val_bpc"])
            t_log = time.perf_counter()  # eval time is not training throughput
        if metrics and master:
            emit(metrics)
        if step % cfg.checkpoint_every == 0:
            save_checkpoint()
            last_ckpt_step = step
    bar.close()

    if last_eval_step != step:
        val = run_eval()
        if master:
            emit({"val_loss": val["val_loss"], "val_bpc": val["val_bpc"]})
    if last_ckpt_step != step:
        save_checkpoint()
    weights_path, config_path = out_dir / WEIGHTS, out_dir / CONFIG
    if master:
        write_torch(weights_path, raw_model.state_dict())
        write_json(config_path, model_config.to_dict())
    total_elapsed = elapsed_before + time.perf_counter() - t0
    if world > 1:
        dist.barrier()
        if own_group:
            dist.destroy_process_group()
    return TrainResult(
        val_loss=val["val_loss"],
        val_bpc=val["val_bpc"],
        steps=step,
        tokens_seen=step * tokens_per_step,
        elapsed_s=total_elapsed,
        history=history,
        weights_path=weights_path,
        config_path=config_path,
    )


def load_model(out_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> GPT:
    """The GPT that ``train`` wrote to ``out_dir`` (``config.json`` + ``model.pt``), in eval mode."""
    out_dir = Path(out_dir)
    config = GPTConfig.from_dict(json.loads((out_dir / CONFIG).read_text()))
    model = GPT(config)
    model.load_state_dict(torch.load(out_dir / WEIGHTS, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def _vocab_size(data_dir: Path) -> int | None:
    manifest = data_dir / "manifest.json"
    if not manifest.exists():
        return None
    m = json.loads(manifest.read_text())
    for holder in (m, m.get("tokenizer") or {}):
        if isinstance(holder, dict) and isinstance(holder.get("vocab_size"), int):
            return holder["vocab_size"]
    return None


def load_token_chars(
    data_dir: Path, tokenizer: Path | None = None, token_chars: Path | None = None
) -> np.ndarray | None:
    """Characters per token id from a tokenizer file, an .npy, or DATA/token_chars.npy."""
    if tokenizer is not None:
        from lexgpt.bpe import BPETokenizer

        return BPETokenizer.load(tokenizer).token_char_counts()
    path = token_chars or data_dir / "token_chars.npy"
    return np.load(path) if path.exists() else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lexgpt.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, type=Path, help="folder with train.bin, val.bin")
    p.add_argument("--out", required=True, type=Path, help="checkpoints and weights go here")
    p.add_argument("--vocab-size", type=int, help="default: manifest.json's vocab_size")
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json: characters per token for bpc")
    p.add_argument("--token-chars", type=Path, help=".npy of characters per token id"
                   " (default: DATA/token_chars.npy if present; else bpc is nan)")  # fmt: skip
    for name in ("block_size", "n_layer", "n_head", "n_embd"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help="override the preset")
    p.add_argument("--dropout", type=float, help="override the preset")
    p.add_argument("--no-progress", action="store_true")
    for f in fields(TrainConfig):  # unset flags take the preset's recipe
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", default=None)
        else:
            kind = float if f.name == "max_minutes" else type(f.default)
            p.add_argument(flag, type=kind, default=None, help=f"default: {f.default}")
    args = p.parse_args(argv)

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    preset = given.pop("preset") or TrainConfig.preset
    cfg = TrainConfig.for_preset(preset, **{k: v for k, v in given.items() if v is not None})
    vocab_size = args.vocab_size or _vocab_size(args.data)
    if vocab_size is None:
        p.error("--vocab-size is needed: manifest.json has no vocab_size")
    overrides = {
        k: getattr(args, k)
        for k in ("block_size", "n_layer", "n_head", "n_embd", "dropout")
        if getattr(args, k) is not None
    }
    model_config = GPTConfig.from_preset(cfg.preset, vocab_size, **overrides)
    token_chars = load_token_chars(args.data, args.tokenizer, args.token_chars)
    result = train(model_config, cfg, args.data, args.out, token_chars, progress=not args.no_progress)
    if int(os.environ.get("RANK", 0)) == 0:
        summary = {k: v for k, v in asdict(result).items() if k != "history"}
        print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
