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

import contextlib
import multiprocessing
import signal
from collections.abc import Iterator

_QUIET = {signal.SIGINT, signal.SIGTERM}


def reset_signals() -> None:
    """Pool initializer: SIGINT and SIGTERM back to the OS default (terminate), then let
    through any that arrived while the worker started (see :func:`fork_pool`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _QUIET)


@contextlib.contextmanager
def fork_pool(processes: int) -> Iterator:
    """A fork ``multiprocessing.Pool`` whose workers never run the parent's handlers.

    The initializer alone leaves a window: a worker still starting when the pool ends gets
    SIGTERM with the parent's handler in place (seen under load). So the signals are
    blocked while the workers are forked; a worker inherits the block, and its initializer
    resets the handlers before it unblocks them. The parent's block lasts only the forks.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _QUIET)
    try:
        pool = multiprocessing.get_context("fork").Pool(processes, initializer=reset_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    with pool:
        yield pool
