"""Benchmark our BPE against HF ``tokenizers`` and ``tiktoken`` on the full Lexicap corpus.

    python bench/tokenizer.py --corpus data_lake/cleaned_corpus/corpus.parquet --update-md

All numbers come from one run: train vocab 1000 with ours and with HF's BpeTrainer (same
split pattern, byte-level, same special token), encode every episode with ours (a fresh
tokenizer loaded from disk, so its chunk cache starts cold), HF and tiktoken (both
loaded with *our* merges as well, to check they agree), and check that every episode
round-trips exactly. Without ``--corpus`` (or if the file is missing) a stand-in corpus
is read from the VTT files: cue text only, joined with spaces per episode.

Targets (2 cores): training <= 1.0x HF's, encoding <= 0.5x HF's ``encode_batch``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from lexgpt.infra import paths
from lexgpt.tokenizer.bpe import EOT, BPETokenizer
from lexgpt.tokenizer.tokenizer_export import export_hf, to_tiktoken

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT / "data_lake" / "cleaned_corpus" / "corpus.parquet"
DEFAULT_VTT = paths.lexicap_dir()  # $LEXICAP_DIR, else ../shared/lexicap/vtt if present


def load_parquet(path: Path) -> tuple[list[int], list[str]]:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["episode_id", "text"]).sort_by("episode_id")
    return t["episode_id"].to_pylist(), t["text"].to_pylist()


def load_vtt(folder: Path) -> tuple[list[int], list[str]]:
    """Good enough for timing: every cue line of an episode, joined with spaces."""
    episodes = []
    for p in sorted(folder.glob("*.vtt")):
        m = re.search(r"\d+", p.name)
        if not m:
            continue
        lines = []
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                s = line.strip()
                if s and s != "WEBVTT" and "-->" not in s:
                    lines.append(s)
        episodes.append((int(m.group()), " ".join(lines)))
    episodes.sort()
    return [e for e, _ in episodes], [t for _, t in episodes]


def hf_tokenizer_trained(texts: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(BPETokenizer.pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    t0 = time.perf_counter()
    tok.train_from_iterator(texts, trainer)
    return tok, time.perf_counter() - t0


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="Parquet with episode_id, text")
    ap.add_argument("--vtt-dir", type=Path, default=DEFAULT_VTT, help="fallback when --corpus is missing")
    ap.add_argument("--vocab-size", type=int, default=1000)
    ap.add_argument("--update-md", action="store_true", help="rewrite the '## Tokenizer' section of BENCHMARKS.md")
    args = ap.parse_args(argv)

    from tokenizers import Tokenizer

    load_before = os.getloadavg()
    if args.corpus.exists():
        source = f"cleaned corpus `{args.corpus}`"
        ids, texts = load_parquet(args.corpus)
    else:
        if args.vtt_dir is None:
            sys.exit(f"{args.corpus} is missing and no VTT folder is known: pass --corpus or --vtt-dir")
        source = f"stand-in corpus from VTT cue text in `{args.vtt_dir}` ({args.corpus} missing)"
        ids, texts = load_vtt(args.vtt_dir)
    n_chars = sum(map(len, texts))
    print(f"corpus: {len(texts)} episodes, {n_chars:,} chars ({source})", flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench_tok_"))
    ours, t_train = timed(BPETokenizer.train, texts, args.vocab_size)
    print(f"ours  train      {t_train:7.2f} s  vocab {ours.vocab_size}", flush=True)
    hf, t_hf_train = timed(hf_tokenizer_trained, texts, args.vocab_size)
    hf, t_hf_train = hf[0], hf[1]
    print(f"HF    train      {t_hf_train:7.2f} s  vocab {hf.get_vocab_size()}", flush=True)

    ours.save(work / "tokenizer.json")
    ours = BPETokenizer.load(work / "tokenizer.json")  # cold chunk cache, as in the pipeline
    ids_ours, t_enc = timed(ours.encode_batch, texts)
    n_tokens = sum(map(len, ids_ours))
    print(f"ours  encode     {t_enc:7.2f} s  {n_tokens:,} tokens", flush=True)

    enc_hf, t_hf_enc = timed(hf.encode_batch, texts)
    _, t_hf_ids = timed(lambda: [e.ids for e in enc_hf])
    print(f"HF    encode     {t_hf_enc:7.2f} s  (+{t_hf_ids:.2f} s to read .ids)", flush=True)

    export_hf(ours, work / "hf_tokenizer.json")
    hf_ours = Tokenizer.from_file(str(work / "hf_tokenizer.json"))
    enc_hf_ours, t_hf_ours_enc = timed(hf_ours.encode_batch, texts)
    hf_diff = [e for e, a, b in zip(ids, ids_ours, enc_hf_ours) if a != b.ids]
    print(f"HF(our merges)   {t_hf_ours_enc:7.2f} s  differing episodes: {len(hf_diff)}", flush=True)

    tk = to_tiktoken(ours)
    ids_tk, t_tk = timed(tk.encode_ordinary_batch, texts, num_threads=len(os.sched_getaffinity(0)))
    tk_diff = [e for e, a, b in zip(ids, ids_ours, ids_tk) if a != b]
    print(f"tiktoken(ours)   {t_tk:7.2f} s  differing episodes: {len(tk_diff)}", flush=True)

    bad, t_rt = timed(lambda: [e for e, t, x in zip(ids, texts, ids_ours) if ours.decode(x) != t])
    print(f"round trip       {t_rt:7.2f} s  failing episodes: {len(bad)}", flush=True)

    r_train, r_enc = t_train / t_hf_train, t_enc / t_hf_enc
    ok_train, ok_enc = r_train <= 1.0, r_enc <= 0.5
    print(f"ratios: train {r_train:.2f}x HF (target <= 1.0: {ok_train}), "
          f"encode {r_enc:.2f}x HF (target <= 0.5: {ok_enc}), round trip {'OK' if not bad else 'FAILED'}")

    if args.update_md:
        cores = len(os.sched_getaffinity(0))
        cmd = "python bench/tokenizer.py " + " ".join(argv if argv is not None else sys.argv[1:])
        md = f"""## Tokenizer

Command: `{cmd.strip()}` (one run; all numbers below from it).
Corpus: {source}: {len(texts)} episodes, {n_chars:,} characters, {n_tokens:,} tokens at vocab {ours.vocab_size}.
Machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}; load average before the run
{load_before[0]:.2f} (the machine was shared with other engineers' jobs, so timings are noisy).

| step | ours | HF `tokenizers` | ratio | target | met |
|---|---|---|---|---|---|
| train vocab {args.vocab_size} (byte-level, same split regex) | {t_train:.2f} s | {t_hf_train:.2f} s (BpeTrainer) | {r_train:.2f}x | <= 1.0x | {"yes" if ok_train else "NO"} |
| encode all episodes, 2 cores | {t_enc:.2f} s | {t_hf_enc:.2f} s (`encode_batch`, +{t_hf_ids:.2f} s for `.ids`) | {r_enc:.2f}x | <= 0.5x | {"yes" if ok_enc else "NO"} |

- Exact round trip (`decode(encode(text)) == text`) on every episode: {"yes" if not bad else f"NO, failing: {bad}"}.
- HF `tokenizers` loading our `export_hf` file: {t_hf_ours_enc:.2f} s, episodes encoded differently from ours: {len(hf_diff)}.
- tiktoken with our merges (`encode_ordinary_batch`, {cores} threads): {t_tk:.2f} s, episodes encoded differently: {len(tk_diff)}
  (tiktoken ranks byte strings rather than pairs, so a mismatch is possible in principle).
- Our encode starts from a tokenizer freshly loaded from disk (cold chunk cache in each worker process).
"""
        update_section(ROOT / "BENCHMARKS.md", "## Tokenizer", md)
        print(f"updated {ROOT / 'BENCHMARKS.md'}")
    return 0 if not bad else 1


def update_section(path: Path, heading: str, body: str) -> None:
    """Replace the section starting at ``heading`` (up to the next '## ') or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(heading))
        text = text[:start] + body + ("\n" + text[nxt + 1 :] if nxt >= 0 else "")
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
