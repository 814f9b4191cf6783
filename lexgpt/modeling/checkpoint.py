"""Saving and loading models and training checkpoints (never unpickling: ``weights_only``).

A trained model is a folder with two files: ``config.json`` (the ``GPTConfig``) and
``model.pt`` (the state dict). A training checkpoint (``checkpoint.pt``) adds what an
exact resume needs: optimizer states, step, every rank's RNG state, the sampler position,
the metric history and the training time used so far. All writes are atomic.

>>> import tempfile
>>> from lexgpt.modeling.model import GPT, GPTConfig
>>> folder = tempfile.mkdtemp()
>>> _ = save_model(GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8)), folder)
>>> load_model(folder).config.vocab_size
10
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from lexgpt.infra.atomic import write_json, write_torch
from lexgpt.modeling.model import GPT, GPTConfig

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.pt"
CONFIG = "config.json"


class ModelLoadError(ValueError):
    """A model folder or file that cannot be loaded; the message names the file."""


# What a resume reads (``lexgpt.training.train`` writes these and ``train_config``).
CHECKPOINT_KEYS = frozenset({"model", "optimizers", "step", "rng", "best", "history", "elapsed_s", "model_config"})


class CheckpointError(ValueError):
    """A training checkpoint that cannot be resumed from; the message names the file and the remedy."""

    @classmethod
    def at(cls, path: Path, problem: str) -> CheckpointError:
        return cls(f"{path}: {problem}; delete it to start training over, or move it away to keep it")


def save_model(model: GPT, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``model.pt`` and ``config.json`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, config = out_dir / WEIGHTS, out_dir / CONFIG
    write_torch(weights, model.state_dict())
    write_json(config, model.config.to_dict())
    return weights, config


def _strip_compile_prefix(state: dict[str, Any]) -> dict[str, Any]:
    prefix = "_orig_mod."  # what torch.compile'd modules put before every name
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_model(
    path: str | os.PathLike[str],
    config: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> GPT:
    """The GPT in ``path`` (a folder with model.pt + config.json, or a weights file and
    its ``config`` file), in eval mode on ``device``. Errors name the file."""
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    config_path = Path(config) if config is not None else weights.parent / CONFIG
    try:
        model_config = GPTConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as err:
        raise ModelLoadError(f"{config_path}: not a valid model config ({err})") from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a corrupt file
        raise ModelLoadError(f"{weights}: cannot read the weights ({err})") from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{weights}: expected a state dict, got {type(state).__name__}")
    model = GPT(model_config)
    try:
        model.load_state_dict(_strip_compile_prefix(state))
    except RuntimeError as err:
        raise ModelLoadError(f"{weights}: does not match {config_path} ({str(err).splitlines()[0]})") from None
    return model.to(device).eval()


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically write a training checkpoint (a dict of tensors and plain values)."""
    write_torch(path, state)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None if there is none.

    One that cannot be resumed from (truncated, corrupt, not a checkpoint) raises
    :class:`CheckpointError`, whose one line names the file and what to do about it.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a corrupt file
        raise CheckpointError.at(path, f"cannot be read ({_why_unreadable(path, err)})") from None
    if not isinstance(state, dict):
        raise CheckpointError.at(path, f"holds a {type(state).__name__}, not a training checkpoint")
    missing = sorted(CHECKPOINT_KEYS - state.keys())
    if missing:
        raise CheckpointError.at(path, f"is not a training checkpoint (no {', '.join(missing)})")
    if type(state["step"]) is not int or state["step"] < 0:
        raise CheckpointError.at(path, f"step={state['step']!r} is not a step count")
    return state


def _why_unreadable(path: Path, err: BaseException) -> str:
    """Torch's reason, in words that fit one line. Its weights-only message suggests loading
    with ``weights_only=False``, which would run whatever code the file holds: not passed on."""
    if not zipfile.is_zipfile(path):
        return "not a zip archive: truncated or overwritten"
    text = str(err).strip() or type(err).__name__
    if text.startswith("Weights only load failed"):
        return "it holds objects other than tensors and plain values"
    return text.splitlines()[0][:200]


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The torch RNG states a resume needs to replay dropout exactly."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
