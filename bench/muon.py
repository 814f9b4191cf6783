"""Muon's optimizer step alone: ``torch.optim.Muon`` (per matrix, bfloat16) against
``lexgpt.training.muon.Muon`` (batched by shape; on a CPU in float32, or in bfloat16 where bf16
matmuls are native), on a preset's matrices.

    python bench/muon.py --preset cpu-small --repeat 5

Prints one JSON line per implementation: seconds per step (median), and the largest
difference of the updated weights from torch's with the iteration in bfloat16 (same math).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.training.muon import Muon, ns_dtype_for


def _matrices(model: GPT) -> list[torch.nn.Parameter]:
    return [p for p in model.layers.parameters() if p.dim() == 2]


def time_steps(make_opt, model: GPT, repeat: int) -> tuple[float, GPT]:
    model = copy.deepcopy(model)
    params = _matrices(model)
    opt = make_opt(params)
    torch.manual_seed(0)
    grads = [torch.randn_like(p) * 1e-2 for p in params]
    seconds = []
    for _ in range(repeat):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        start = time.perf_counter()
        opt.step()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset(args.preset, 1000))
    with torch.no_grad():
        for w in _matrices(model):
            w.normal_(0, 0.02)  # projections start at zero; give every matrix a spread
    torch_s, torch_model = time_steps(lambda ps: torch.optim.Muon(ps, lr=0.02), model, args.repeat)
    ours = ns_dtype_for(torch.device("cpu"))
    ours_s, _ = time_steps(lambda ps: Muon(ps, lr=0.02), model, args.repeat)
    fp32_s, _ = time_steps(lambda ps: Muon(ps, lr=0.02, ns_dtype=torch.float32), model, args.repeat)
    _, same_math = time_steps(lambda ps: Muon(ps, lr=0.02, ns_dtype=torch.bfloat16), model, args.repeat)
    diff = max((a - b).abs().max().item() for a, b in zip(_matrices(torch_model), _matrices(same_math)))
    n = len(_matrices(model))
    print(json.dumps({"preset": args.preset, "matrices": n, "impl": "torch.optim.Muon (bf16, per matrix)",
                      "step_s": round(torch_s, 4)}))
    print(json.dumps({"preset": args.preset, "matrices": n, "impl": f"lexgpt.training.muon.Muon (batched, {ours})",
                      "step_s": round(ours_s, 4), "speedup": round(torch_s / ours_s, 1),
                      "max_weight_diff_vs_torch_in_bf16": diff}))
    print(json.dumps({"preset": args.preset, "matrices": n, "impl": "lexgpt.training.muon.Muon (batched, float32)",
                      "step_s": round(fp32_s, 4), "speedup": round(torch_s / fp32_s, 1)}))


if __name__ == "__main__":
    main()
