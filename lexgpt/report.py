"""What the terminal says about a training: one line per evaluation, and the verdict.

During training, :class:`EvalLines` (an ``on_row`` callback of
:class:`lexgpt.tracking.LiveMetrics`) prints a line at every evaluation:

>>> lines = []
>>> show = EvalLines(max_steps=100, write=lines.append, clock=iter([0.0, 10.0, 20.0]).__next__)
>>> show(10, {"train_loss": 4.2, "tokens_per_s": 5000.0})
>>> show(50, {"train_loss": 3.1, "tokens_per_s": 5200.0, "val_loss": 3.3, "val_bpc": 1.912})
>>> lines
['step 50/100  train loss 3.100  val bits/char 1.912  5,200 tok/s  ~12 s left']

After a refresh that trained, :func:`verdict_lines` sums it up:

>>> print("\\n".join(verdict_lines(
...     times=[("token_shards", 3.2), ("trained_model", 181.0)],
...     new=("3", 1.74), alias="champion", champion=("2", 1.80), baseline_bpc=2.31,
...     samples=[("Is there free will?", "I think that the universe is a computer.")])))
<BLANKLINE>
verdict
  token_shards         3.2 s
  trained_model      181.0 s
  new model         lexgpt v3: 1.7400 val bits/char -> champion
  previous champion lexgpt v2: 1.8000 val bits/char
  n-gram baseline   2.3100 val bits/char
  samples
    Is there free will? -> I think that the universe is a computer.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence


def _stderr(line: str) -> None:
    """Print above a running tqdm progress bar (if any) instead of through it."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(line, file=sys.stderr, flush=True)
    else:
        tqdm.write(line, file=sys.stderr)


class EvalLines:
    """Print ``step, train loss, val bits/char, tokens/s, time left`` at each evaluation
    (a row with ``val_bpc``). Time left extrapolates the steps seen so far, capped by
    the ``max_minutes`` budget."""

    def __init__(self, max_steps: int, max_minutes: float | None = None, *,
                 write: Callable[[str], None] = _stderr, clock: Callable[[], float] = time.monotonic):
        self.max_steps = max_steps
        self.max_minutes = max_minutes
        self.write = write
        self.clock = clock
        self.started = clock()
        self.first_step: int | None = None
        self.train_loss: float | None = None
        self.tokens_per_s: float | None = None

    def __call__(self, step: int, metrics: Mapping[str, float]) -> None:
        now = self.clock()
        if self.first_step is None:  # a resumed run starts past 0
            self.first_step, self.started = step, now
        self.train_loss = metrics.get("train_loss", self.train_loss)
        self.tokens_per_s = metrics.get("tokens_per_s", self.tokens_per_s)
        if "val_bpc" not in metrics:
            return
        parts = [f"step {step}/{self.max_steps}"]
        if self.train_loss is not None:
            parts.append(f"train loss {self.train_loss:.3f}")
        parts.append(f"val bits/char {metrics['val_bpc']:.3f}")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:,.0f} tok/s")
        left = self._seconds_left(step, now)
        if left is not None:
            parts.append(f"~{left / 60:.1f} min left" if left >= 60 else f"~{left:.0f} s left")
        self.write("  ".join(parts))

    def _seconds_left(self, step: int, now: float) -> float | None:
        elapsed, done = now - self.started, step - (self.first_step or 0)
        left = None
        if done > 0:
            left = max(0.0, (self.max_steps - step) * elapsed / done)
        if self.max_minutes is not None:
            budget_left = max(0.0, self.max_minutes * 60 - elapsed)
            left = budget_left if left is None else min(left, budget_left)
        return left


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
) -> list[str]:
    """The refresh's closing summary: per-asset seconds, the new model's val bits/char and
    the alias it got, the champion it was compared with (omitted when the new model is
    the first), the n-gram baseline (omitted when unknown) and a few sample lines."""
    width = max([len(name) for name, _ in times] + [len("previous champion")])
    lines = ["", "verdict"]
    lines += [f"  {name:<{width}} {seconds:6.1f} s" for name, seconds in times]
    if new is not None:
        got = f" -> {alias}" if alias else ""
        lines.append(f"  {'new model':<{width}} {model_name} v{new[0]}: {new[1]:.4f} val bits/char{got}")
    if champion is not None:
        label = "previous champion" if alias == "champion" else "champion"
        bpc = f"{champion[1]:.4f} val bits/char" if champion[1] is not None else "no val bits/char"
        lines.append(f"  {label:<{width}} {model_name} v{champion[0]}: {bpc}")
    if baseline_bpc is not None:
        lines.append(f"  {'n-gram baseline':<{width}} {baseline_bpc:.4f} val bits/char")
    if samples:
        lines.append("  samples")
        for prompt, completion in samples:
            text = " ".join(completion.split())
            if len(text) > sample_chars:
                text = text[: sample_chars - 3] + "..."
            lines.append(f"    {prompt} -> {text}")
    return lines
