"""A run whose loss or weights stop being finite stops, on every rank alike, and never
saves them: the last finite checkpoint stays for a relaunch with other settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lexgpt.training import train_loop
from lexgpt.training.run_state import TrainingDiverged
from lexgpt.training.train import train
from test_train import model_config, steps, write_shards


def _poison_at(monkeypatch, step: int) -> None:
    """The weights turn NaN right after optimizer step ``step`` (as a blown-up update would)."""
    real = train_loop._train_step

    def poisoned(run, mult):
        out = real(run, mult)
        if run.step == step:
            with torch.no_grad():
                next(run.raw_model.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(train_loop, "_train_step", poisoned)


def _checkpoint(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize("log_every, says", [(1, r"train loss nan at step 13"),
                                             (100, r"the weights are not finite at step 15")])
def test_a_diverged_run_stops_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch, log_every, says):
    chars = write_shards(tmp_path / "data")
    out = tmp_path / "out"
    _poison_at(monkeypatch, 12)
    cfg = steps(max_steps=40, checkpoint_every=5, log_every=log_every, batch_size=4)
    with pytest.raises(TrainingDiverged, match=says + r"; nothing past step 10 was saved; lower the learning rates"):
        train(model_config(), cfg, tmp_path / "data", out, chars, progress=False)
    kept = _checkpoint(out)
    assert kept["step"] == 10
    assert all(torch.isfinite(t).all() for t in kept["model"].values())
    assert not (out / "model.pt").exists()


def test_the_result_names_the_precision_of_its_score(tmp_path):
    chars = write_shards(tmp_path / "data")
    result = train(model_config(), steps(max_steps=3, dtype="float32", batch_size=4), tmp_path / "data",
                   tmp_path / "out", chars, progress=False)
    assert result.dtype == "float32" and math.isfinite(result.val_bpc)

