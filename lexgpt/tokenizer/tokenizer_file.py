"""The tokenizer file (``tokenizer.json``): read it, and check every field before use.

A tokenizer file comes from disk, where anything may have happened to it, so
:func:`read_tokenizer_file` accepts exactly what ``BPETokenizer.save`` writes and
refuses the rest with one line naming the file: not JSON, a wrong version, merges
that are not pairs of integer ids below their own id, or a file whose tokens would
need unbounded memory (each merge may double a token, so 40 crafted merges ask for
a terabyte).

>>> import json, pathlib, tempfile
>>> p = pathlib.Path(tempfile.mkdtemp()) / "tokenizer.json"
>>> _ = p.write_text(json.dumps({"version": 1, "pattern": "x", "vocab_size": 257,
...                              "special_tokens": {}, "merges": [[97, 300]]}))
>>> read_tokenizer_file(p, "x")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lexgpt.tokenizer.tokenizer_file.TokenizerFileError: .../tokenizer.json: merge 0 uses id 300; ids must be in [0, 256)
"""

from __future__ import annotations

import json
from pathlib import Path

FORMAT_VERSION = 1
# Ours have ~1k-50k merges of ~10 bytes per token; these only stop crafted files.
MAX_FILE_BYTES = 64 << 20
MAX_MERGES = 1 << 20
MAX_VOCAB_BYTES = 256 << 20


class TokenizerFileError(ValueError):
    """A tokenizer file is unreadable, malformed or out of bounds; the message names it."""


def _is_int(v: object) -> bool:
    return type(v) is int  # not bool, not float: JSON's true and 1.0 are not ids


def read_tokenizer_file(path: Path, pattern: str) -> dict:
    """The JSON of a tokenizer file, checked field by field before anything is built.

    ``pattern`` is the split pattern the reader supports; a file made with another one
    would encode differently, so it is refused.
    """

    def bad(why: str) -> TokenizerFileError:
        return TokenizerFileError(f"{path}: {why}")

    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise bad(f"cannot read the tokenizer ({err.strerror or err})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise bad(f"larger than {MAX_FILE_BYTES >> 20} MiB; not a tokenizer this project writes")
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise bad(f"not valid JSON ({type(err).__name__}: {err})") from None
    if not isinstance(d, dict):
        raise bad(f"expected a JSON object, got {type(d).__name__}")
    if d.get("version") != FORMAT_VERSION:
        raise bad(f"unsupported tokenizer format version {d.get('version')!r}")
    if d.get("pattern") != pattern:
        raise bad("split pattern differs from GPT-4's; only that one is supported")
    merges, specials, vocab_size = d.get("merges"), d.get("special_tokens"), d.get("vocab_size")
    if not isinstance(merges, list) or len(merges) > MAX_MERGES:
        raise bad(f"'merges' must be a list of at most {MAX_MERGES} [a, b] pairs")
    lengths = [1] * 256  # byte length of each token: bounds memory before a byte is built
    total = 256
    for k, m in enumerate(merges):
        if not (isinstance(m, list) and len(m) == 2 and all(map(_is_int, m))):
            raise bad(f"merge {k} is {str(m)[:60]}; expected a pair of integer ids")
        for token_id in m:
            if not 0 <= token_id < 256 + k:
                raise bad(f"merge {k} uses id {token_id}; ids must be in [0, {256 + k})")
        lengths.append(lengths[m[0]] + lengths[m[1]])
        total += lengths[-1]
        if total > MAX_VOCAB_BYTES:
            raise bad(f"its tokens would take more than {MAX_VOCAB_BYTES >> 20} MiB (at merge {k})")
    if not (isinstance(specials, dict) and all(_is_int(i) for i in specials.values())):
        raise bad("'special_tokens' must map token strings to integer ids")
    if not _is_int(vocab_size):
        raise bad(f"'vocab_size' must be an integer, got {str(vocab_size)[:40]}")
    return d
