"""The Kneser-Ney token n-gram baseline: fit + score time, memory and val bits/char per order.

    python bench/ngram.py --shards data_lake/token_shards --tokenizer data_lake/bpe_vocab/tokenizer.json

Fits ``lexgpt.evaluation.ngram.KneserNey`` on ``train.bin`` and scores every token of ``val.bin``
for each ``--orders`` (default 3 4 5), one JSON line per order, then a Markdown table.
Peak memory is the process's high-water mark so far (orders run from small to large,
so each line's figure is that order's peak or an earlier, smaller order's). CPU seconds
(user + system, fit and score together) are reported next to wall seconds: on a shared
machine they are the better guide to what a quiet one would take.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
from pathlib import Path

from lexgpt.evaluation.ngram import baseline_from_shards
from lexgpt.tokenizer.bpe import BPETokenizer


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", type=Path, default=Path("data_lake/token_shards"))
    p.add_argument("--tokenizer", type=Path, default=Path("data_lake/bpe_vocab/tokenizer.json"))
    p.add_argument("--orders", type=int, nargs="+", default=[3, 4, 5])
    args = p.parse_args()
    load = os.getloadavg()[0]
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average before: {load:.2f}", file=sys.stderr)
    token_chars = BPETokenizer.load(args.tokenizer).token_char_counts()
    rows = []
    for order in sorted(args.orders):
        cpu_before = _cpu_seconds()
        r = baseline_from_shards(args.shards, token_chars, order=order)
        cpu = _cpu_seconds() - cpu_before
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        report = {**r.to_dict(), "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(peak_mb), "load_before": round(load, 2)}
        print(json.dumps(report), flush=True)
        rows.append(report)
    print("\n| order | val bits/char | val nats/token | fit s (wall) | score s (wall) | CPU s (both) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['order']} | {r['val_bpc']:.4f} | {r['val_loss']:.4f} | {r['fit_seconds']:.1f} "
              f"| {r['score_seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_rss_mb']:,} |")


if __name__ == "__main__":
    main()
