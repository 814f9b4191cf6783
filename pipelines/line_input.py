"""Reading a line at an interactive prompt so that Ctrl-C ends the wait at once.

``input()`` blocks in ``read()``, and Python turns a Ctrl-C into KeyboardInterrupt only
when that call returns. Libraries we load install their own SIGINT handler and chain to
Python's (polars does, and MLflow imports polars) with ``SA_RESTART``: the kernel then
restarts the ``read()`` after the signal, and ``lexgpt chat`` sat at ``you>`` until Enter.
:func:`read_line` waits in ``select()`` instead, which a signal always interrupts, on stdin
and on a wakeup fd that Python's handler writes to, so the KeyboardInterrupt comes at once.

The line comes from the terminal's own line editing (backspace, Ctrl-U, Ctrl-W), without
readline's history: calling readline after the kernel has echoed the line would echo it
twice.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading

MAX_LINE_BYTES = 1 << 20  # the same bound as a request body to the servers


class LineTooLong(ValueError):
    """A line over :data:`MAX_LINE_BYTES`; the rest of it has been read and dropped."""


def read_line(prompt: str) -> str | None:
    """Print ``prompt`` and return the next line of stdin without its newline; None at EOF.

    A Ctrl-C while waiting raises KeyboardInterrupt at once. Bytes are read straight from
    the file descriptor (no buffer that ``select`` cannot see), one line at a time.
    """
    sys.stdout.write(prompt)
    sys.stdout.flush()
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # a stream with no file behind it (embedding, tests)
        return _read_stream_line(sys.stdin)
    if os.name != "posix" or threading.current_thread() is not threading.main_thread():
        return _read_until_newline(fd, lambda: None)  # no wakeup fd to wait on
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    previous = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    def wait() -> None:
        while fd not in select.select([fd, wake_r], [], [])[0]:
            os.read(wake_r, 512)  # a signal woke us: its handler has run (or raised) by now

    try:
        return _read_until_newline(fd, wait)
    finally:
        signal.set_wakeup_fd(previous)
        os.close(wake_r)
        os.close(wake_w)


def _read_until_newline(fd: int, wait) -> str | None:
    line, too_long = bytearray(), False
    while True:
        wait()
        byte = os.read(fd, 1)
        if byte in (b"", b"\n"):
            if too_long:
                raise LineTooLong(f"a line over {MAX_LINE_BYTES:,} bytes was dropped")
            if byte == b"" and not line:
                return None
            return line.decode("utf-8", errors="replace").rstrip("\r")
        if len(line) < MAX_LINE_BYTES:
            line += byte
        else:
            too_long = True


def _read_stream_line(stream) -> str | None:
    line = stream.readline(MAX_LINE_BYTES + 1)
    if line == "":
        return None
    if len(line) > MAX_LINE_BYTES and not line.endswith("\n"):
        while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith("\n"):
            pass
        raise LineTooLong(f"a line over {MAX_LINE_BYTES:,} characters was dropped")
    return line.rstrip("\r\n")
