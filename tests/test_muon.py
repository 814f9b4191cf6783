"""lexgpt.training.muon.Muon is torch.optim.Muon's update, batched over equal shapes, in a dtype per device."""

from __future__ import annotations

import pytest
import torch

from lexgpt.training import device as device_module
from lexgpt.training import muon as muon_module
from lexgpt.training.muon import Muon, orthogonalize


def _params(seed: int) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)  # two matrices of one shape (batched together), one tall, one wide
    return [torch.nn.Parameter(torch.randn(*s) * 0.02) for s in ((64, 32), (64, 32), (96, 32), (32, 80))]


def _run(make_opt, steps: int = 3) -> list[torch.Tensor]:
    params = _params(0)
    opt = make_opt(params)
    torch.manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    return [p.detach() for p in params], opt


def test_same_updates_as_torch_when_the_iteration_runs_in_bfloat16():
    ours, ours_opt = _run(lambda ps: Muon(ps, lr=0.02, weight_decay=0.1, ns_dtype=torch.bfloat16))
    theirs, torch_opt = _run(lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=0.1))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the same state: a checkpoint of one loads into the other
    for p_ours, p_torch in zip(ours_opt.param_groups[0]["params"], torch_opt.param_groups[0]["params"]):
        torch.testing.assert_close(ours_opt.state[p_ours]["momentum_buffer"],
                                   torch_opt.state[p_torch]["momentum_buffer"], rtol=0, atol=0)


def test_float32_iteration_is_close_to_torchs_bfloat16_one():
    ours, _ = _run(lambda ps: Muon(ps, lr=0.02, ns_dtype=torch.float32))
    theirs, _ = _run(lambda ps: torch.optim.Muon(ps, lr=0.02))
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max() < 0.02 * 3 * 0.05  # lr x steps x bf16's few-percent rounding


@pytest.mark.parametrize("fast_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_the_cpu_iteration_runs_in_bfloat16_only_where_bf16_matmuls_are_native(monkeypatch, fast_bf16, expected):
    # An AVX2-only CPU runs a bf16 matmul of this size ~45x slower than fp32; AVX512-BF16 or
    # AMX run it ~2x faster (bench/muon.py). An explicit ns_dtype wins either way.
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    seen = []
    monkeypatch.setattr(muon_module, "orthogonalize", lambda batch, *a: seen.append(batch.dtype) or batch)

    def step(opt):
        for p in opt.param_groups[0]["params"]:
            p.grad = torch.randn_like(p)
        seen.clear()
        opt.step()
        return set(seen)

    assert step(Muon(_params(0), lr=0.02)) == {expected}
    assert step(Muon(_params(0), lr=0.02, ns_dtype=torch.float64)) == {torch.float64}


def test_orthogonalize_gives_singular_values_near_one_for_a_batch():
    torch.manual_seed(2)
    batch = torch.randn(3, 48, 16, dtype=torch.float64)
    singular = torch.linalg.svdvals(orthogonalize(batch))
    assert singular.min() > 0.5 and singular.max() < 1.5  # the quintic's band, not exactly 1
