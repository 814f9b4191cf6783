"""The training loop: schedule, bpc, sampler, exact resume, DDP == single process, CLI."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from lexgpt.model import GPT, GPTConfig
from lexgpt.train import (
    BatchSampler,
    TrainConfig,
    bits_per_char,
    evaluate,
    load_model,
    lr_at,
    main,
    train,
)

from conftest import free_port

VOCAB = 32


def model_config(**kw) -> GPTConfig:
    base = dict(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    return GPTConfig(**{**base, **kw})


def write_shards(folder: Path, n_train: int = 20_000, n_val: int = 2_000) -> np.ndarray:
    """Tiny shards with learnable structure (a noisy repeating sequence)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    motif = rng.integers(1, VOCAB, size=50)
    for name, n in (("train.bin", n_train), ("val.bin", n_val)):
        ids = np.resize(motif, n)
        noise = rng.random(n) < 0.1
        ids[noise] = rng.integers(0, VOCAB, size=noise.sum())
        ids.astype("<u2").tofile(folder / name)
    (folder / "manifest.json").write_text(json.dumps({"vocab_size": VOCAB}))
    token_chars = (np.arange(VOCAB) % 4 + 1).astype(np.int64)
    np.save(folder / "token_chars.npy", token_chars)
    return token_chars


def test_lr_schedule_shape():
    cfg = TrainConfig(max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    lrs = [lr_at(s, cfg) for s in range(120)]
    assert lrs[0] == pytest.approx(1e-4)  # 1/10 of the way up
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))  # linear warmup
    assert lrs[9] == pytest.approx(1e-3) and lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101]))  # cosine decay
    assert lrs[55] == pytest.approx((1e-3 + 1e-4) / 2)  # halfway down at mid-cosine
    assert lrs[100] == pytest.approx(1e-4) and lrs[119] == pytest.approx(1e-4)
    # Under a time budget the cosine follows whichever of steps and time is further along.
    assert lr_at(20, cfg, progress=1.0) == pytest.approx(1e-4)
    assert lr_at(20, cfg, progress=0.0) == lr_at(20, cfg)


def test_presets_have_recipes():
    assert TrainConfig.for_preset("cpu-tiny") == TrainConfig()
    small = TrainConfig.for_preset("gpu-small", lr=1e-4)
    assert small.preset == "gpu-small" and small.lr == 1e-4 and small.grad_accum > 1
    assert TrainConfig.for_preset("seed-76m").lr < TrainConfig().lr


def test_bits_per_char_on_a_hand_checkable_case(tmp_path):
    assert bits_per_char(10 * math.log(2), 5) == pytest.approx(2.0)
    vocab, block = 16, 8
    val = (np.arange(33) * 5 % vocab).astype("<u2")
    val.tofile(tmp_path / "val.bin")
    token_chars = np.arange(vocab) % 3 + 1
    model = GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=1, n_head=1, n_embd=8))
    with torch.no_grad():
        model.lm_head.weight.zero_()  # uniform predictions: exactly ln 16 nats = 4 bits/token
    res = evaluate(model, tmp_path / "val.bin", block, 3, token_chars)
    targets = val[1:33].astype(np.int64)  # 4 windows x 8 targets, each scored once
    assert res["val_tokens"] == 32
    assert res["val_loss"] == pytest.approx(math.log(16))
    assert res["val_bpc"] == pytest.approx(32 * 4 / token_chars[targets].sum())
    part = evaluate(model, tmp_path / "val.bin", block, 3, token_chars, eval_tokens=16)
    assert part["val_tokens"] == 16
    assert part["val_bpc"] == pytest.approx(16 * 4 / token_chars[val[1:17]].sum())


def test_eval_is_deterministic(tmp_path):
    token_chars = write_shards(tmp_path)
    model = GPT(model_config(dropout=0.2))
    a = evaluate(model, tmp_path / "val.bin", 16, 8, token_chars, eval_tokens=500)
    b = evaluate(model, tmp_path / "val.bin", 16, 8, token_chars, eval_tokens=500)
    assert a == b and model.training  # mode is restored


def test_sampler_is_memmapped_and_keyed_by_batch_index(tmp_path):
    write_shards(tmp_path)
    s = BatchSampler(tmp_path / "train.bin", 16, 4, seed=3)
    assert isinstance(s.data, np.memmap)
    x, y = s.batch(5, torch.device("cpu"))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(s.batch(5, torch.device("cpu"))[0], x)
    assert not torch.equal(s.batch(6, torch.device("cpu"))[0], x)


class Crash(Exception):
    pass


def test_resume_gives_exactly_the_uninterrupted_losses(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    mc = model_config(dropout=0.1)  # dropout: the torch RNG state must be restored too
    tc = TrainConfig(
        max_steps=8, batch_size=4, grad_accum=2, lr=3e-3, warmup_steps=2, log_every=1,
        eval_every=4, eval_tokens=256, checkpoint_every=3, seed=0,
    )  # fmt: skip
    full = train(mc, tc, tmp_path / "data", tmp_path / "a", token_chars, progress=False)

    def crash(step, metrics):
        if step == 5:  # after the step-3 checkpoint, before the step-6 one
            raise Crash

    with pytest.raises(Crash):
        train(mc, tc, tmp_path / "data", tmp_path / "b", token_chars, on_metrics=crash, progress=False)
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["sampler"]["next_batch"] == 6
    seen = []
    resumed = train(
        mc, tc, tmp_path / "data", tmp_path / "b", token_chars,
        on_metrics=lambda s, m: seen.append(s), progress=False,
    )  # fmt: skip
    assert seen[0] == 4  # it did resume, not restart

    keys = ("step", "train_loss", "lr", "grad_norm", "val_loss", "val_bpc")
    strip = lambda h: [{k: r[k] for k in keys if k in r} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)  # exact, not approximate
    assert (resumed.val_loss, resumed.val_bpc, resumed.steps) == (full.val_loss, full.val_bpc, 8)
    a = torch.load(full.weights_path, weights_only=True)
    b = torch.load(resumed.weights_path, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full.tokens_seen == 8 * 4 * 2 * 16
    assert json.loads(full.config_path.read_text()) == mc.to_dict()
    assert load_model(tmp_path / "a").config == mc


def test_resume_refuses_a_different_model(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    tc = TrainConfig(max_steps=1, batch_size=2, log_every=1, eval_every=1, eval_tokens=32, checkpoint_every=1)
    train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=False)
    with pytest.raises(ValueError, match="checkpoint"):
        train(model_config(n_embd=64), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=False)


def test_learns_and_reports_metrics(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    tc = TrainConfig(max_steps=60, batch_size=8, lr=3e-3, warmup_steps=5, log_every=10, eval_every=30, eval_tokens=512, checkpoint_every=1000)
    calls = []
    res = train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars,
                on_metrics=lambda s, m: calls.append((s, m)), progress=False)  # fmt: skip
    assert [s for s, _ in calls] == [10, 20, 30, 40, 50, 60]
    assert {"train_loss", "lr", "grad_norm", "tokens_per_s", "tokens_seen"} <= set(calls[0][1])
    assert {"val_loss", "val_bpc"} <= set(calls[2][1])
    assert res.val_loss < math.log(VOCAB) - 0.5
    assert (tmp_path / "o" / "checkpoint.pt").exists()  # the final state is always saved


@pytest.mark.slow  # inductor compiles C++ kernels: ~25 s on 2 cores
def test_compiled_model_trains_like_eager(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    base = dict(max_steps=30, batch_size=4, log_every=10, eval_every=1000, eval_tokens=256, checkpoint_every=1000)
    eager = train(model_config(), TrainConfig(**base), tmp_path / "data", tmp_path / "e", token_chars, progress=False)
    compiled = train(model_config(), TrainConfig(**base, compile=True), tmp_path / "data", tmp_path / "c",
                     token_chars, progress=False)  # fmt: skip
    losses = lambda r: [h["train_loss"] for h in r.history if "train_loss" in h]  # noqa: E731
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-4)
    assert compiled.val_bpc == pytest.approx(eager.val_bpc, rel=1e-4)
    # Weights are saved from the uncompiled module: no "_orig_mod." prefix.
    state = torch.load(compiled.weights_path, weights_only=True)
    assert set(state) == set(torch.load(eager.weights_path, weights_only=True))


def test_time_budget_stops_and_still_evaluates(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    tc = TrainConfig(max_steps=10_000, batch_size=2, log_every=1, eval_tokens=64, max_minutes=0.02)
    res = train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=False)
    assert 0 < res.steps < 10_000 and math.isfinite(res.val_bpc)
    assert (tmp_path / "o" / "model.pt").exists()


def test_progress_bar_in_a_log_file_redraws_sparsely(tmp_path, capsys):
    # stderr captured by pytest is not a terminal, like Dagster's or CI's logs: 200 steps
    # logged every 10 must not become 20 redraws (a single line, megabytes long on real runs).
    token_chars = write_shards(tmp_path / "data")
    tc = TrainConfig(max_steps=200, batch_size=2, log_every=10, eval_every=1000, eval_tokens=64,
                     checkpoint_every=1000)  # fmt: skip
    train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=True)
    err = capsys.readouterr().err
    redraws = err.count("step/s") + err.count("s/step")
    assert 1 <= redraws <= 3, err


def test_cli(tmp_path, capsys):
    write_shards(tmp_path / "data")
    main([
        "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--block-size", "16",
        "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--max-steps", "3", "--batch-size", "2",
        "--eval-tokens", "32", "--no-progress",
    ])  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and math.isfinite(summary["val_bpc"])


# --- DDP: two gloo processes == one process on the combined batch -------------------------


def _fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(42)
    idx = torch.randint(0, VOCAB, (4, 17), generator=g)
    return idx[:, :-1], idx[:, 1:]


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str, grads_file: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = GPT(model_config())
    ddp = DDP(model)
    x, y = _fixed_batch()
    half = slice(2 * rank, 2 * rank + 2)
    _, loss = ddp(x[half], y[half])
    loss.backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, grads_file)
    # The real loop: each rank draws its own batches; together they are the single run's.
    tc = TrainConfig(max_steps=2, batch_size=2, grad_accum=1, lr=1e-3, warmup_steps=1,
                     log_every=1, eval_tokens=64, seed=5)  # fmt: skip
    train(model_config(), tc, data, out, np.load(Path(data) / "token_chars.npy"), progress=False)
    dist.destroy_process_group()


@pytest.mark.timeout(300)  # a wedged gloo rendezvous must fail, not hang CI
def test_ddp_gloo_matches_single_process(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    grads_file = tmp_path / "ddp_grads.pt"
    port = free_port()
    mp.spawn(
        _ddp_worker,
        args=(2, port, str(tmp_path / "data"), str(tmp_path / "ddp"), str(grads_file)),
        nprocs=2,
        join=True,
    )
    torch.manual_seed(0)
    model = GPT(model_config())
    x, y = _fixed_batch()
    _, loss = model(x, y)
    loss.backward()
    ddp_grads = torch.load(grads_file, weights_only=True)
    for name, p in model.named_parameters():
        torch.testing.assert_close(ddp_grads[name], p.grad, rtol=0, atol=1e-6)

    tc = TrainConfig(max_steps=2, batch_size=2, grad_accum=2, lr=1e-3, warmup_steps=1,
                     log_every=1, eval_tokens=64, seed=5)  # fmt: skip
    single = train(model_config(), tc, tmp_path / "data", tmp_path / "one", token_chars, progress=False)
    ddp_ckpt = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert len(ddp_ckpt["rng"]) == 2  # every rank's RNG state is saved
    for a, b in zip(ddp_ckpt["history"], single.history):
        for key in ("train_loss", "grad_norm", "val_loss", "val_bpc"):
            if key in b:
                assert a[key] == pytest.approx(b[key], abs=1e-6), key
    ddp_w = torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)
    one_w = torch.load(single.weights_path, weights_only=True)
    for k in one_w:
        torch.testing.assert_close(ddp_w[k], one_w[k], rtol=0, atol=1e-6)
