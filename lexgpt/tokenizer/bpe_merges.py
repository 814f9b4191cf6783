"""Learning BPE merges: the training loop behind ``BPETokenizer.train``.

Counts of adjacent id pairs are kept incrementally: after a merge only the chunks that held
the merged pair are rewritten, and only their neighbouring pairs' counts change. A lazy
max-heap picks the next pair (highest count; ties: the smallest pair of ids).

>>> from collections import Counter
>>> learn_merges(Counter({"aaab": 2, "aaab d": 1}), 2)   # 'aa' -> 256, then 'ab' -> 257
[(97, 97), (97, 98)]
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict


def learn_merges(counts: Counter[str], n_merges: int) -> list[tuple[int, int]]:
    """The BPE loop over unique chunks ``counts`` (chunk -> occurrences)."""
    words = [list(c.encode("utf-8")) for c in counts]
    freqs = list(counts.values())
    stats: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}  # pair -> chunks that (may) hold it
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            stats[p] = stats.get(p, 0) + f
            where.setdefault(p, set()).add(wi)
    # Max-heap by (count desc, pair asc) via negated counts. Entries go stale when a
    # count changes; a popped entry is used only if it still matches ``stats``.
    heap = [(-c, a, b) for (a, b), c in stats.items()]
    heapq.heapify(heap)
    tokens = [bytes([i]) for i in range(256)]
    known = set(tokens)
    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges and heap:
        negc, a, b = heapq.heappop(heap)
        pair = (a, b)
        if stats.get(pair) != -negc:
            continue
        merged = tokens[a] + tokens[b]
        if merged in known:  # see the module docstring: bytes must stay unique
            del stats[pair]
            where.pop(pair, None)
            continue
        new = 256 + len(merges)
        merges.append(pair)
        tokens.append(merged)
        known.add(merged)
        # Rewrite each chunk holding the pair; only the neighbours of a merged
        # occurrence change: (prev, a) -> (prev, new) and (b, next) -> (new, next).
        # ``prev`` is read from the rewritten output, which makes runs like "abab"
        # come out right: the (new, a) added for the first hit is taken back by the second.
        delta: defaultdict[tuple[int, int], int] = defaultdict(int)
        for wi in where.pop(pair):
            w = words[wi]
            if len(w) < 2:
                continue
            f = freqs[wi]
            out: list[int] = []
            i, n, hit = 0, len(w), False
            while i < n:
                if w[i] == a and i + 1 < n and w[i + 1] == b:
                    hit = True
                    if out:
                        prv = out[-1]
                        delta[prv, a] -= f
                        delta[prv, new] += f
                        where.setdefault((prv, new), set()).add(wi)
                    if i + 2 < n:
                        nxt = w[i + 2]
                        delta[b, nxt] -= f
                        delta[new, nxt] += f
                        where.setdefault((new, nxt), set()).add(wi)
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            if hit:
                words[wi] = out
        del stats[pair]
        delta.pop(pair, None)
        for p, d in delta.items():
            if d == 0 or p not in stats and d < 0:
                continue
            c = stats.get(p, 0) + d
            if c > 0:
                stats[p] = c
                heapq.heappush(heap, (-c, p[0], p[1]))
            else:
                stats.pop(p, None)
    return merges
