"""The GPT: causality, initial loss, capacity, KV-cache forward, configs."""

from __future__ import annotations

import math

import pytest
import torch

from lexgpt.generate import KVCache
from lexgpt.model import GPT, PRESETS, GPTConfig


def tiny(**kw) -> GPTConfig:
    base = dict(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    return GPTConfig(**{**base, **kw})


def test_logits_at_t_ignore_tokens_after_t():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    idx = torch.randint(0, 50, (2, 32))
    t = 12
    changed = idx.clone()
    changed[:, t + 1 :] = torch.randint(0, 50, (2, 32 - t - 1))
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])  # later positions do see them


def test_gradient_of_early_logits_does_not_reach_later_tokens():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    emb = model.transformer.wte
    idx = torch.randint(0, 50, (1, 16))
    x = emb(idx).detach().requires_grad_(True)
    # Run the blocks by hand on embeddings so we can differentiate w.r.t. each position.
    h = x + model.transformer.wpe(torch.arange(16))
    for block in model.transformer.h:
        h = block(h)
    h[0, 5].sum().backward()
    assert x.grad[0, 6:].abs().max() == 0
    assert x.grad[0, :6].abs().max() > 0


@pytest.mark.parametrize("preset", ["cpu-tiny", "gpu-small"])
def test_initial_loss_is_ln_vocab(preset):
    torch.manual_seed(0)
    vocab = 1000
    cfg = GPTConfig.from_preset(preset, vocab, block_size=64)
    model = GPT(cfg).eval()
    idx = torch.randint(0, vocab, (4, 64))
    targets = torch.randint(0, vocab, (4, 64))
    with torch.no_grad():
        _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(vocab)) < 0.3


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 50, (4, 17))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = model.configure_optimizers(0.0, 3e-3)
    for _ in range(200):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_ignore_index_targets():
    model = GPT(tiny()).eval()
    idx = torch.randint(0, 50, (1, 8))
    y = torch.full((1, 8), -1)
    y[0, 3] = 7
    logits, loss = model(idx, y)
    expected = torch.nn.functional.cross_entropy(logits[0, 3:4], y[0, 3:4])
    torch.testing.assert_close(loss, expected)


def test_kv_cache_forward_matches_full_forward():
    torch.manual_seed(0)
    model = GPT(tiny()).double().eval()
    idx = torch.randint(0, 50, (2, 20))
    cache = KVCache.for_model(model, batch_size=2)
    with torch.no_grad():
        full, _ = model(idx)
        parts = [model(idx[:, :7], kv_cache=cache, start_pos=0)[0]]  # prefill
        parts.append(model(idx[:, 7:11], kv_cache=cache, start_pos=7)[0])  # a chunk
        for t in range(11, 20):  # one token at a time
            parts.append(model(idx[:, t : t + 1], kv_cache=cache, start_pos=t)[0])
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=0, atol=1e-10)


def test_positions_past_block_size_are_refused():
    model = GPT(tiny(block_size=8))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_config_roundtrip_and_presets():
    cfg = GPTConfig.from_preset("seed-76m", 1000, dropout=0.0)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.block_size) == (24, 512, 16, 256)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    assert set(PRESETS) >= {"cpu-tiny", "gpu-small", "seed-76m"}
    with pytest.raises(KeyError):
        GPTConfig.from_preset("nope", 10)
    with pytest.raises(ValueError):
        GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=3, n_embd=8)


def test_tied_weights_and_optimizer_groups():
    model = GPT(tiny())
    assert model.lm_head.weight is model.transformer.wte.weight
    opt = model.configure_optimizers(0.1, 1e-3)
    decay, no_decay = opt.param_groups
    all_ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) == len(list(model.parameters()))
    assert any(p is model.lm_head.weight for p in decay["params"])
    assert any(p is model.transformer.wpe.weight for p in no_decay["params"])
    assert all(p.dim() >= 2 for p in decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_flops_per_token():
    model = GPT(tiny())
    cfg = model.config
    expected = 6 * model.num_params() + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
    assert model.estimate_flops_per_token() == expected
