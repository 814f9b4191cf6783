"""Ctrl-C is never lost: recorded by the handler and by the unraisable hook, checked later."""

from __future__ import annotations

import gc
import os
import signal
import sys

import pytest

from lexgpt.infra.interrupts import stop_on_interrupt


class FrameworkInterrupt(BaseException):
    """Like DagsterExecutionInterruptedError: a BaseException raised by a framework's handler."""


class RaisesOnCollect:
    def __init__(self, action):
        self.action = action

    def __del__(self):
        self.action()


def test_interrupt_dropped_in_a_finalizer_is_recorded_and_not_printed(capfd):
    with stop_on_interrupt() as stop:
        RaisesOnCollect(lambda: os.kill(os.getpid(), signal.SIGINT))  # collected at once
        gc.collect()
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            stop.check()
    assert "Traceback" not in capfd.readouterr().err


def test_framework_handler_installed_in_between_is_covered_by_the_hook():
    def framework_handler(_signo, _frame):
        raise FrameworkInterrupt

    with stop_on_interrupt() as stop:
        inner_previous = signal.signal(signal.SIGINT, framework_handler)  # e.g. Dagster's step
        RaisesOnCollect(lambda: os.kill(os.getpid(), signal.SIGINT))
        gc.collect()
        signal.signal(signal.SIGINT, inner_previous)
        with stop_on_interrupt() as nested:  # the training loop inside the step
            assert nested is stop
            with pytest.raises(KeyboardInterrupt):
                nested.check()


def test_other_unraisable_errors_still_reach_the_previous_hook():
    seen = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(type(u.exc_value))
    try:
        with stop_on_interrupt() as stop:
            RaisesOnCollect(lambda: 1 / 0)
            gc.collect()
        assert seen == [ZeroDivisionError] and not stop.requested
    finally:
        sys.unraisablehook = previous


def test_handler_and_hook_are_restored():
    handler, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    with stop_on_interrupt():
        with stop_on_interrupt():
            pass
        assert signal.getsignal(signal.SIGINT) is not handler
    assert signal.getsignal(signal.SIGINT) is handler and sys.unraisablehook is hook


def test_both_handlers_are_back_after_a_framework_rebound_sigterm_inside():
    """Dagster binds SIGTERM to SIGINT's handler whenever it swaps its own handler in or out
    (``setup_interrupt_handlers``); inside the block that is this request's handler, which
    used to outlive the block (seen after each in-process refresh in the test suite)."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with stop_on_interrupt():
        signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))  # what Dagster does
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_real_dagster_materialize_inside_leaves_no_handler_behind():
    import dagster as dg  # a dependency of the project: this test must not skip

    @dg.asset
    def one() -> int:
        return 1

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with stop_on_interrupt():
        assert dg.materialize([one], instance=dg.DagsterInstance.ephemeral()).success
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
