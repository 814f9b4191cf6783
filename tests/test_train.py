"""The training loop: schedule, presets, exact resume, DDP == single process, budgets, CLI."""

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

from lexgpt.modeling.checkpoint import load_model
from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.training.optim import lr_multiplier
from lexgpt.training.train import TrainConfig, main, train

from conftest import free_port

VOCAB = 32


def steps(**kw) -> TrainConfig:
    """A step-budgeted config (the default budget is time)."""
    return TrainConfig(**{"max_minutes": None, "eval_windows": 8, "compile": False, **kw})


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
    mult = lambda p, step=100: lr_multiplier(p, step, warmup_steps=10, warmdown=0.4, min_lr_frac=0.1)  # noqa: E731
    assert [mult(0.0, s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])  # linear warmup
    assert mult(0.0) == mult(0.3) == mult(0.6) == 1.0  # plateau
    down = [mult(p) for p in np.linspace(0.6, 1.0, 9)]
    assert all(a > b for a, b in zip(down, down[1:]))  # linear warmdown ...
    assert down[-1] == pytest.approx(0.1) and mult(1.5) == pytest.approx(0.1)  # ... to min_lr_frac
    assert mult(0.8) == pytest.approx(0.1 + 0.9 * 0.5)


def test_presets_have_recipes():
    assert TrainConfig.for_preset("cpu-small") == TrainConfig()
    assert TrainConfig.for_preset("cpu-tiny") == TrainConfig()  # the old name
    gpu = TrainConfig.for_preset("gpu-small", matrix_lr=0.01)
    assert gpu.preset == "gpu-small" and gpu.matrix_lr == 0.01 and gpu.weight_decay > 0
    assert not TrainConfig().keep_best  # selecting on the reported split would flatter it
    assert TrainConfig().max_minutes <= 8  # make run's budget on a CPU


class Crash(Exception):
    pass


def test_resume_gives_exactly_the_uninterrupted_losses(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    mc = model_config(dropout=0.1)  # dropout: the torch RNG state must be restored too
    tc = steps(
        max_steps=8, batch_size=4, grad_accum=2, warmup_steps=2, log_every=1,
        eval_every=4, checkpoint_every=3, checkpoint_minutes=60, seed=0,
    )  # fmt: skip
    full = train(mc, tc, tmp_path / "data", tmp_path / "a", token_chars, progress=False)

    def crash(step, metrics):
        if step == 5:  # after the step-3 checkpoint, before the step-6 one
            raise Crash

    with pytest.raises(Crash):
        train(mc, tc, tmp_path / "data", tmp_path / "b", token_chars, on_metrics=crash, progress=False)
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3
    seen = []
    resumed = train(
        mc, tc, tmp_path / "data", tmp_path / "b", token_chars,
        on_metrics=lambda s, m: seen.append(s), progress=False,
    )  # fmt: skip
    assert seen[0] == 4  # it did resume, not restart

    keys = ("step", "train_loss", "lr_multiplier", "grad_norm", "val_loss", "val_bpc")
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
    tc = steps(max_steps=1, batch_size=2, log_every=1, eval_every=1, checkpoint_every=1)
    train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=False)
    with pytest.raises(ValueError, match="checkpoint"):
        train(model_config(n_embd=64), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=False)


def test_learns_and_reports_metrics(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    tc = steps(max_steps=60, batch_size=8, warmup_steps=5, log_every=10, eval_every=30, checkpoint_every=1000)
    calls = []
    res = train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars,
                on_metrics=lambda s, m: calls.append((s, m)), progress=False)  # fmt: skip
    # Logs every 10; evals at 30 (eval_every), 16 and 46 (quarters of the budget that had
    # none), and the last row: the full-val score.
    assert [s for s, _ in calls] == [10, 16, 20, 30, 40, 46, 50, 60, 60]
    assert {"train_loss", "lr_multiplier", "grad_norm", "tokens_per_s", "tokens_seen"} <= set(calls[0][1])
    assert {"val_loss", "val_bpc"} <= set(calls[3][1]) and set(calls[1][1]) == {"val_loss", "val_bpc"}
    assert calls[-1][1]["val_fraction"] == 1.0 and calls[-1][1]["val_bpc"] == res.val_bpc
    assert res.val_loss < math.log(VOCAB) - 0.5
    assert (tmp_path / "o" / "checkpoint.pt").exists()  # the final state is always saved


@pytest.mark.slow  # inductor compiles C++ kernels: ~25 s on 2 cores
def test_compiled_model_trains_like_eager(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    base = dict(max_steps=30, batch_size=4, log_every=10, eval_every=1000, checkpoint_every=1000)
    eager = train(model_config(), steps(**base), tmp_path / "data", tmp_path / "e", token_chars, progress=False)
    compiled = train(model_config(), steps(**base, compile=True), tmp_path / "data", tmp_path / "c",
                     token_chars, progress=False)  # fmt: skip
    losses = lambda r: [h["train_loss"] for h in r.history if "train_loss" in h]  # noqa: E731
    # Inductor fuses the written-out softmax (and sums embedding gradients) in another order
    # than eager: float32 rounding differs by ~1e-7 per step and 30 Muon steps grow it to
    # ~1.5e-4 of the loss. A wrong mask or a lost gradient moves the loss by far more.
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-3)
    assert compiled.val_bpc == pytest.approx(eager.val_bpc, rel=1e-3)
    # Before any step the two give the same logits to float32 rounding.
    torch.manual_seed(0)
    fresh = GPT(model_config())
    with torch.no_grad():
        for p in fresh.parameters():
            p.normal_(0, 0.3)
        idx = torch.randint(0, VOCAB, (3, 16))
        torch.testing.assert_close(torch.compile(fresh)(idx)[0], fresh(idx)[0], rtol=0, atol=1e-5)
    # Weights are saved from the uncompiled module: no "_orig_mod." prefix.
    state = torch.load(compiled.weights_path, weights_only=True)
    assert set(state) == set(torch.load(eager.weights_path, weights_only=True))


def test_time_budget_stops_and_still_evaluates(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    tc = TrainConfig(max_steps=10_000, batch_size=2, log_every=1, eval_windows=4, max_minutes=0.02, compile=False)
    res = train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=False)
    assert 0 < res.steps < 10_000 and math.isfinite(res.val_bpc)
    assert (tmp_path / "o" / "model.pt").exists()


def test_ctrl_c_that_lands_in_code_which_swallows_it_still_stops_training(tmp_path):
    # Dagster's SIGINT handler raises wherever the main thread is; when that is a
    # __del__ or a library's `except BaseException`, the error is dropped and a run with a
    # big budget trained on (CI hung for 120 s). The loop must stop at the next step.
    import signal

    def raising_handler(_signo, _frame):  # what Dagster installs during a step
        raise RuntimeError("Dagster-style interrupt")

    def ctrl_c_inside_swallowing_code(step, _metrics):
        if step == 10:
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except BaseException:  # noqa: BLE001 - the library code that drops it
                pass

    token_chars = write_shards(tmp_path / "data")
    # A time budget too, so that a regression fails the test instead of hanging it.
    tc = steps(max_steps=100_000, max_minutes=0.5, batch_size=2, log_every=10, eval_every=1000,
               checkpoint_every=100_000)  # fmt: skip
    previous = signal.signal(signal.SIGINT, raising_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars,
                  on_metrics=ctrl_c_inside_swallowing_code, progress=False)  # fmt: skip
        assert signal.getsignal(signal.SIGINT) is raising_handler  # restored on the way out
    finally:
        signal.signal(signal.SIGINT, previous)


def test_progress_bar_in_a_log_file_redraws_sparsely(tmp_path, capsys):
    # stderr captured by pytest is not a terminal, like Dagster's or CI's logs: 200 steps
    # logged every 10 must not become 20 redraws (a single line, megabytes long on real runs).
    token_chars = write_shards(tmp_path / "data")
    tc = steps(max_steps=200, batch_size=2, log_every=10, eval_every=1000, checkpoint_every=1000)
    import time

    t0 = time.monotonic()
    train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=True)
    err = capsys.readouterr().err
    redraws = err.count("%|")
    # Start, end, one after each eval line (3: one per quarter of the budget), and one per
    # 30 s at most (a loaded CI box may take that long).
    assert 1 <= redraws <= 3 + err.count("bits/char (") + (time.monotonic() - t0) // 30, err


def test_cli(tmp_path, capsys):
    write_shards(tmp_path / "data")
    main([
        "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--block-size", "16",
        "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--max-steps", "3", "--batch-size", "2",
        "--max-minutes", "0", "--eval-windows", "4", "--no-compile", "--no-progress",
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
    tc = steps(max_steps=2, batch_size=2, grad_accum=1, warmup_steps=1, log_every=1, seed=5)
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

    tc = steps(max_steps=2, batch_size=2, grad_accum=2, warmup_steps=1, log_every=1, seed=5)
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


def test_checkpoints_by_time_as_well_as_steps(tmp_path):
    # A kill -9 must lose at most checkpoint_minutes of training, even before checkpoint_every steps.
    token_chars = write_shards(tmp_path / "data")
    seen = []

    def record(step, metrics):
        ckpt = tmp_path / "o" / "checkpoint.pt"
        seen.append((step, torch.load(ckpt, weights_only=True)["step"] if ckpt.exists() else None))

    tc = steps(max_steps=6, batch_size=2, log_every=1, eval_every=1000, checkpoint_every=1000,
               checkpoint_minutes=1e-6)  # fmt: skip
    train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars, on_metrics=record, progress=False)
    assert [c for _, c in seen[1:6]] == [1, 2, 3, 4, 5]  # each step's callback sees the previous checkpoint


def test_keeps_the_best_val_weights(tmp_path, monkeypatch):
    import lexgpt.training.train_loop as train_module

    token_chars = write_shards(tmp_path / "data")
    scripted = iter([3.0, 2.0, 2.5, 2.6, 2.7])  # quick evals at steps 5, 10, 15, 20, then the final weights
    real = train_module.evaluate

    def fake(*args, max_windows=0, **kw):
        out = real(*args, max_windows=max_windows, **kw)
        return {**out, "val_bpc": next(scripted)} if max_windows else out

    monkeypatch.setattr(train_module, "evaluate", fake)
    # warmdown=0: the lr does not depend on max_steps, so a 10-step run is the first 10 steps of this one.
    base = dict(batch_size=4, log_every=5, eval_every=5, warmup_steps=1, warmdown=0.0, checkpoint_every=1000)
    res = train(model_config(), steps(max_steps=20, keep_best=True, **base), tmp_path / "data", tmp_path / "o",
                token_chars, progress=False)  # fmt: skip
    assert res.best_step == 10 and res.steps == 20
    monkeypatch.setattr(train_module, "evaluate", real)
    ten = train(model_config(), steps(max_steps=10, keep_best=False, **base), tmp_path / "data",
                tmp_path / "ten", token_chars, progress=False)  # fmt: skip
    kept, reference = load_model(tmp_path / "o").state_dict(), load_model(tmp_path / "ten").state_dict()
    assert all(torch.equal(kept[k], reference[k]) for k in kept)
    assert res.val_bpc == pytest.approx(ten.val_bpc)  # the reported number is the kept weights' full-val score


def test_training_imports_without_the_pipeline_stack():
    # The GPU machines we borrow have torch, numpy and tqdm only.
    import subprocess
    import sys

    code = ("import sys, lexgpt.training.train; "
            "bad = [m for m in ('dagster', 'mlflow', 'polars', 'pandas', 'pandera', 'pyarrow') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_short_run_still_shows_its_val_curve(tmp_path, capsys):
    # eval_every far past the run: each quarter of the budget without an eval ends with one,
    # so a 1-minute run (or 40 steps) prints val lines before the final score.
    token_chars = write_shards(tmp_path / "data")
    seen = []
    tc = steps(max_steps=40, batch_size=2, eval_every=10_000, checkpoint_every=10_000)
    train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=True,
          on_metrics=lambda step, m: seen.append(step) if "val_bpc" in m else None)
    assert seen[:3] == [11, 21, 31] and len(seen) == 4, seen  # 3 quarter marks, then the final score
    err = capsys.readouterr().err
    assert err.count("bits/char (") == 3 and "steps left" in err
    assert "%|" in err and "left" in err  # the bar: share of the budget and the time left
    # With eval_every inside the run, a quarter that had its eval gets no extra one.
    seen.clear()
    tc = steps(max_steps=30, batch_size=2, eval_every=15, checkpoint_every=10_000)
    train(model_config(), tc, tmp_path / "data", tmp_path / "o2", token_chars, progress=False,
          on_metrics=lambda step, m: seen.append(step) if "val_bpc" in m else None)
    assert seen == [9, 15, 24, 30, 30], seen  # 30: the last eval_every eval, then the final score
