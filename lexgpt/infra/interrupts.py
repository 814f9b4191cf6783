"""Ctrl-C that cannot be lost: raised at once, and again at the next safe point.

Python runs a signal handler between two bytecodes of the main thread, so the
``KeyboardInterrupt`` (or Dagster's ``DagsterExecutionInterruptedError``) it raises can
land inside a ``__del__``, a garbage-collector callback or a library's cleanup code.
There it is printed as "Exception ignored in ..." and dropped, and a training loop with
a large budget runs on as if nothing happened (seen on CI: SQLAlchemy's GC callback ate
it while MLflow set up). :func:`stop_on_interrupt` installs a handler that records the
request before raising; long loops call ``check()`` once per step, which raises again
if the first one was swallowed. While active, an interrupt that Python reports as
"Exception ignored" (whichever handler raised it, Dagster's too) is recorded instead
of printed as a traceback. Nested uses share the outer request, so a Ctrl-C in
the asset's setup still stops the training loop it calls later.

>>> import os, signal
>>> with stop_on_interrupt() as stop:
...     try:
...         os.kill(os.getpid(), signal.SIGINT)  # raises here...
...     except KeyboardInterrupt:
...         pass  # ...and some library swallows it
...     try:
...         stop.check()
...     except KeyboardInterrupt:
...         print("stopped at the check")
stopped at the check
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopRequest:
    """Whether Ctrl-C was pressed since the outermost context was entered."""

    def __init__(self) -> None:
        self.requested = False

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop was requested."""
        if self.requested:
            raise KeyboardInterrupt

    def _handle(self, _signo: int, _frame: object) -> None:
        self.requested = True
        raise KeyboardInterrupt


_active: StopRequest | None = None  # the outermost context's request (main thread only)


def _record_dropped_interrupts(stop: StopRequest, fallback):
    """A ``sys.unraisablehook``: an interrupt raised where Python had to drop it is recorded."""

    def hook(unraisable) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, BaseException) and not isinstance(exc, Exception):
            stop.requested = True  # KeyboardInterrupt, DagsterExecutionInterruptedError, ...
        else:
            fallback(unraisable)

    return hook


@contextmanager
def stop_on_interrupt() -> Iterator[StopRequest]:
    """Record SIGINT as well as raising it; the previous handlers are back on exit.

    A nested use shares the outer request and installs the handler again (a framework
    may have put its own in between). SIGTERM's handler is put back too: Dagster binds
    SIGTERM to whatever handles SIGINT each time it swaps its own in or out, which inside
    this block is this request's, and that binding outlived the block. Outside the main
    thread signal handlers cannot be set: there the request is never set and interrupts
    behave as before.
    """
    global _active
    outer = _active
    stop = outer or StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous_term = signal.getsignal(signal.SIGTERM)  # None: set outside Python, left as is
    previous = signal.signal(signal.SIGINT, stop._handle)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _record_dropped_interrupts(stop, previous_hook)
    _active = stop
    try:
        yield stop
    finally:
        _active = outer
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, previous)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
