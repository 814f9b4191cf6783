"""Muon with its Newton-Schulz iteration batched over equal shapes, in a dtype chosen per device.

``torch.optim.Muon`` orthogonalises each matrix's update on its own, always in bfloat16.
On a CPU without fast bf16 kernels (AVX2 only; measured on an AMD EPYC) an eager bf16 matmul
of the iteration's size ran 45x slower than float32 (0.34 s against 7.5 ms for
512x512 @ 512x1408), so one gpu-small optimizer step took ~135 s on CPU. Where bf16 is
native (AVX512-BF16, AMX) it is the faster one: cpu-small's step took 30 ms against 59 ms in
float32 on an AVX512-BF16 EPYC (bench/muon.py). This subclass keeps torch's update rule,
hyper-parameters and state (``momentum_buffer``, so checkpoints load in either) and changes
only how the iteration runs:

- in ``ns_dtype``: bfloat16 where bf16 matmuls are native (CUDA, as torch does; CPUs with
  AVX512-BF16 or AMX), float32 on the others (:func:`ns_dtype_for`);
- over all matrices of one shape at once (``torch.baddbmm``), a few kernel launches per
  shape instead of ~15 per matrix.

>>> w = torch.nn.Parameter(torch.randn(8, 4))
>>> w.grad = torch.randn(8, 4)
>>> opt = Muon([w], lr=0.02)
>>> opt.step()
>>> sorted(opt.state[w])
['momentum_buffer']
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from lexgpt.training.device import native_bf16

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's (Keller Jordan's quintic)


def orthogonalize(updates: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                  coefficients: tuple[float, float, float] = NS_COEFFICIENTS) -> torch.Tensor:
    """Newton-Schulz approximation of U V^T for a batch of matrices ``(B, m, n)``, in the
    input's dtype. Same iteration as ``torch.optim.Muon`` (a quintic, ``steps`` times)."""
    a, b, c = coefficients
    tall = updates.size(-2) > updates.size(-1)
    x = updates.mT if tall else updates  # (B, r, k) with r <= k: the Gram matrix is r x r
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm <= 1
    for _ in range(steps):
        gram = x @ x.mT  # (B, r, r)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, poly, x, beta=a)
    return x.mT if tall else x


def ns_dtype_for(device: torch.device) -> torch.dtype:
    """The iteration's default dtype on ``device``: bfloat16 where it is native, else float32."""
    return torch.bfloat16 if native_bf16(device) else torch.float32


class Muon(torch.optim.Muon):
    """``torch.optim.Muon`` with a batched iteration in ``ns_dtype`` (None: :func:`ns_dtype_for`
    the parameters' device)."""

    def __init__(self, params, *args, ns_dtype: torch.dtype | None = None, **kwargs) -> None:
        super().__init__(params, *args, **kwargs)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        lr, momentum, wd = float(group["lr"]), group["momentum"], group["weight_decay"]
        by_shape: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - momentum)
            update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
            by_shape[(tuple(p.shape), p.device)].append((p, update))
        for (shape, device), items in by_shape.items():
            batch = torch.stack([u for _, u in items]).to(self.ns_dtype or ns_dtype_for(device))
            ortho = orthogonalize(batch, group["ns_steps"], group["eps"], group["ns_coefficients"])
            adjusted = lr * _lr_ratio(group["adjust_lr_fn"], shape)
            for (p, _), o in zip(items, ortho):
                p.mul_(1 - lr * wd)
                p.add_(o.to(p.dtype), alpha=-adjusted)


def _lr_ratio(adjust_lr_fn: str | None, shape: tuple[int, int]) -> float:
    """torch.optim.Muon's learning-rate scaling for a ``shape`` matrix."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0
