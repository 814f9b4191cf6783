"""``preset: auto``: the shape follows the compute the budget buys, and data caps it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lexgpt.modeling.model import GPTConfig
from lexgpt.training import sizing

TRAIN = 12_000_000  # tokens in the train split (Lexicap's, at vocab 1000)


def _plan(flops: float, minutes: float = 8, train: int = TRAIN) -> sizing.SizedPlan:
    return sizing.size_for_budget(flops_per_s=flops, budget_s=minutes * 60, train_tokens=train, vocab_size=1000)


def test_more_compute_never_buys_a_smaller_model():
    plans = [_plan(f) for f in (2e10, 8e10, 3e11, 1e12, 1e13, 1e14, 1e15)]
    params = [p.params for p in plans]
    assert params == sorted(params) and len(set(params)) >= 5, params


def test_the_choice_is_the_rung_nearest_the_target_ratio():
    plan = _plan(8e10)
    ratio = plan.tokens / plan.params
    # No other rung of the ladder lands nearer the target (in log) for the same compute.
    compute = 8e10 * 480 * sizing.TRAIN_SHARE
    for n_layer, n_embd, n_head in sizing.LADDER:
        recipe, block, _ = sizing._shape_class(n_embd)
        cfg = GPTConfig(vocab_size=1000, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
        with torch.device("meta"):
            from lexgpt.modeling.model import GPT

            tokens = min(compute / GPT(cfg).estimate_flops_per_token(), sizing.MAX_EPOCHS * TRAIN)
        other = tokens / cfg.num_params()
        assert abs(math.log(ratio / sizing.TOKENS_PER_PARAM)) <= abs(math.log(other / sizing.TOKENS_PER_PARAM)) + 1e-6
    assert plan.max_steps == 0 and plan.dropout == 0.0  # compute-bound: the clock ends the run


def test_cpu_shapes_keep_the_step_size_and_attention_within_a_sixth():
    cpu = [n_embd for _, n_embd, _ in sizing.LADDER if sizing._shape_class(n_embd)[0] == "cpu-small"]
    assert len(cpu) >= 4
    for n_embd in cpu:
        _, block, batch = sizing._shape_class(n_embd)
        assert block * batch == 4096, n_embd  # cpu-small's tokens per step, whatever the context
        # attention's ~12 L T d FLOPs a token within a sixth of the weights' ~72 L d^2, at the floor of 128
        assert block == 128 or block <= n_embd, (n_embd, block)
    assert max(sizing._shape_class(n)[1] for n in cpu) > 128  # the widest take a longer context


def test_a_data_bound_run_stops_after_max_epochs_with_dropout():
    plan = _plan(4e14, minutes=10)  # an H100-class budget: far more compute than data
    assert plan.recipe == "gpu-small" and plan.epochs == pytest.approx(sizing.MAX_EPOCHS, rel=1e-3)
    assert plan.max_steps == math.ceil(sizing.MAX_EPOCHS * TRAIN / (plan.batch_size * plan.block_size))
    assert plan.dropout > 0
    # A smaller train split makes the data-bound choice smaller too.
    assert _plan(4e14, minutes=10, train=TRAIN // 8).params < plan.params


@pytest.mark.parametrize("bad", [dict(flops_per_s=0), dict(budget_s=-1), dict(train_tokens=0)])
def test_nonsense_inputs_are_refused(bad):
    args = dict(flops_per_s=1e11, budget_s=480, train_tokens=TRAIN, vocab_size=1000) | bad
    with pytest.raises(ValueError, match="positive"):
        sizing.size_for_budget(**args)


def test_the_probe_is_measured_once_per_machine(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sizing, "probe_flops_per_s", lambda device, dtype: calls.append(dtype) or 5e10)
    cache = tmp_path / "cache" / "throughput.json"
    cpu = torch.device("cpu")
    assert sizing.cached_flops_per_s(cpu, cache) == (5e10, True)
    assert sizing.cached_flops_per_s(cpu, cache) == (5e10, False)
    assert len(calls) == 1 and json.loads(cache.read_text()) == {f"{sizing.machine_fingerprint(cpu)}|auto|eager": 5e10}
    # A corrupt or hostile cache is measured again, not trusted.
    for junk in ("not json", json.dumps({f"{sizing.machine_fingerprint(cpu)}|auto|eager": -1}), "[1]"):
        cache.write_text(junk)
        assert sizing.cached_flops_per_s(cpu, cache) == (5e10, True)
    assert len(calls) == 4
    # A cache that cannot be written is measured each time, and says so; training goes on.
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    assert sizing.cached_flops_per_s(cpu, blocked / "throughput.json") == (5e10, True)


def test_the_compile_factor_counts_only_when_the_run_compiles(monkeypatch):
    seen = []
    monkeypatch.setattr(sizing, "cached_flops_per_s", lambda device, cache, dtype: (5e10, False))
    monkeypatch.setattr(sizing, "size_for_budget", lambda flops, *args, ranks: seen.append((flops, ranks)))
    factor = sizing.COMPILE_SPEEDUP[("cpu", "float32")]
    for compile in (False, True):
        sizing.plan_here(480, TRAIN, 1000, dtype="float32", compile=compile)
    assert seen == [(5e10, 1), (5e10 * factor, 1)] and factor != 1.0
    # CPU ranks on one machine share its cores: no more FLOP/s, but each step is theirs together.
    sizing.plan_here(480, TRAIN, 1000, ranks=2, dtype="float32", compile=False)
    assert seen[-1] == (5e10, 2)


def test_a_data_bound_plan_on_several_ranks_divides_its_steps():
    one, four = _plan(4e14, minutes=10), sizing.size_for_budget(4e14, 600, TRAIN, 1000, ranks=4)
    assert (four.n_layer, four.n_embd, four.tokens) == (one.n_layer, one.n_embd, one.tokens)
    # Each of the 4 ranks takes a batch a step: a quarter of the steps see the same tokens.
    assert four.max_steps == math.ceil(sizing.MAX_EPOCHS * TRAIN / (four.batch_size * four.block_size * 4))


def test_the_probe_measures_this_machine():
    flops = sizing.probe_flops_per_s(torch.device("cpu"), "float32", steps=1)
    assert 1e8 < flops < 1e14  # a CPU core does 1-1000 GFLOP/s
    # What a GPU's probe runs in (its CUDA context must not outlive it): a child process.
    assert 1e8 < sizing.probe_in_child(torch.device("cpu"), "float32") < 1e14
    with pytest.raises(RuntimeError, match="the throughput probe on cpu failed"):
        sizing.probe_in_child(torch.device("cpu"), "float16")  # not a dtype the probe knows


def test_auto_takes_the_sized_shape_and_the_config_still_wins():
    from pipelines.assets.trained_model import TrainingConfig, training_plan

    plan = _plan(8e10)
    preset, model_cfg, train_cfg = training_plan(TrainingConfig(), 1000, sized=plan)
    assert preset == plan.recipe and (model_cfg.n_layer, model_cfg.n_embd) == (plan.n_layer, plan.n_embd)
    assert train_cfg.batch_size == plan.batch_size and train_cfg.max_steps == plan.max_steps
    _, model_cfg, train_cfg = training_plan(TrainingConfig(n_embd=256, n_head=4, batch_size=8), 1000, sized=plan)
    assert model_cfg.n_embd == 256 and model_cfg.n_layer == plan.n_layer and train_cfg.batch_size == 8
    with pytest.raises(ValueError, match="sized plan"):
        training_plan(TrainingConfig(), 1000)
