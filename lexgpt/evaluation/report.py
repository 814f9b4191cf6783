"""What the terminal says after a refresh that trained: the verdict.

(During training, ``lexgpt.training.train`` itself prints one line per evaluation: step, train
loss, val bits/char, tokens/s and the time left.) After the refresh, :func:`verdict_lines`
sums it up:

>>> print("\\n".join(verdict_lines(
...     times=[("token_shards", 3.2), ("trained_model", 181.0)],
...     new=("3", 1.74), alias="champion", champion=("2", 1.80), baseline_bpc=2.31,
...     samples=[("Is there free will?", "I think that the universe is a computer.")],
...     train_minutes=2.5, budget_minutes=2.5)))
<BLANKLINE>
verdict
  token_shards         3.2 s
  trained_model      181.0 s  (training loop 150 s; budget 2.5 min)
  new model         lexgpt v3: 1.7400 val bits/char -> champion
  previous champion lexgpt v2: 1.8000 val bits/char
  n-gram baseline   2.3100 val bits/char (the model beats it by 0.5700)
  samples
    Is there free will? -> I think that the universe is a computer.

A model that loses to counting is not made champion, and the verdict says what to run:

>>> print("\\n".join(verdict_lines(times=[], new=("4", 1.4792), alias="challenger", champion=None,
...     baseline_bpc=1.4719, train_minutes=8.0)[2:]))
  new model         lexgpt v4: 1.4792 val bits/char -> challenger
  n-gram baseline   1.4719 val bits/char: the model LOSES to counting by 0.0073 bits/char,
                    so it is not champion. Train longer: lexgpt refresh --minutes 16
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def verdict_lines(
    *,
    times: Sequence[tuple[str, float]],
    new: tuple[str, float] | None,
    alias: str | None,
    champion: tuple[str, float | None] | None,
    baseline_bpc: float | None = None,
    samples: Sequence[tuple[str, str]] = (),
    model_name: str = "lexgpt",
    sample_chars: int = 160,
    train_minutes: float | None = None,
    budget_minutes: float | None = None,
    baseline_stale: bool = False,
) -> list[str]:
    """The refresh's closing summary: per-asset seconds, the new model's val bits/char and
    the alias it got, the champion it was compared with (omitted when the new model is
    the first), the n-gram baseline (omitted when unknown; ``baseline_stale``: made from other
    shards, so not compared) and a few sample lines."""
    width = max([len(name) for name, _ in times] + [len("previous champion")])
    lines = ["", "verdict"]
    for name, seconds in times:
        line = f"  {name:<{width}} {seconds:6.1f} s"
        if name == "trained_model" and train_minutes is not None and budget_minutes:
            # What the budget covers, beside what the asset took: the rest is launching,
            # scoring every val token and copying the weights.
            line += f"  (training loop {train_minutes * 60:.0f} s; budget {budget_minutes:g} min)"
        lines.append(line)
    if new is not None:
        got = f" -> {alias}" if alias else ""
        lines.append(f"  {'new model':<{width}} {model_name} v{new[0]}: {new[1]:.4f} val bits/char{got}")
    if champion is not None:
        label = "previous champion" if alias == "champion" else "champion"
        bpc = f"{champion[1]:.4f} val bits/char" if champion[1] is not None else "no val bits/char"
        lines.append(f"  {label:<{width}} {model_name} v{champion[0]}: {bpc}")
    if baseline_bpc is not None:
        label = f"  {'n-gram baseline':<{width}} {baseline_bpc:.4f} val bits/char"
        if new is None or new[1] < baseline_bpc:
            won = f" (the model beats it by {baseline_bpc - new[1]:.4f})" if new is not None else ""
            lines.append(label + won)
        else:
            longer = math.ceil(max(2 * (budget_minutes or train_minutes or 8.0), 1.0))
            pad = " " * (width + 3)
            lines += [f"{label}: the model LOSES to counting by {new[1] - baseline_bpc:.4f} bits/char,",
                      f"{pad}so it is not champion. Train longer: lexgpt refresh --minutes {longer:g}"]
    if baseline_stale:
        lines.append(f"  {'n-gram baseline':<{width}} made from other token shards: not compared, so the "
                     "model is not champion (materialize ngram_baseline, then registered_model)")
    if samples:
        lines.append("  samples")
        for prompt, completion in samples:
            text = " ".join(completion.split())
            if len(text) > sample_chars:
                text = text[: sample_chars - 3] + "..."
            lines.append(f"    {prompt} -> {text}")
    return lines
