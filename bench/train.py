"""Training throughput (tokens/s, MFU on CUDA) of a preset, through the real training loop.

    python bench/train.py --synthetic --preset cpu-tiny --seconds 60
    python bench/train.py --data data_lake/token_shards --tokenizer data_lake/bpe_vocab/tokenizer.json \
        --minutes 5 --eval-tokens 0

``--synthetic`` trains on random tokens (throughput only; the loss means nothing), so it
runs before the real shards exist. ``--minutes`` with real shards reports the val bpc
reached in that time budget (the cosine anneals to the budget).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lexgpt.model import GPT, GPTConfig
from lexgpt.train import TrainConfig, _vocab_size, load_token_chars, train

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def synthetic_shards(folder: Path, vocab_size: int, n_tokens: int = 2_000_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    rng.integers(0, vocab_size, size=n_tokens, dtype=np.uint16).astype("<u2").tofile(folder / "train.bin")
    rng.integers(0, vocab_size, size=n_tokens // 10, dtype=np.uint16).astype("<u2").tofile(folder / "val.bin")
    return np.full(vocab_size, 3, dtype=np.int64)


def peak_tflops(arg: float | None) -> float | None:
    if arg is not None:
        return arg
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("data_lake/token_shards"))
    p.add_argument("--synthetic", action="store_true", help="random tokens, no shards needed")
    p.add_argument("--vocab-size", type=int, default=None, help="default: manifest, or 1000 synthetic")
    p.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json, for bpc")
    p.add_argument("--token-chars", type=Path, default=None, help="default: DATA/token_chars.npy")
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--block-size", type=int, default=None)
    # None: the preset's training recipe (lexgpt.train.RECIPES), as the pipeline uses it.
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's recipe")
    p.add_argument("--grad-accum", type=int, default=None, help="default: the preset's recipe")
    p.add_argument("--lr", type=float, default=None, help="default: the preset's recipe")
    p.add_argument("--steps", type=int, default=10_000, help="max steps; a time budget usually ends the run first")
    p.add_argument("--seconds", type=float, default=None, help="time budget (throughput runs)")
    p.add_argument("--minutes", type=float, default=None, help="time budget (quality runs)")
    p.add_argument("--eval-tokens", type=int, default=65_536, help="0 = the whole val shard")
    p.add_argument("--eval-every", type=int, default=1_000_000)
    p.add_argument("--warmup-steps", type=int, default=None, help="default: the preset's recipe")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--peak-tflops", type=float, default=None, help="for MFU (default: by GPU name)")
    p.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tmp = tempfile.TemporaryDirectory(prefix="lexgpt-bench-")
    if args.synthetic:
        data = Path(tmp.name) / "data"
        data.mkdir()
        vocab = args.vocab_size or 1000
        token_chars = synthetic_shards(data, vocab)
    else:
        data = args.data
        vocab = args.vocab_size or _vocab_size(data)
        if vocab is None:
            sys.exit(f"no vocab_size in {data}/manifest.json; pass --vocab-size")
        token_chars = load_token_chars(data, args.tokenizer, args.token_chars)
    overrides = {"block_size": args.block_size} if args.block_size else {}
    mc = GPTConfig.from_preset(args.preset, vocab, **overrides)
    budget = args.minutes if args.minutes is not None else (args.seconds / 60 if args.seconds else None)
    recipe_overrides = {"batch_size": args.batch_size, "grad_accum": args.grad_accum, "lr": args.lr,
                        "warmup_steps": args.warmup_steps}
    tc = TrainConfig.for_preset(
        args.preset, max_steps=args.steps, log_every=10,
        eval_every=args.eval_every, eval_tokens=args.eval_tokens, checkpoint_every=10**9,
        device=args.device, dtype=args.dtype, compile=args.compile, max_minutes=budget,
        **{k: v for k, v in recipe_overrides.items() if v is not None},
    )  # fmt: skip
    rates: list[float] = []
    res = train(mc, tc, data, args.out or Path(tmp.name) / "out", token_chars,
                on_metrics=lambda s, m: rates.append(m["tokens_per_s"]) if "tokens_per_s" in m else None)  # fmt: skip
    steady = rates[1:] or rates  # the first interval pays for warm-up
    # A run shorter than one log interval has no rates: average over the run (eval included).
    tok_s = statistics.median(steady) if steady else res.tokens_seen / res.elapsed_s
    flops_per_token = GPT(mc).estimate_flops_per_token()
    report = {
        "preset": args.preset, "params_M": round(GPT(mc).num_params() / 1e6, 3),
        "block_size": mc.block_size, "batch_tokens": tc.batch_size * tc.grad_accum * mc.block_size, "lr": tc.lr,
        "device": str(tc.device if tc.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")),
        "threads": torch.get_num_threads(), "steps": res.steps, "elapsed_s": round(res.elapsed_s, 1),
        "tokens_per_s": round(tok_s), "tokens_seen": res.tokens_seen,
        "val_loss": round(res.val_loss, 4), "val_bpc": round(res.val_bpc, 4),
    }  # fmt: skip
    peak = peak_tflops(args.peak_tflops)
    if peak:
        report["mfu"] = round(flops_per_token * tok_s / (peak * 1e12), 4)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
