"""Full-val bits/char against the time budget: ``preset: auto`` against the fixed preset.

    python bench/budget.py                              # 8, 30 and 60 minutes, both sides
    python bench/budget.py --minutes 8 --only auto      # one budget, one side

For each budget, trains the fixed ``cpu-small`` preset (``gpu-small`` with CUDA) and the
shape ``lexgpt.training.sizing`` picks for that budget on this machine (its probe, cached under
``LEXGPT_CACHE``), one after the other, never at once (two trainings on two cores slow
each other 10x), on the same shards. Each is scored on the whole val split; the token
5-gram baseline is printed beside them. The result table is markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from lexgpt.data import shards
from lexgpt.modeling.model import GPTConfig
from lexgpt.training import sizing
from lexgpt.training.device import pick_device
from lexgpt.training.train import TrainConfig, load_token_chars, train


def run_one(side: str, minutes: float, data: Path, vocab: int, train_tokens: int, token_chars, dtype: str) -> dict:
    """Train one side for ``minutes`` of wall clock; return its row."""
    device = pick_device("auto")
    fixed = "gpu-small" if device.type == "cuda" else "cpu-small"
    quiet = dict(max_minutes=minutes, checkpoint_minutes=10**9, checkpoint_every=10**9)
    if side == "auto":
        plan = sizing.plan_here(minutes * 60, train_tokens, vocab, dtype=dtype)  # what the asset does
        model_cfg = GPTConfig.from_preset(plan.recipe, vocab, **plan.model_fields())
        train_cfg = TrainConfig.for_preset(plan.recipe, batch_size=plan.batch_size, max_steps=plan.max_steps, **quiet)
    else:
        model_cfg = GPTConfig.from_preset(fixed, vocab)
        train_cfg = TrainConfig.for_preset(fixed, **quiet)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lexgpt-budget-") as tmp:
        start = time.perf_counter()
        result = train(model_cfg, train_cfg, data, Path(tmp), token_chars, progress=False)
        wall = time.perf_counter() - start
    return {"budget_min": minutes, "side": side, "shape": f"{model_cfg.n_layer} x {model_cfg.n_embd}",
            "params_M": round(model_cfg.num_params() / 1e6, 3), "steps": result.steps,
            "tokens_per_param": round(result.tokens_seen / model_cfg.num_params(), 2),
            "tokens_per_s": round(result.tokens_per_s), "mfu": None if result.mfu is None else round(result.mfu, 3),
            "wall_s": round(wall), "val_bpc": round(result.val_bpc, 4),
            "load_at_start": round(load, 2)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("data_lake/token_shards"))
    p.add_argument("--tokenizer", type=Path, default=None, help="default: the lake's bpe_vocab")
    p.add_argument("--minutes", type=float, nargs="+", default=[8.0, 30.0, 60.0])
    p.add_argument("--only", choices=["auto", "fixed"], default=None)
    p.add_argument("--dtype", default="auto")
    args = p.parse_args()
    tokenizer_path = args.tokenizer or args.data.parent / "bpe_vocab" / "tokenizer.json"
    try:
        manifest = shards.read_manifest(args.data)
    except shards.ShardError as err:
        sys.exit(f"{err} (run `lexgpt run --only token_shards` first)")
    token_chars = load_token_chars(args.data, tokenizer_path)
    torch.set_flush_denormal(True)
    rows = []
    for minutes in args.minutes:
        for side in ("fixed", "auto"):
            if args.only in (None, side):
                rows.append(run_one(side, minutes, args.data, manifest["vocab_size"],
                                    manifest["splits"]["train"]["tokens"], token_chars, args.dtype))
                print(json.dumps(rows[-1]), flush=True)
    from lexgpt.evaluation import ngram

    baseline = ngram.baseline_from_shards(args.data, token_chars, order=5).val_bpc
    print("\n| budget | side | shape | params | steps | tokens/param | tokens/s | MFU | full-val bits/char |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mfu = "—" if r["mfu"] is None else f"{r['mfu']:.1%}"  # no known peak for a CPU
        print(f"| {r['budget_min']:g} min | {r['side']} | {r['shape']} | {r['params_M']}M | {r['steps']} | "
              f"{r['tokens_per_param']} | {r['tokens_per_s']:,} | {mfu} | {r['val_bpc']:.4f} |")
    print(f"| — | token 5-gram Kneser-Ney | | | | | | | {baseline:.4f} |")


if __name__ == "__main__":
    main()
