"""``python -m lexgpt.training.train``: train on a folder of shards from the command line.

    python -m lexgpt.training.train --data data_lake/token_shards --max-minutes 8
    python -m lexgpt.training.train --data shards --preset test-tiny --max-steps 50 --max-minutes 0

Bad input (a config out of bounds, shards the model cannot read, a corrupt checkpoint)
ends with one line naming the value or file, not a traceback. The shards are checked
before anything is built: a token id past the embedding would abort a compiled run with
rc 134 and no message.

The loop itself is :mod:`lexgpt.training.train_loop` and its settings :mod:`lexgpt.training.train_config`;
this module re-exports both (``from lexgpt.training.train import TrainConfig, train``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from lexgpt.data.shards import MANIFEST, ShardError, max_token_id, validate_shards
from lexgpt.infra import paths
from lexgpt.modeling.checkpoint import CheckpointError
from lexgpt.modeling.model import GPTConfig
from lexgpt.training.train_config import RECIPES, TrainConfig
from lexgpt.training.train_loop import TrainResult, train

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "load_token_chars", "main", "shards_vocab_size", "train"]


def shards_vocab_size(data_dir: Path) -> int | None:
    """The vocab size recorded in the shards' ``manifest.json``, if any."""
    m = _manifest(Path(data_dir))
    for holder in (m, m.get("tokenizer") or {}):
        if isinstance(holder, dict) and isinstance(holder.get("vocab_size"), int):
            return holder["vocab_size"]
    return None


def _manifest(data_dir: Path) -> dict:
    path = data_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardError(f"{path}: not a readable manifest ({err})") from None
    return m if isinstance(m, dict) else {}


def check_shards(data_dir: Path, vocab_size: int) -> None:
    """Refuse shards a model with ``vocab_size`` cannot train on (``ShardError``, one line).

    With a lexgpt manifest: :func:`lexgpt.data.shards.validate_shards` (files, sizes, ids, vocab).
    Without one (hand-made shards): each id in train.bin and val.bin must be below ``vocab_size``.
    """
    if "format" in _manifest(data_dir):
        validate_shards(data_dir, vocab_size)
        return
    for name in ("train.bin", "val.bin"):
        path = data_dir / name
        if not path.is_file():
            raise ShardError(f"{path}: missing; --data must be a folder with train.bin and val.bin")
        top = max_token_id(path)
        if top >= vocab_size:
            raise ShardError(f"{path}: token id {top} is not below vocab_size {vocab_size}; "
                             "rebuild the shards or pass the right --vocab-size")  # fmt: skip


def load_token_chars(data_dir: Path, tokenizer: Path | None = None, token_chars: Path | None = None) -> np.ndarray | None:
    """Characters per token id: from ``tokenizer``, an .npy, DATA/token_chars.npy, or the
    lake's ``bpe_vocab/tokenizer.json`` next to the shards folder."""
    lake_tokenizer = data_dir.parent / "bpe_vocab" / "tokenizer.json"
    if tokenizer is None and token_chars is None and not (data_dir / "token_chars.npy").exists():
        tokenizer = lake_tokenizer if lake_tokenizer.exists() else None
    if tokenizer is not None:
        from lexgpt.tokenizer.bpe import BPETokenizer

        return BPETokenizer.load(tokenizer).token_char_counts()
    path = token_chars or data_dir / "token_chars.npy"
    return np.load(path, allow_pickle=False) if path.exists() else None


_MODEL_FLAGS = ("block_size", "n_layer", "n_head", "n_embd", "mlp_hidden", "dropout")


def _parser(train_config_cls: type) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lexgpt.training.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, type=Path, help="folder with train.bin, val.bin")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoints and weights (default: runs/train)")
    p.add_argument("--vocab-size", type=int, help="default: manifest.json's vocab_size")
    p.add_argument("--tokenizer", type=Path, help="tokenizer.json, for characters per token (bits/char)")
    p.add_argument("--token-chars", type=Path, help=".npy of characters per token id")
    for name in _MODEL_FLAGS[:-1]:
        p.add_argument("--" + name.replace("_", "-"), type=int, help="override the preset")
    p.add_argument("--dropout", type=float, help="override the preset")
    p.add_argument("--no-progress", action="store_true")
    for f in fields(train_config_cls):  # unset flags take the preset's recipe
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("keep_best", "compile"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name == "max_minutes":
            p.add_argument(flag, type=float, default=None, help=f"default: {f.default}; 0 = no time budget")
        else:
            p.add_argument(flag, type=type(f.default), default=None, help=f"default: {f.default}")
    return p


def main(argv: list[str] | None = None) -> None:
    paths.persist_compile_cache()  # before torch._dynamo is imported (lexgpt.infra.paths)
    p = _parser(TrainConfig)
    args = p.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    preset = given.pop("preset") or TrainConfig.preset
    overrides = {k: v for k, v in given.items() if v is not None}
    if overrides.get("max_minutes") == 0:
        overrides["max_minutes"] = None
    try:  # bad input: one line naming the value or file
        cfg = TrainConfig.for_preset(preset, **overrides)
        vocab_size = args.vocab_size or shards_vocab_size(args.data)
        if vocab_size is None:
            p.error("--vocab-size is needed: manifest.json has no vocab_size")
        model_overrides = {k: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k) is not None}
        model_config = GPTConfig.from_preset(cfg.preset, vocab_size, **model_overrides)
        check_shards(args.data, model_config.vocab_size)
    except (KeyError, ValueError) as err:
        sys.exit(f"lexgpt.training.train: {err.args[0] if isinstance(err, KeyError) else err}")
    token_chars = load_token_chars(args.data, args.tokenizer, args.token_chars)
    try:
        result = train(model_config, cfg, args.data, args.out, token_chars, progress=not args.no_progress)
    except (CheckpointError, ShardError) as err:  # a corrupt checkpoint, a shard too short
        sys.exit(f"lexgpt.training.train: {err}")
    if int(os.environ.get("RANK", 0)) == 0:
        summary = {k: v for k, v in asdict(result).items() if k != "history"}
        print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
