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


def _one_step_update(opt_factory) -> list[torch.Tensor]:
    params = _params(0)
    before = [p.detach().clone() for p in params]
    opt = opt_factory(params)
    torch.manual_seed(1)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    return [b - p.detach() for b, p in zip(before, params)]


def test_normuon_evens_out_the_rows_of_the_update_and_keeps_muons_step_size():
    plain = _one_step_update(lambda ps: Muon(ps, lr=0.02, weight_decay=0.0, ns_dtype=torch.float64))
    nor = _one_step_update(lambda ps: Muon(ps, lr=0.02, weight_decay=0.0, ns_dtype=torch.float64,
                                           neuron_beta2=0.95))  # torch's default decay is 0.1
    for m, n in zip(plain, nor):
        torch.testing.assert_close(n.norm(), m.norm(), rtol=1e-5, atol=0)  # same overall step
        plain_rows, nor_rows = m.pow(2).mean(dim=1).sqrt(), n.pow(2).mean(dim=1).sqrt()
        # After one step each row was divided by its own RMS: all rows of equal size, which
        # Newton-Schulz alone does not give (its singular values are only near one).
        assert nor_rows.std() / nor_rows.mean() < 1e-4
        assert plain_rows.std() / plain_rows.mean() > 1e-3


def test_a_plain_muon_state_resumes_as_normuon():
    params = _params(0)
    plain = Muon(params, lr=0.02)
    for p in params:
        p.grad = torch.randn_like(p)
    plain.step()
    nor = Muon(params, lr=0.02, neuron_beta2=0.95)
    nor.load_state_dict(plain.state_dict())  # a checkpoint written before NorMuon
    nor.step()
    assert nor.state[params[0]]["neuron_second_moment"].shape == (params[0].size(0), 1)
    with pytest.raises(ValueError, match="neuron_beta2"):
        Muon(params, lr=0.02, neuron_beta2=1.0)


@pytest.mark.parametrize("beta2, expected", [(0.0, None), (0.9, 0.9)])
def test_the_train_configs_normuon_beta2_reaches_the_optimizer(beta2, expected):
    from lexgpt.modeling.model import GPT, GPTConfig
    from lexgpt.training.optim import build_optimizers

    model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16))
    muon = [opt for opt in build_optimizers(model, normuon_beta2=beta2) if isinstance(opt, Muon)]
    assert [opt.neuron_beta2 for opt in muon] == [expected]
