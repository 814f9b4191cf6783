"""Export a trained model as one GGUF file, for llama.cpp and the tools built on it (Ollama).

Our block is Qwen3's, so the file is a ``qwen3`` model for llama.cpp: the weights under
GGUF's tensor names (``gguf``'s own ``TensorNameMap`` does the renaming), the sizes as
``qwen3.*`` keys, and our BPE as a ``gpt2``-type vocabulary:

    tokenizer.ggml.tokens   id -> token text, bytes spelled with GPT-2's printable map
    tokenizer.ggml.merges   "a b" per merge, in rank order (a merge's id is its rank)
    tokenizer.ggml.pre      "llama-bpe": llama.cpp's built-in split for Llama 3

A GGUF file cannot carry a split regex; llama.cpp picks one by the ``pre`` name. Llama 3's
regex is GPT-4's, ours, spelled without possessive quantifiers. In this pattern they
change nothing: ``[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+`` can only backtrack onto a non-letter,
where ``\\p{L}+`` fails either way, and the characters ``[^\\s\\p{L}\\p{N}]++`` could give
back are never ``[\\r\\n]``; ``\\s*[\\r\\n]`` and ``\\s*[\\r\\n]+`` both take the longest run
that ends in a newline. Tests run the file in llama.cpp and compare its token ids with
ours on the val split and on foreign text (code, other scripts, emoji, digits, long
whitespace), its logits (f32: within 1e-3) and its greedy continuations.

>>> from lexgpt.tokenizer.bpe import BPETokenizer
>>> tok = BPETokenizer.train(["hello hello"], vocab_size=256 + 2)
>>> tokens, types, merges = gguf_vocab(tok)
>>> tokens[ord(" ")], merges[0], tokens[-1], types[-1] == gguf.TokenType.CONTROL
('Ġ', 'e l', '<|endoftext|>', True)

Writing needs the ``gguf`` package (the ``gguf`` extra), not llama.cpp.
"""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import torch

from lexgpt.infra.atomic import atomic_path
from lexgpt.modeling.model import GPT
from lexgpt.tokenizer.bpe import EOT, BPETokenizer
from lexgpt.tokenizer.tokenizer_export import bytes_to_unicode

PRE_TOKENIZER = "llama-bpe"
DTYPES = {"f32": gguf.GGMLQuantizationType.F32, "bf16": gguf.GGMLQuantizationType.BF16}
_FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "bf16": gguf.LlamaFileType.MOSTLY_BF16}
_MAGIC = b"GGUF"


class GGUFTargetError(ValueError):
    """A GGUF target that is a folder, a symlink or some other file; one line naming it."""


def gguf_vocab(tok: BPETokenizer) -> tuple[list[str], list[int], list[str]]:
    """Token texts, token types and merges of ``tok`` as llama.cpp's ``gpt2`` vocab wants them."""
    sym = bytes_to_unicode()
    n_plain = 256 + len(tok.merges)
    text = ["".join(sym[b] for b in piece) for piece in tok._bytes[:n_plain]]
    specials = sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
    if [i for _, i in specials] != list(range(n_plain, n_plain + len(specials))):
        raise ValueError("special token ids must follow the merges")  # how BPETokenizer assigns them
    tokens = text + [s for s, _ in specials]
    types = [gguf.TokenType.NORMAL] * n_plain + [gguf.TokenType.CONTROL] * len(specials)
    merges = [f"{text[a]} {text[b]}" for a, b in tok.merges]
    return tokens, [int(t) for t in types], merges


def check_gguf_target(path: str | os.PathLike[str]) -> None:
    """Refuse a target that is a folder, a symlink, or a file that is not a GGUF file
    (a previous export is replaced; anything else might be someone's data)."""
    out = Path(path)
    if out.is_symlink():
        raise GGUFTargetError(f"{out}: is a symlink; export to a new file name")
    if out.is_dir():
        raise GGUFTargetError(f"{out}: is a folder; --format gguf writes one file, e.g. {out / 'lexgpt.gguf'}")
    if out.exists():
        try:
            with open(out, "rb") as f:
                magic = f.read(len(_MAGIC))
        except OSError as err:
            raise GGUFTargetError(f"{out}: cannot read it ({err.strerror or err})") from None
        if magic != _MAGIC:
            raise GGUFTargetError(f"{out}: exists and is not a GGUF file; export to a new file name")


def export_gguf(model: GPT, tokenizer: BPETokenizer, path: str | os.PathLike[str], dtype: str = "f32") -> Path:
    """Write ``model`` and ``tokenizer`` as one GGUF file at ``path`` (atomically).

    ``dtype`` is ``f32`` or ``bf16`` for the matrices; norm gains stay f32 (as llama.cpp's
    own converter keeps 1-D tensors).
    """
    if dtype not in DTYPES:
        raise GGUFTargetError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    out = Path(path)
    check_gguf_target(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            _write(model, tokenizer, Path(tmp), dtype)
    except OSError as err:
        raise GGUFTargetError(f"{out}: cannot write it ({err.strerror or err})") from None
    return out


def _write(model: GPT, tokenizer: BPETokenizer, path: Path, dtype: str) -> None:
    cfg = model.config
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN3]
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name("lexgpt")
    writer.add_file_type(_FILE_TYPES[dtype])
    writer.add_context_length(cfg.block_size)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(cfg.mlp_hidden)
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.n_head)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)

    tokens, types, merges = gguf_vocab(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if EOT in tokenizer.special_tokens:
        writer.add_bos_token_id(tokenizer.special_tokens[EOT])
        writer.add_eos_token_id(tokenizer.special_tokens[EOT])
    writer.add_add_bos_token(False)  # we never prepend one: the model was trained without

    for name, data, qtype in _tensors(model, dtype):
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _tensors(model: GPT, dtype: str):
    """(GGUF name, numpy data, ggml type) per weight; a tied head is stored once (llama.cpp
    reuses ``token_embd`` when ``output`` is absent)."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, model.config.n_layer)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_embeddings:
            continue
        gguf_name = names.get_name(name, try_suffixes=(".weight",))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for weight {name!r}")  # a model change export must follow
        data = tensor.detach().to(torch.float32).contiguous().numpy()
        qtype = DTYPES[dtype] if data.ndim > 1 else gguf.GGMLQuantizationType.F32
        if qtype != gguf.GGMLQuantizationType.F32:
            data = gguf.quants.quantize(data, qtype)
        yield gguf_name, np.ascontiguousarray(data), qtype
