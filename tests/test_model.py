"""The GPT: causality (with and without the KV cache), initial loss, capacity, configs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lexgpt.generation.generate import KVCache
from lexgpt.modeling.checkpoint import load_model, save_model
from lexgpt.modeling.model import GPT, MAX_PARAMS, PRESETS, GPTConfig, causal_attention
from lexgpt.training.optim import build_optimizers


def tiny(**kw) -> GPTConfig:
    base = dict(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    return GPTConfig(**{**base, **kw})


def trained_a_little(cfg: GPTConfig) -> GPT:
    """Zero-initialised projections make a fresh model ignore its context entirely, which
    would let causality tests pass vacuously: give every weight random values first."""
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


@pytest.mark.parametrize("tie", [False, True])
def test_logits_at_t_ignore_tokens_after_t(tie):
    model = trained_a_little(tiny(tie_embeddings=tie))
    idx = torch.randint(0, 50, (2, 32))
    t = 12
    changed = idx.clone()
    changed[:, t + 1 :] = (idx[:, t + 1 :] + 1) % 50
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])  # later positions do see them


def test_causality_holds_through_the_kv_cache():
    model = trained_a_little(tiny()).double()
    idx = torch.randint(0, 50, (1, 24))
    changed = idx.clone()
    changed[:, 16:] = (idx[:, 16:] + 1) % 50
    outs = []
    for seq in (idx, changed):
        cache = KVCache.for_model(model)
        with torch.no_grad():
            first = model(seq[:, :10], kv_cache=cache, start_pos=0)[0]
            rest = [model(seq[:, t : t + 1], kv_cache=cache, start_pos=t)[0] for t in range(10, 24)]
        outs.append(torch.cat([first, *rest], dim=1))
    torch.testing.assert_close(outs[0][:, :16], outs[1][:, :16], rtol=0, atol=1e-12)
    assert not torch.allclose(outs[0][:, 16:], outs[1][:, 16:])


def test_gradient_of_early_logits_does_not_reach_later_tokens():
    model = trained_a_little(tiny())
    idx = torch.randint(0, 50, (1, 16))
    x = model.embed_tokens(idx).detach().requires_grad_(True)
    # Run the blocks by hand on embeddings so we can differentiate w.r.t. each position.
    from lexgpt.modeling.model import rope_cos_sin

    rope = rope_cos_sin(torch.arange(16), model.config.head_dim, model.config.rope_theta)
    h = x
    for block in model.layers:
        h = block(h, rope)
    h[0, 5].sum().backward()
    assert x.grad[0, 6:].abs().max() == 0
    assert x.grad[0, :6].abs().max() > 0


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_initial_loss_is_ln_vocab(preset):
    # Untied, zero-initialised head: exactly uniform. (A tied head cannot start uniform: with
    # identity blocks and a final norm it starts by predicting its input token.)
    torch.manual_seed(0)
    vocab = 1000
    cfg = GPTConfig.from_preset(preset, vocab, block_size=64)
    model = GPT(cfg).eval()
    idx = torch.randint(0, vocab, (4, 64))
    targets = torch.randint(0, vocab, (4, 64))
    with torch.no_grad():
        _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(vocab)) < 0.1


@pytest.mark.parametrize("optimizer", ["muon", "adamw"])
def test_tiny_model_overfits_one_batch(optimizer):
    torch.manual_seed(0)
    model = GPT(tiny())
    idx = torch.randint(0, 50, (4, 17))
    x, y = idx[:, :-1], idx[:, 1:]
    lrs = dict(matrix_lr=0.02, embedding_lr=0.05, head_lr=0.01) if optimizer == "muon" else dict(matrix_lr=3e-3)
    opts = build_optimizers(model, optimizer=optimizer, **lrs)
    for _ in range(150):
        _, loss = model(x, y)
        for o in opts:
            o.zero_grad()
        loss.backward()
        for o in opts:
            o.step()
    assert loss.item() < 0.1


def test_ignore_index_targets():
    model = trained_a_little(tiny())
    idx = torch.randint(0, 50, (1, 8))
    y = torch.full((1, 8), -1)
    y[0, 3] = 7
    logits, loss = model(idx, y)
    expected = torch.nn.functional.cross_entropy(logits[0, 3:4], y[0, 3:4])
    torch.testing.assert_close(loss, expected)


def test_kv_cache_forward_matches_full_forward():
    model = trained_a_little(tiny()).double()
    idx = torch.randint(0, 50, (2, 20))
    cache = KVCache.for_model(model, batch_size=2)
    with torch.no_grad():
        full, _ = model(idx)
        parts = [model(idx[:, :7], kv_cache=cache, start_pos=0)[0]]  # prefill
        parts.append(model(idx[:, 7:11], kv_cache=cache, start_pos=7)[0])  # a chunk
        for t in range(11, 20):  # one token at a time
            parts.append(model(idx[:, t : t + 1], kv_cache=cache, start_pos=t)[0])
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_written_out_attention_is_sdpa_causal(dtype):
    # CPU training uses causal_attention; the KV cache and CUDA use SDPA: same maths.
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, dtype=dtype) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(causal_attention(q, k, v), expected, rtol=0, atol=tol)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 9:], v2[:, :, 9:] = 0.0, 5.0  # keys and values after position 8 change
    torch.testing.assert_close(causal_attention(q, k2, v2)[:, :, :9], causal_attention(q, k, v)[:, :, :9])


def test_rope_scores_depend_only_on_relative_position():
    # Shifting every position by the same offset leaves the logits unchanged: the property
    # that lets a generation window roll without recomputing its cache.
    model = trained_a_little(tiny()).double()
    idx = torch.randint(0, 50, (1, 12))
    with torch.no_grad():
        a = model(idx)[0]
        b = _forward_at(model, idx, start=10_000)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)  # cos/sin tables are float32


def _forward_at(model: GPT, idx: torch.Tensor, start: int) -> torch.Tensor:
    from lexgpt.modeling.model import rope_cos_sin

    T = idx.size(1)
    rope = rope_cos_sin(torch.arange(start, start + T), model.config.head_dim, model.config.rope_theta)
    x = model.embed_tokens(idx)
    for block in model.layers:
        x = block(x, rope)
    return model.lm_head(model.norm(x))


def test_more_tokens_than_block_size_are_refused():
    model = GPT(tiny(block_size=8))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_config_roundtrip_presets_and_validation():
    cfg = GPTConfig.from_preset("gpu-small", 1000, dropout=0.0)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    assert GPTConfig.from_preset("cpu-tiny", 1000) == GPTConfig.from_preset("cpu-small", 1000)  # old name
    assert cfg.mlp_hidden % 64 == 0 and cfg.mlp_hidden >= 8 * cfg.n_embd // 3
    with pytest.raises(KeyError):
        GPTConfig.from_preset("nope", 10)
    bad = [dict(n_head=3, n_embd=8), dict(n_head=0), dict(n_head=-1), dict(block_size=10**9),
           dict(vocab_size=2.5), dict(n_layer="4"), dict(dropout=1.5), dict(n_head=8, n_embd=8)]  # fmt: skip
    for kw in bad:
        with pytest.raises(ValueError):
            GPTConfig(**{**dict(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8), **kw})
    with pytest.raises(ValueError, match="unknown"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_heads": 4})


SMALL = dict(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8)


@pytest.mark.parametrize("bad", [
    dict(rope_theta=0), dict(rope_theta=-1.0), dict(rope_theta=math.nan), dict(rope_theta=math.inf),
    dict(rope_theta="1e4"), dict(norm_eps=0), dict(norm_eps=-1e-6), dict(norm_eps=math.nan),
    dict(tie_embeddings="no"), dict(tie_embeddings=1), dict(dropout=1.0), dict(dropout=-0.1),
    dict(dropout=math.nan), dict(dropout="0.1"),
])  # fmt: skip
def test_model_config_refuses_bad_numbers(bad):
    (name, value), = bad.items()
    with pytest.raises(ValueError, match=f"{name}="):
        GPTConfig(**{**SMALL, **bad})


def test_model_config_bounds_the_product_of_sizes():
    # Each size is within its own limit; together they are 52B parameters.
    with pytest.raises(ValueError, match="over the limit"):
        GPTConfig(vocab_size=32_000, block_size=512, n_layer=64, n_head=64, n_embd=8192)
    with pytest.raises(ValueError, match="over the limit"):
        GPTConfig(vocab_size=10, block_size=8, n_layer=256, n_head=32, n_embd=4096)
    # A 4096-wide model: 8 layers are 1.88B numbers (allowed), 9 are 2.08B (refused).
    wide = dict(vocab_size=32_000, block_size=1024, n_head=32, n_embd=4096)
    assert GPTConfig(n_layer=8, **wide).allocated_numbers() <= MAX_PARAMS
    with pytest.raises(ValueError, match="n_layer=9.*over the limit"):
        GPTConfig(n_layer=9, **wide)
    # Every preset, even at the largest vocab and tied or not, is far below the cap.
    for preset in PRESETS:
        for tie in (False, True):
            assert GPTConfig.from_preset(preset, 65_536, tie_embeddings=tie).allocated_numbers() < MAX_PARAMS / 10


@pytest.mark.parametrize("kw", [dict(), dict(tie_embeddings=True), dict(mlp_hidden=100, n_layer=3)])
def test_model_config_counts_the_parameters_the_model_has(kw):
    cfg = GPTConfig(**{**SMALL, **kw})
    assert cfg.num_params() == GPT(cfg).num_params()  # the cap counts what is really allocated


def test_a_tampered_config_json_is_refused_before_anything_is_allocated(tmp_path):
    save_model(GPT(GPTConfig(**SMALL)), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "n_layer": 64, "n_embd": 8192, "n_head": 64}))
    with pytest.raises(ValueError, match="config.json.*over the limit"):
        load_model(tmp_path)  # would be ~200 GB of float32 if it were built


def test_tied_weights_and_optimizer_groups():
    model = GPT(tiny(tie_embeddings=True))
    assert model.lm_head.weight is model.embed_tokens.weight
    adamw, muon = build_optimizers(model)
    assert isinstance(muon, torch.optim.Muon)
    all_ids = [id(p) for o in (adamw, muon) for g in o.param_groups for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) == len(list(model.parameters()))
    assert all(p.dim() == 2 for g in muon.param_groups for p in g["params"])
    hidden = {id(p) for b in model.layers for n, p in b.named_parameters() if p.dim() == 2}
    assert {id(p) for g in muon.param_groups for p in g["params"]} == hidden
    (only,) = build_optimizers(model, optimizer="adamw")
    assert isinstance(only, torch.optim.AdamW)


def test_output_projections_start_at_zero():
    model = GPT(tiny())
    for block in model.layers:
        assert block.self_attn.o_proj.weight.abs().max() == 0
        assert block.mlp.down_proj.weight.abs().max() == 0
    assert all(not any("bias" in n for n, _ in m.named_parameters()) for m in model.modules())


def test_flops_per_token():
    model = GPT(tiny())
    cfg = model.config
    matmul = model.num_params() - model.embed_tokens.weight.numel()
    expected = 6 * matmul + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
    assert model.estimate_flops_per_token() == expected
