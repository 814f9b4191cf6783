"""The chat prompt's line reader: lines, EOF, a bound, and Ctrl-C that does not wait for Enter."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

from conftest import REPO

# A process like `lexgpt chat`: polars loaded (MLflow imports it), whose SIGINT handler
# makes the kernel restart a blocking read after Ctrl-C.
CHILD = """
import faulthandler, signal, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test's report if the child hangs
import polars  # noqa: F401
from pipelines.line_input import read_line
try:
    while True:
        line = read_line("you> ")
        if line is None:
            print("EOF", flush=True)
            break
        print(f"got {line!r}", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def child(**kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO, **kw)


def test_lines_then_eof_each_line_once():
    out, _ = child().communicate("What is love?\n\nünïcode\r\nno newline at the end", timeout=60)
    assert out.split("you> ")[1:] == ["got 'What is love?'\n", "got ''\n", "got 'ünïcode'\n",
                                      "got 'no newline at the end'\n", "EOF\n"]


def like_a_shell() -> None:
    """Start the child with Ctrl-C delivered and not ignored, as a shell starts a command.

    Both survive exec: a child inherits an ignored SIGINT (then Python installs no handler)
    and a blocked one (then the signal stays pending). In the full suite the child once sat in
    select() through two Ctrl-C with one thread (its stacks, below): by then the pytest
    process had SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_at_a_terminal_prompt_ends_the_wait_at_once():
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=follower, stdout=follower, stderr=follower,
                            cwd=REPO, start_new_session=True, preexec_fn=like_a_shell)
    os.close(follower)
    seen = b""
    try:
        while b"you> " not in seen:
            assert select.select([leader], [], [], 60)[0], seen
            seen += os.read(leader, 4096)
        os.write(leader, b"half a question")  # typed, no Enter
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
        try:
            assert proc.wait(timeout=10) == 130  # with input(), this waited for Enter
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit 10 s after Ctrl-C; the child's stacks:\n{stacks(proc, leader)}") from None
    finally:
        proc.kill()
        os.close(leader)


def stacks(proc: subprocess.Popen, leader: int) -> str:
    """What a hung child printed since, then every thread's stack (faulthandler on SIGUSR1)."""
    os.kill(proc.pid, signal.SIGUSR1)
    out, deadline = b"", time.monotonic() + 5
    while time.monotonic() < deadline and select.select([leader], [], [], 0.5)[0]:
        try:
            out += os.read(leader, 65536)
        except OSError:
            break
    return out.decode("utf-8", errors="replace")
