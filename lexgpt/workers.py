"""Process-pool workers that die quietly: signal handlers reset to the OS default.

A forked worker inherits its parent's Python signal handlers. Inside a Dagster run
those are Dagster's, which turn SIGTERM into ``DagsterExecutionInterruptedError``; a
pool's normal shutdown sends SIGTERM to its workers, so every ``token_shards`` run used
to log a traceback from ``ForkPoolWorker``. Pass :func:`reset_signals` as the pool's
``initializer``: a worker then simply ends on SIGTERM (and on Ctrl-C's SIGINT, which
the parent process handles for the whole run).

>>> import multiprocessing, signal
>>> with multiprocessing.get_context("fork").Pool(1, initializer=reset_signals) as pool:
...     pool.apply(signal.getsignal, (signal.SIGTERM,)) == signal.SIG_DFL
True
"""

from __future__ import annotations

import signal


def reset_signals() -> None:
    """Pool initializer: SIGINT and SIGTERM back to the OS default (terminate)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
