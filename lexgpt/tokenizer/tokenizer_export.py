"""Our BPE tokenizer in other libraries' formats: HF ``tokenizers`` and ``tiktoken``.

Both are checked by tests to encode every episode exactly as ``BPETokenizer.encode`` does.
GGUF's vocab (``lexgpt.modeling.gguf_export``) spells tokens with the same byte map.
"""

from __future__ import annotations

import json
import os

from lexgpt.infra.atomic import write_text
from lexgpt.tokenizer.bpe import BPETokenizer


def export_hf(tok: BPETokenizer, path: str | os.PathLike[str]) -> None:
    """Write a ``tokenizer.json`` for HF ``tokenizers`` that encodes like ``tok``.

    Pipeline there: split with our pattern, map bytes to GPT-2's printable characters
    (ByteLevel without its own regex), BPE with our merges. HF also matches special
    token strings inside text, which ``tok.encode`` deliberately does not.
    """
    sym = bytes_to_unicode()
    name = ["".join(sym[c] for c in b) for b in tok._bytes[: 256 + len(tok.merges)]]
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for s, i in tok.special_tokens.items()
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {**{n: i for i, n in enumerate(name)}, **tok.special_tokens},
            "merges": [[name[a], name[b]] for a, b in tok.merges],
        },
    }
    write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")

def to_tiktoken(tok: BPETokenizer, name: str = "lexgpt"):
    """A ``tiktoken.Encoding`` with our merges (tiktoken must be installed).

    tiktoken ranks byte strings, not pairs: it merges the adjacent pair whose
    concatenation has the lowest rank. That usually, not always, equals our pair
    merges, so compare outputs before relying on it.
    """
    import tiktoken

    ranks = {b: i for i, b in enumerate(tok._bytes[: 256 + len(tok.merges)])}
    return tiktoken.Encoding(name, pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, which HF's ByteLevel uses.

    Printable Latin-1 bytes map to themselves; the rest (controls, space, ...) are moved
    to 256 and up so every byte is a visible character: ``b' '`` -> 'Ġ'.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out
