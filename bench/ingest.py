"""Time raw ingestion (``lexgpt.data.ingest.read_cues``) on the full Lexicap folder.

    python bench/ingest.py [--folder DIR] [--workers N] [--repeat 3]

The folder defaults to ``$LEXICAP_DIR``, else ``../shared/lexicap/vtt`` next to the repo
(``lexgpt.infra.paths.lexicap_dir``).
Each repeat is a full cold-pool run (process start-up included); the best is reported.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from lexgpt.data.ingest import read_cues, summarize
from lexgpt.infra import paths



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=paths.lexicap_dir())
    ap.add_argument("--variant", default="large")
    ap.add_argument("--workers", type=int, default=None, help="default: all available cores")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.folder is None:
        ap.error("no Lexicap folder: pass --folder or set LEXICAP_DIR")

    times = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        table = read_cues(args.folder, args.variant, workers=args.workers)
        times.append(time.perf_counter() - t0)
        print(f"run {i + 1}: {times[-1]:.2f} s")
    stats = summarize(table)
    best = min(times)
    print(f"folder    {args.folder.resolve()}")
    print(f"cpus      {len(os.sched_getaffinity(0))} available, workers={args.workers or 'auto'}")
    print(f"episodes  {stats['episodes']}")
    print(f"cues      {stats['cues']:,}")
    print(f"hours     {stats['hours']:.1f}")
    print(f"seconds   {best:.2f} (best of {args.repeat}; all: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"cues/s    {stats['cues'] / best:,.0f}")


if __name__ == "__main__":
    main()
