"""GGUF export checked on real data: a trained model and the pipeline's tokenizer in llama.cpp.

    python bench/llama_cpp_parity.py --lake data_lake --model-dir data_lake/trained_model

Exports the model as GGUF (f32 and bf16), loads both in llama.cpp (``llama-cpp-python``)
and reports, in one run:

- token ids: llama.cpp's tokenizer against ours on every val episode (equal episodes and
  tokens, and the first difference if any);
- logits on ``--windows`` val windows of the model's block size: max abs difference to
  ours, and bits/char from llama.cpp's logits beside ours (f32 and bf16);
- greedy continuations of three prompts (equal ids).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lexgpt.data.shards import read_manifest
from lexgpt.generation.generate import generate
from lexgpt.modeling.checkpoint import load_model
from lexgpt.modeling.gguf_export import export_gguf
from lexgpt.tokenizer.bpe import BPETokenizer

PROMPTS = ("What is consciousness?", "I think that", "The meaning of life is")


def val_texts(lake: Path) -> list[str]:
    import pyarrow.parquet as pq

    val = set(read_manifest(lake / "token_shards")["splits"]["val"]["episodes"])
    table = pq.read_table(lake / "cleaned_corpus" / "corpus.parquet", columns=["episode_id", "text"])
    rows = sorted(zip(table["episode_id"].to_pylist(), table["text"].to_pylist()))
    return [text for episode, text in rows if episode in val]


def load_llama(path: Path, n_ctx: int, vocab_only: bool = False):
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), vocab_only=vocab_only, n_ctx=n_ctx, n_batch=n_ctx,
                           n_threads=1, logits_all=True, type_k=llama_cpp.GGML_TYPE_F32,
                           type_v=llama_cpp.GGML_TYPE_F32, flash_attn=False, verbose=False)  # fmt: skip


def compare_ids(llm, tok: BPETokenizer, texts: list[str]) -> dict:
    equal_docs = tokens = 0
    first_diff = None
    t0 = time.perf_counter()
    for text in texts:
        ours = tok.encode(text)
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        tokens += len(ours)
        if theirs == ours:
            equal_docs += 1
        elif first_diff is None:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            first_diff = {"at_token": at, "text": tok.decode(ours[max(at - 3, 0): at + 3])}
    return {"episodes": len(texts), "equal_episodes": equal_docs, "tokens": tokens,
            "first_difference": first_diff, "seconds": round(time.perf_counter() - t0, 1)}


def compare_logits(llm, model, tok: BPETokenizer, windows: list[list[int]]) -> dict:
    max_diff, nats_ours, nats_theirs, chars = 0.0, 0.0, 0.0, 0
    counts = tok.token_char_counts()
    for ids in windows:
        llm.reset()
        llm.eval(ids)
        theirs = torch.from_numpy(np.asarray(llm.scores[: len(ids)], dtype=np.float32))  # (T, vocab)
        with torch.no_grad():
            ours = model(torch.tensor([ids]))[0][0]  # (T, vocab)
        max_diff = max(max_diff, (ours - theirs).abs().max().item())
        targets = torch.tensor(ids[1:])
        nats_ours += torch.nn.functional.cross_entropy(ours[:-1], targets, reduction="sum").item()
        nats_theirs += torch.nn.functional.cross_entropy(theirs[:-1], targets, reduction="sum").item()
        chars += int(sum(counts[i] for i in ids[1:]))
    bpc = lambda nats: round(nats / chars / math.log(2), 5)
    return {"max_abs_logit_diff": float(f"{max_diff:.3g}"), "bpc_ours": bpc(nats_ours), "bpc_llama_cpp": bpc(nats_theirs)}


def compare_greedy(llm, model, tok: BPETokenizer, n: int = 24) -> list[bool]:
    equal = []
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        ours = [int(t) for t in generate(model, ids, n, temperature=0.0)]
        theirs = []
        for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
            theirs.append(token)
            if len(theirs) == n:
                break
        equal.append(theirs == ours)
    return equal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lake", type=Path, default=Path("data_lake"))
    p.add_argument("--model-dir", type=Path, help="model.pt + config.json (default: LAKE/trained_model)")
    p.add_argument("--windows", type=int, default=8, help="val windows scored for logits and bits/char")
    args = p.parse_args()
    torch.set_num_threads(1)
    tok = BPETokenizer.load(args.lake / "bpe_vocab" / "tokenizer.json")
    model = load_model(args.model_dir or args.lake / "trained_model").eval()
    texts = val_texts(args.lake)
    block = model.config.block_size
    stream = [t for text in texts[:4] for t in tok.encode(text)]
    step = max(len(stream) // args.windows, block)
    windows = [stream[i: i + block] for i in range(0, len(stream) - block, step)][: args.windows]
    out = {"machine": platform.processor() or platform.machine(), "model": model.config.to_dict()}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("f32", "bf16"):
            t0 = time.perf_counter()
            path = export_gguf(model, tok, Path(tmp) / f"m.{dtype}.gguf", dtype=dtype)
            entry = {"export_seconds": round(time.perf_counter() - t0, 2), "bytes": path.stat().st_size}
            llm = load_llama(path, block)
            if dtype == "f32":
                entry["token_ids"] = compare_ids(load_llama(path, block, vocab_only=True), tok, texts)
                entry["greedy_equal"] = compare_greedy(llm, model, tok)
            entry["logits"] = compare_logits(llm, model, tok, windows)
            out[dtype] = entry
            print(json.dumps({dtype: entry}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
