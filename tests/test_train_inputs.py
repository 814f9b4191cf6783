"""What training refuses, in one line naming the value or file: configs out of bounds,
shards with ids past the vocab, a corrupt or foreign checkpoint. And what a checkpoint holds,
and which device a config's ``device`` names on each rank.
(The model config's bounds: tests/test_model.py.)"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import lexgpt.training.train_loop as train_module
from lexgpt.data.shards import FORMAT
from lexgpt.modeling.checkpoint import CheckpointError, load_checkpoint
from lexgpt.modeling.model import PRESETS
from lexgpt.training.train import TrainConfig, main, train

from test_train import VOCAB, model_config, steps, write_shards

# --- TrainConfig ----------------------------------------------------------------------

BAD_TRAIN_CONFIGS = [
    dict(max_minutes=0), dict(max_minutes=-1.0), dict(max_minutes=math.inf), dict(max_minutes=math.nan),
    dict(max_minutes="8"), dict(max_steps=-1), dict(max_steps=2.5), dict(max_steps=True),
    dict(batch_size=0), dict(grad_accum=0), dict(eval_every=0), dict(log_every=0), dict(checkpoint_every=0),
    dict(checkpoint_minutes=0), dict(checkpoint_minutes=math.nan), dict(matrix_lr=-0.1),
    dict(embedding_lr=math.nan), dict(head_lr=math.inf), dict(scalar_lr=-1), dict(weight_decay=-0.1),
    dict(grad_clip=-1.0), dict(warmdown=1.5), dict(warmdown=-0.1), dict(min_lr_frac=2.0), dict(seed=-1),
    dict(warmup_steps=-1), dict(eval_windows=-1), dict(threads=-2), dict(optimizer="sgd"), dict(dtype="fp8"),
    dict(keep_best="no"), dict(compile="yes"),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_TRAIN_CONFIGS, ids=lambda kw: f"{next(iter(kw))}={next(iter(kw.values()))!r}")
def test_train_config_refuses_values_out_of_bounds(bad):
    (name, value), = bad.items()
    with pytest.raises(ValueError) as err:
        TrainConfig(**bad)
    message = str(err.value)
    assert f"{name}={value!r}" in message and "\n" not in message
    with pytest.raises(ValueError):
        TrainConfig.for_preset("gpu-small", **bad)  # the recipes are validated the same way


def test_train_config_accepts_the_recipes_and_the_edges():
    for preset in PRESETS:
        TrainConfig.for_preset(preset)
    TrainConfig(max_minutes=None, max_steps=1, warmdown=0, min_lr_frac=1, grad_clip=0, weight_decay=0)
    TrainConfig(checkpoint_minutes=10**9, max_minutes=1)  # bench/ passes ints
    with pytest.raises(ValueError, match="budget"):
        TrainConfig(max_minutes=None, max_steps=0)


def test_train_revalidates_a_config_changed_after_it_was_built(tmp_path):
    token_chars = write_shards(tmp_path / "data")
    tc = steps(max_steps=2)
    tc.batch_size = 0
    with pytest.raises(ValueError, match="batch_size=0"):
        train(model_config(), tc, tmp_path / "data", tmp_path / "o", token_chars, progress=False)
    assert not (tmp_path / "o").exists()


# --- checkpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"not a zip archive at all", b"PK\x03\x04 truncated"])
def test_a_corrupt_checkpoint_names_the_file_and_the_remedy(tmp_path, content):
    token_chars = write_shards(tmp_path / "data")
    (tmp_path / "o").mkdir()
    ckpt = tmp_path / "o" / "checkpoint.pt"
    ckpt.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        train(model_config(), steps(max_steps=2), tmp_path / "data", tmp_path / "o", token_chars, progress=False)
    message = str(err.value)
    assert str(ckpt) in message and "delete it" in message and "\n" not in message
    assert isinstance(err.value, ValueError)


def test_a_file_that_is_not_a_training_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}}, path)  # e.g. someone's weights file
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_checkpoint(path)
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="list"):
        load_checkpoint(path)
    assert load_checkpoint(tmp_path / "none.pt") is None


def test_the_cli_reports_a_corrupt_checkpoint_in_one_line(tmp_path):
    write_shards(tmp_path / "data")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(SystemExit) as exit_:
        main([*_cli_args(tmp_path)])
    assert "checkpoint.pt" in str(exit_.value.code) and "\n" not in str(exit_.value.code)


def test_a_finished_run_given_more_steps_continues_from_its_last_weights(tmp_path, monkeypatch):
    # model.pt holds the kept (best) weights, but the checkpoint is the training state: a run
    # resumed with a larger max_steps must continue from the last weights and their momenta.
    token_chars = write_shards(tmp_path / "data")
    worse_each_time = itertools.count()  # so the first quick eval stays the best
    real = train_module.evaluate

    def fake(*args, max_windows=0, **kw):
        out = real(*args, max_windows=max_windows, **kw)
        return {**out, "val_bpc": float(next(worse_each_time))} if max_windows else out

    monkeypatch.setattr(train_module, "evaluate", fake)
    # warmdown=0: the lr does not depend on max_steps, so 3 steps are the first 3 of 6.
    base = dict(batch_size=4, log_every=1, eval_every=2, warmup_steps=1, warmdown=0.0, checkpoint_every=1000,
                keep_best=True)
    full = train(model_config(), steps(max_steps=6, **base), tmp_path / "data", tmp_path / "full", token_chars,
                 progress=False)  # fmt: skip
    short = train(model_config(), steps(max_steps=3, **base), tmp_path / "data", tmp_path / "more", token_chars,
                  progress=False)  # fmt: skip
    assert short.best_step == 2  # model.pt: step 2's weights; the checkpoint: step 3's
    more = train(model_config(), steps(max_steps=6, **base), tmp_path / "data", tmp_path / "more", token_chars,
                 progress=False)  # fmt: skip
    losses = lambda r: [(h["step"], h["train_loss"]) for h in r.history if "train_loss" in h]  # noqa: E731
    assert losses(more) == losses(full) and len(losses(full)) == 6


# --- shards, checked by the CLI before training -----------------------------------------


def _cli_args(tmp_path, *extra: str) -> list[str]:
    return ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--block-size", "16",
            "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--max-steps", "2", "--batch-size", "2",
            "--max-minutes", "0", "--eval-windows", "4", "--no-compile", "--no-progress", *extra]  # fmt: skip


def _lexgpt_manifest(folder, vocab_size: int = VOCAB) -> None:
    """A manifest as lexgpt.data.shards writes it, for the shards write_shards made."""
    splits = {name: {"file": f"{name}.bin", "tokens": (folder / f"{name}.bin").stat().st_size // 2,
                     "chars": 1, "episodes": [], "sha256": ""} for name in ("train", "val")}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps({"format": FORMAT, "vocab_size": vocab_size, "splits": splits}))


@pytest.mark.parametrize("with_manifest", [False, True])
def test_the_cli_refuses_token_ids_past_the_vocab_before_training(tmp_path, with_manifest):
    write_shards(tmp_path / "data")
    ids = np.fromfile(tmp_path / "data" / "val.bin", dtype="<u2")
    ids[100] = VOCAB  # one id past the embedding: a compiled run aborts with rc 134
    ids.tofile(tmp_path / "data" / "val.bin")
    if with_manifest:
        _lexgpt_manifest(tmp_path / "data")
    with pytest.raises(SystemExit) as exit_:
        main(_cli_args(tmp_path))
    message = str(exit_.value.code)
    assert "val.bin" in message and f"token id {VOCAB}" in message and "\n" not in message
    assert not (tmp_path / "o").exists()  # refused before anything was built


def test_the_cli_checks_the_manifest_when_there_is_one(tmp_path, capsys):
    write_shards(tmp_path / "data")
    _lexgpt_manifest(tmp_path / "data")
    main(_cli_args(tmp_path))  # a consistent manifest: trains
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 2
    with open(tmp_path / "data" / "train.bin", "ab") as fh:
        fh.write(b"\x01\x00")  # one token more than the manifest says
    with pytest.raises(SystemExit, match="train.bin: .* tokens, but manifest.json says"):
        main(_cli_args(tmp_path))


def test_the_cli_reports_a_config_out_of_bounds_in_one_line(tmp_path):
    write_shards(tmp_path / "data")
    with pytest.raises(SystemExit, match=r"^lexgpt.training.train: train config batch_size=0: expected an integer >= 1$"):
        main(_cli_args(tmp_path, "--batch-size", "0"))
    with pytest.raises(SystemExit, match="rope_theta|n_embd"):
        main(_cli_args(tmp_path, "--n-embd", "15"))


def test_an_explicit_cuda_device_is_this_ranks_gpu():
    from lexgpt.training.device import pick_device

    # Under torchrun every rank reads the same config: "cuda" must mean its own GPU, with an
    # index (cuda.set_device refuses a device without one).
    assert pick_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert pick_device("cuda:1", local_rank=3) == torch.device("cuda", 1)  # named by hand: as given
    assert pick_device("cpu", local_rank=3) == torch.device("cpu")
