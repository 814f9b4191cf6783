"""BodyLimit reads a refused body (bounded, dropped as it comes) before answering 413."""

from __future__ import annotations

import asyncio

from lexgpt.serving.body_limit import BodyLimit


async def never_called(scope, receive, send):
    raise AssertionError("the app must not see a refused body")


def refuse(body_parts: list[bytes], declared: int | None, limit: int = 10, drain: int = 100):
    """Send ``body_parts`` through BodyLimit; the status and how many parts it read."""
    parts = [{"type": "http.request", "body": b, "more_body": i < len(body_parts) - 1}
             for i, b in enumerate(body_parts)]  # fmt: skip
    read, sent = [], []

    async def receive():
        read.append(parts.pop(0))
        return read[-1]

    async def send(message):
        sent.append(message)

    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    asyncio.run(BodyLimit(never_called, limit=limit, drain=drain)({"type": "http", "headers": headers}, receive, send))
    return sent[0]["status"], len(read)


def test_a_declared_body_over_the_limit_is_read_and_dropped_before_the_413():
    # Read to its end: a client that sends it all before reading then gets the 413, not a reset.
    assert refuse([b"x" * 8] * 5, declared=40) == (413, 5)


def test_a_streamed_body_over_the_limit_is_drained_too():
    assert refuse([b"x" * 8] * 5, declared=None) == (413, 5)


def test_past_the_drain_bound_it_answers_at_once():
    assert refuse([b"x" * 8] * 50, declared=400) == (413, 0)  # declared past the bound: nothing read
    status, read = refuse([b"x" * 8] * 50, declared=None)  # streamed: stops once past the bound
    assert status == 413 and read == 13  # 13 x 8 = 104 > 100
