"""KV-cache vs full-recompute generation speed (random-init weights: speed only).

    python bench/generate.py                       # the preset's block and block 1024
    python bench/generate.py --preset seed-76m --block-size 256

Both paths sample greedily from the same prompt and must produce the same tokens. With
``block_size`` below prompt + new tokens the window slides in hops (see
``lexgpt.generation.generate``): the cache re-encodes ``keep`` tokens once per hop instead of the
whole window every token.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lexgpt.generation.generate import generate
from lexgpt.modeling.model import GPT, GPTConfig


def timed(model: GPT, prompt: list[int], n: int, use_cache: bool, repeat: int = 1) -> tuple[float, list[int]]:
    """Best of ``repeat`` runs: on a shared machine the minimum is the least noisy."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = list(generate(model, prompt, n, temperature=0, use_cache=use_cache))
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--vocab-size", type=int, default=1000)
    p.add_argument("--block-size", type=int, nargs="*", default=None,
                   help="one or more; default: the preset's and 1024")  # fmt: skip
    p.add_argument("--new-tokens", type=int, default=800)
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3, help="report the best of N runs")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    blocks = args.block_size or sorted({GPTConfig.from_preset(args.preset, 1).block_size, 1024})
    prompt = torch.randint(0, args.vocab_size, (args.prompt_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    for block in blocks:
        torch.manual_seed(0)
        cfg = GPTConfig.from_preset(args.preset, args.vocab_size, block_size=block, dropout=0.0)
        model = GPT(cfg).to(args.device).eval()
        timed(model, prompt, 8, True)  # warm-up (allocator, kernels)
        t_cache, a = timed(model, prompt, args.new_tokens, True, args.repeat)
        t_full, b = timed(model, prompt, args.new_tokens, False, args.repeat)
        if a != b:
            n_same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
            print(f"warning: outputs diverge at token {n_same} (float ties)")
        print(json.dumps({
            "preset": args.preset, "params_M": round(model.num_params() / 1e6, 3), "block_size": block,
            "new_tokens": args.new_tokens, "device": args.device, "threads": torch.get_num_threads(),
            "kv_cache_s": round(t_cache, 3), "recompute_s": round(t_full, 3),
            "kv_cache_tok_s": round(args.new_tokens / t_cache), "speedup": round(t_full / t_cache, 1),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
