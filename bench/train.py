"""Training throughput (tokens/s, MFU on CUDA) and quality of a preset, through the real loop.

    python bench/train.py --synthetic --preset cpu-small --seconds 60      # throughput only
    python bench/train.py --preset cpu-small --minutes 8                   # full-val bits/char
    python bench/train.py --synthetic --preset gpu-small --seconds 120     # on a GPU: MFU

``--synthetic`` trains on random tokens (throughput only; the loss means nothing), so it
runs before the real shards exist. With real shards it reports the full-val bits/char
reached in the budget (the schedule anneals to the budget). Unset options take the
preset's recipe (``lexgpt.training.train.RECIPES``), which is what the pipeline trains with.
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

from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.training.device import peak_flops, pick_device
from lexgpt.training.train import TrainConfig, load_token_chars, shards_vocab_size, train


def synthetic_shards(folder: Path, vocab_size: int, n_tokens: int = 2_000_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    rng.integers(0, vocab_size, size=n_tokens, dtype=np.uint16).astype("<u2").tofile(folder / "train.bin")
    rng.integers(0, vocab_size, size=n_tokens // 10, dtype=np.uint16).astype("<u2").tofile(folder / "val.bin")
    return np.full(vocab_size, 3, dtype=np.int64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("data_lake/token_shards"))
    p.add_argument("--synthetic", action="store_true", help="random tokens, no shards needed")
    p.add_argument("--vocab-size", type=int, default=None, help="default: manifest, or 1000 synthetic")
    p.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json, for bits/char")
    p.add_argument("--token-chars", type=Path, default=None, help="default: DATA/token_chars.npy")
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--block-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's recipe")
    p.add_argument("--grad-accum", type=int, default=None, help="default: the preset's recipe")
    p.add_argument("--matrix-lr", type=float, default=None, help="default: the preset's recipe")
    p.add_argument("--steps", type=int, default=0, help="max steps (0: the time budget alone)")
    p.add_argument("--seconds", type=float, default=None, help="time budget (throughput runs)")
    p.add_argument("--minutes", type=float, default=None, help="time budget (quality runs)")
    p.add_argument("--eval-windows", type=int, default=64, help="val windows per in-training eval")
    p.add_argument("--eval-every", type=int, default=1_000_000)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: the recipe's")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    args = p.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="lexgpt-bench-")
    if args.synthetic:
        data = Path(tmp.name) / "data"
        data.mkdir()
        vocab = args.vocab_size or 1000
        token_chars = synthetic_shards(data, vocab)
    else:
        data = args.data
        vocab = args.vocab_size or shards_vocab_size(data)
        if vocab is None:
            sys.exit(f"no vocab_size in {data}/manifest.json; pass --vocab-size")
        token_chars = load_token_chars(data, args.tokenizer, args.token_chars)
    overrides = {"block_size": args.block_size} if args.block_size else {}
    mc = GPTConfig.from_preset(args.preset, vocab, **overrides)
    budget = args.minutes if args.minutes is not None else (args.seconds / 60 if args.seconds else None)
    recipe = {"batch_size": args.batch_size, "grad_accum": args.grad_accum, "matrix_lr": args.matrix_lr,
              "compile": args.compile}  # fmt: skip
    tc = TrainConfig.for_preset(
        args.preset, max_steps=args.steps, max_minutes=budget, log_every=10, eval_every=args.eval_every,
        eval_windows=args.eval_windows, checkpoint_every=10**9, checkpoint_minutes=10**9,
        device=args.device, dtype=args.dtype, threads=args.threads,
        **{k: v for k, v in recipe.items() if v is not None},
    )  # fmt: skip
    rates: list[float] = []
    res = train(mc, tc, data, args.out or Path(tmp.name) / "out", token_chars,
                on_metrics=lambda s, m: rates.append(m["tokens_per_s"]) if "tokens_per_s" in m else None)  # fmt: skip
    steady = rates[1:] or rates  # the first interval pays for warm-up (and compilation)
    tok_s = statistics.median(steady) if steady else res.tokens_seen / res.elapsed_s
    model = GPT(mc)
    device = pick_device(args.device)
    report = {
        "preset": args.preset, "params_M": round(model.num_params() / 1e6, 3), "vocab_size": vocab,
        "block_size": mc.block_size, "batch_tokens": tc.batch_size * tc.grad_accum * mc.block_size,
        "matrix_lr": tc.matrix_lr, "device": torch.cuda.get_device_name() if device.type == "cuda" else str(device),
        "threads": torch.get_num_threads(), "steps": res.steps, "elapsed_s": round(res.elapsed_s, 1),
        "tokens_per_s": round(tok_s), "tokens_seen": res.tokens_seen,
        "val_loss": round(res.val_loss, 4), "val_bpc": round(res.val_bpc, 4), "val_fraction": res.val_fraction,
    }  # fmt: skip
    peak = peak_flops(device)
    if peak:
        report["mfu"] = round(model.estimate_flops_per_token() * tok_s / peak, 4)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
