"""Optimizers and the learning-rate schedule.

Muon (``torch.optim.Muon``) orthogonalises the momentum of each 2-D hidden matrix before the
step, which makes every direction of the update count: on small models it reaches a given
loss in far fewer steps than AdamW. It is defined for matrices only, so the embedding, the
output head and the norm gains (1-D) go to AdamW, each group with its own learning rate.

The schedule is driven by *progress* in [0, 1] (the larger of steps and time used, so a
run with a time budget anneals on time): linear warmup over the first steps, a constant
plateau, then a linear warmdown to ``min_lr_frac`` of each group's base rate over the last
``warmdown`` fraction of the run (warmup-stable-decay).

>>> lr_multiplier(progress=0.5, step=100, warmup_steps=10, warmdown=0.4, min_lr_frac=0.0)
1.0
>>> round(lr_multiplier(progress=0.8, step=100, warmup_steps=10, warmdown=0.4, min_lr_frac=0.0), 6)
0.5
>>> lr_multiplier(progress=0.0, step=4, warmup_steps=10, warmdown=0.4, min_lr_frac=0.0)
0.5
"""

from __future__ import annotations

import inspect

import torch

from lexgpt.modeling.model import GPT
from lexgpt.training.muon import Muon


def lr_multiplier(progress: float, step: int, warmup_steps: int, warmdown: float, min_lr_frac: float) -> float:
    """Multiplier on each group's base lr at ``step`` / ``progress`` (see the module doc)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if warmdown <= 0 or progress < 1.0 - warmdown:
        return 1.0
    left = max(0.0, 1.0 - progress) / warmdown  # 1 -> 0 across the warmdown
    return min_lr_frac + (1.0 - min_lr_frac) * left


def build_optimizers(
    model: GPT,
    *,
    optimizer: str = "muon",
    matrix_lr: float = 0.03,
    embedding_lr: float = 0.3,
    head_lr: float = 0.004,
    scalar_lr: float = 0.004,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.8, 0.95),
    device_type: str = "cpu",
) -> list[torch.optim.Optimizer]:
    """The optimizers for ``model``; each param group remembers its base lr as ``base_lr``.

    ``optimizer="muon"``: Muon on the blocks' 2-D matrices (lr ``matrix_lr``), AdamW on the
    rest. ``optimizer="adamw"``: AdamW everywhere, matrices at ``matrix_lr`` with
    ``weight_decay``, the classic recipe (for comparisons).
    """
    if optimizer not in ("muon", "adamw"):
        raise ValueError(f"optimizer must be 'muon' or 'adamw', got {optimizer!r}")
    seen: set[int] = set()

    def unique(params):  # a tied matrix appears once
        out = [p for p in params if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in out)
        return out

    matrices = unique(p for p in model.layers.parameters() if p.dim() == 2)
    embedding = unique([model.embed_tokens.weight])
    head = unique([model.lm_head.weight])
    scalars = unique(model.parameters())  # what is left: norm gains
    # A tied embedding is also the head: it takes the head's (smaller, safer) rate.
    embed_group = {"params": embedding, "lr": head_lr if model.config.tie_embeddings else embedding_lr}
    adam_groups = [
        embed_group,
        {"params": head, "lr": head_lr},
        {"params": scalars, "lr": scalar_lr},
    ]
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    extra = {"fused": True} if fused else {}
    if optimizer == "adamw":
        adam_groups.append({"params": matrices, "lr": matrix_lr, "weight_decay": weight_decay})
        optimizers: list[torch.optim.Optimizer] = []
    else:
        # Keller Jordan's scaling (sqrt(max(1, rows/cols))). His and nanochat's lr is 0.02; 0.03
        # measured better for cpu-small (BENCHMARKS.md). The recipe's values live in TrainConfig.
        # lexgpt.training.muon.Muon: torch's update, its iteration batched, in fp32 on CPUs without
        # native bf16 (45x faster there than torch's bf16 one, bench/muon.py), else in bf16 as torch does.
        optimizers = [Muon(matrices, lr=matrix_lr, weight_decay=weight_decay)]
    adam_groups = [g for g in adam_groups if g["params"]]
    optimizers.insert(0, torch.optim.AdamW(adam_groups, betas=betas, eps=1e-10, weight_decay=0.0, **extra))
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return optimizers
