"""Plots of a training run (matplotlib's object API: no pyplot state, safe in servers).

>>> fig = loss_curve_figure([{"step": 1, "train_loss": 5.0}, {"step": 2, "train_loss": 4.0,
...                            "val_loss": 4.2, "val_bpc": 2.1}])
>>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
['train loss', 'val loss', 'val bpc']
"""

from __future__ import annotations

import io
import numbers
from collections.abc import Mapping, Sequence
from typing import Any


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return float(value.item()) if hasattr(value, "item") else None
    return float(value)


def loss_curve_figure(history: Sequence[Mapping[str, Any]]):
    """A Figure (Agg): train + val loss, val bits per character on a second axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def series(key: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for i, row in enumerate(history):
            value = _number(row.get(key))
            if value is not None:
                xs.append(float(row.get("step", i)))
                ys.append(value)
        return xs, ys

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    handles = []
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        xs, ys = series(key)
        if xs:
            (h,) = ax.plot(xs, ys, style, label=key.replace("_", " "), markersize=3)
            handles.append(h)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(True, alpha=0.3)
    xs, ys = series("val_bpc")
    if xs:
        ax2 = ax.twinx()
        (h,) = ax2.plot(xs, ys, "s--", color="tab:green", label="val bpc", markersize=3)
        ax2.set_ylabel("val bits per character")
        handles.append(h)
    if handles:
        ax.legend(handles=handles, labels=[h.get_label() for h in handles], loc="upper right")
    else:
        ax.text(0.5, 0.5, "no loss values", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("lexgpt training")
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
