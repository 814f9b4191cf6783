"""Export a trained model for Hugging Face ``transformers`` (``Qwen3ForCausalLM``).

Our block is Qwen3's (RMSNorm, QK-norm, RoPE, SwiGLU, no biases) and our parameter names
are its names without the ``model.`` prefix, so export is a rename plus a config:

    DIR/model.safetensors     the weights (float32)
    DIR/config.json           a Qwen3 config with our sizes
    DIR/tokenizer.json        our BPE as a HF fast tokenizer (``lexgpt.tokenizer.tokenizer_export``)
    DIR/tokenizer_config.json
    DIR/generation_config.json

after which ``AutoModelForCausalLM.from_pretrained(DIR)`` and
``AutoTokenizer.from_pretrained(DIR)`` load it unchanged (tests check the logits and the
token ids match ours). Writing needs ``safetensors`` only, not ``transformers``.

The files are written into a fresh hidden folder beside ``DIR`` and swapped in whole, with
a ``lexgpt_export.json`` marker: ``DIR`` is new, empty, or a previous lexgpt export (which
is replaced, stale files and all). Any other folder, or a file, is refused in one line,
since transformers would read whatever else lies there (a stale
``special_tokens_map.json`` changes the tokenizer's special tokens).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch

from lexgpt.infra.atomic import atomic_path, write_json
from lexgpt.modeling.model import GPT
from lexgpt.tokenizer.bpe import EOT, BPETokenizer
from lexgpt.tokenizer.tokenizer_export import export_hf as export_hf_tokenizer


def hf_config(model: GPT, eot_id: int | None) -> dict[str, Any]:
    """The ``config.json`` of a ``Qwen3ForCausalLM`` with ``model``'s sizes."""
    cfg = model.config
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.mlp_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": cfg.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_theta": cfg.rope_theta,  # transformers < 5 reads this key
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "use_cache": True,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "dtype": "float32",
    }


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under Qwen3's names (a tied head is stored once, as the embedding)."""
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_embeddings:
            continue
        key = name if name.startswith("lm_head.") else f"model.{name}"
        out[key] = tensor.detach().to(torch.float32).contiguous()
    return out


EXPORT_MARKER = "lexgpt_export.json"
EXPORT_FILES = frozenset({"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
                          "generation_config.json", EXPORT_MARKER})


class ExportTargetError(ValueError):
    """An export target that is a file or a folder of other things; one line naming it."""


def check_export_target(out_dir: str | os.PathLike[str]) -> None:
    """Refuse a target :func:`export_hf` would not replace cleanly: a file, a symlink, or a
    non-empty folder that is not a previous lexgpt export."""
    out = Path(out_dir)
    if out.is_symlink():
        raise ExportTargetError(f"{out}: is a symlink; export into a new or empty folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportTargetError(f"{out}: is a file, not a folder; export into a new or empty folder")
    entries = sorted(out.iterdir())
    if not entries:
        return
    ours = (out / EXPORT_MARKER).is_file() and all(
        e.name in EXPORT_FILES and e.is_file() and not e.is_symlink() for e in entries)
    if not ours:
        names = ", ".join(e.name for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ExportTargetError(f"{out}: is not empty ({names}) and is not a lexgpt export; "
                                "export into a new or empty folder")


def export_hf(model: GPT, tokenizer: BPETokenizer, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``model`` and ``tokenizer`` into ``out_dir`` in Hugging Face's layout,
    replacing a previous lexgpt export there (see :func:`check_export_target`)."""
    out = Path(out_dir)
    check_export_target(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        staging.mkdir()  # honours the umask, unlike mkdtemp's 0700
    except OSError as err:
        raise ExportTargetError(f"{out}: cannot create it ({err.strerror or err})") from None
    try:
        _write_export(model, tokenizer, staging)
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the swap succeeded
    return out


def _swap_in(staging: Path, out: Path) -> None:
    """Rename ``staging`` onto ``out``; a previous export is moved aside first, then removed."""
    if not out.exists():
        os.rename(staging, out)
        return
    check_export_target(out)  # again: something may have been written there meanwhile
    aside = staging.with_suffix(".old")
    os.rename(out, aside)
    os.rename(staging, out)
    shutil.rmtree(aside, ignore_errors=True)


def _write_export(model: GPT, tokenizer: BPETokenizer, out: Path) -> None:
    from safetensors.torch import save_file

    eot_id = tokenizer.special_tokens.get(EOT)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(hf_state_dict(model), str(tmp), metadata={"format": "pt"})
    write_json(out / "config.json", hf_config(model, eot_id))
    export_hf_tokenizer(tokenizer, out / "tokenizer.json")
    specials = {"eos_token": EOT, "bos_token": EOT} if eot_id is not None else {}
    write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.config.block_size,
        "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        **specials,
    })  # fmt: skip
    write_json(out / "generation_config.json", {"bos_token_id": eot_id, "eos_token_id": eot_id})
    write_json(out / EXPORT_MARKER, {"written_by": "lexgpt.export", "files": sorted(EXPORT_FILES - {EXPORT_MARKER})})


def main(argv: list[str] | None = None) -> None:
    """``python -m lexgpt.modeling.export MODEL_DIR TOKENIZER_JSON OUT_DIR`` (no MLflow needed)."""
    import argparse

    from lexgpt.modeling.checkpoint import ModelLoadError, load_model
    from lexgpt.tokenizer.tokenizer_file import TokenizerFileError

    p = argparse.ArgumentParser(prog="python -m lexgpt.modeling.export", description=__doc__.split("\n")[0])
    p.add_argument("model_dir", type=Path, help="folder with model.pt and config.json")
    p.add_argument("tokenizer", type=Path, help="our tokenizer.json")
    p.add_argument("out_dir", type=Path)
    args = p.parse_args(argv)
    try:
        check_export_target(args.out_dir)
        out = export_hf(load_model(args.model_dir), BPETokenizer.load(args.tokenizer), args.out_dir)
    except (ExportTargetError, ModelLoadError, TokenizerFileError) as err:
        raise SystemExit(f"python -m lexgpt.modeling.export: {str(err).splitlines()[0]}") from None
    print(json.dumps({"exported": str(out)}))


if __name__ == "__main__":
    main()
