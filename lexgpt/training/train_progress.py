"""What a training run shows while it runs: the bar, the time left, and when it evaluates.

The budget is steps or minutes, whichever runs out first (``TrainConfig``), so the bar
counts the budget in percent and says what is left of it:

>>> from lexgpt.training.train_config import TrainConfig
>>> time_left(TrainConfig(max_minutes=8.0), step=700, elapsed_s=200.0)
'4.7 min left'
>>> time_left(TrainConfig(max_steps=300, max_minutes=None), step=100, elapsed_s=50.0)
'200 steps left (~1.7 min)'

Evals come every ``eval_every`` steps, and wherever a quarter of the budget passed without
one, so a short run shows its val curve too:

>>> schedule = EvalSchedule(eval_every=1000, done=0.0)
>>> [step for step in range(1, 41) if schedule.due(step, done=(step - 1) / 40)]
[11, 21, 31]
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from lexgpt.training.train_config import TrainConfig

QUARTERS = 4


def progress_bar(done: float, enabled: bool) -> tqdm:
    """The budget in percent, from ``done`` (a resumed run starts part way). Redraws often
    on a terminal; in a log file (CI, Dagster) every 30 s is plenty."""
    return tqdm(total=100, initial=round(100 * done, 1), unit="%", bar_format="{l_bar}{bar}| {elapsed}{postfix}",
                disable=not enabled, mininterval=0.1 if sys.stderr.isatty() else 30.0)  # fmt: skip


def show(bar: tqdm, step: int, train_loss: float, tokens_per_s: float, left: str) -> None:
    bar.set_postfix_str(f"step {step}, loss {train_loss:.3f}, {tokens_per_s:,.0f} tokens/s, {left}",
                        refresh=sys.stderr.isatty())  # fmt: skip


def time_left(cfg: TrainConfig, step: int, elapsed_s: float, step_at_start: int = 0,
              elapsed_at_start: float = 0.0) -> str:
    """What is left of the budget: the clock's minutes, or the steps with their minutes at
    this session's pace, whichever ends the run first."""
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    steps_first = cfg.max_steps and (not budget_s or step / cfg.max_steps > elapsed_s / budget_s)
    if not steps_first:
        return f"{max(0.0, budget_s - elapsed_s) / 60:.1f} min left"
    steps, seconds = step - step_at_start, elapsed_s - elapsed_at_start
    pace = f" (~{(cfg.max_steps - step) * seconds / steps / 60:.1f} min)" if steps > 0 and seconds > 0 else ""
    return f"{cfg.max_steps - step} steps left{pace}"


class EvalSchedule:
    """Eval every ``eval_every`` steps, and where a quarter of the budget ended without such
    an eval. ``done`` (the budget's fraction spent) is the same on every rank, so the ranks
    agree on every eval."""

    def __init__(self, eval_every: int, done: float) -> None:
        self.eval_every = eval_every
        self.quarter = int(done * QUARTERS)  # the quarter the run is in
        self.regular_in_quarter = False  # an eval_every eval happened in it

    def due(self, step: int, done: float) -> bool:
        """At ``step`` (just taken), with ``done`` measured before it: evaluate now?"""
        regular = step % self.eval_every == 0
        crossed = int(done * QUARTERS) > self.quarter
        due = regular or (crossed and not self.regular_in_quarter)
        if crossed:
            self.quarter, self.regular_in_quarter = int(done * QUARTERS), False
        self.regular_in_quarter = self.regular_in_quarter or regular
        return due
