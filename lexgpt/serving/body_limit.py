"""A bound on HTTP request bodies, for every server lexgpt runs (an ASGI middleware).

MLflow's scoring server reads whatever body it is sent into memory, and so would any
FastAPI route: a client can send gigabytes. :class:`BodyLimit` wraps an ASGI app and
answers 413 with one JSON line (never echoing the input) once a body passes ``limit``
bytes, whether the client declared its length or streamed it in chunks, after reading and
dropping up to ``drain`` bytes of it (so the client reads the 413 rather than a reset); a
body under the limit reaches the app unchanged. ``lexgpt serve`` runs MLflow's scoring app through it
(:mod:`lexgpt.serving.scoring_app`), ``lexgpt serve --openai`` its own (:mod:`lexgpt.serving.openai_api`).

>>> import asyncio
>>> async def echo_size(scope, receive, send):
...     body = (await receive())["body"]
...     await send({"type": "http.response.start", "status": 200, "headers": []})
...     await send({"type": "http.response.body", "body": str(len(body)).encode()})
>>> def call(app, body):
...     sent, parts = [], [{"type": "http.request", "body": body, "more_body": False}]
...     async def receive(): return parts.pop(0)
...     async def send(message): sent.append(message)
...     asyncio.run(app({"type": "http", "headers": []}, receive, send))
...     return sent[0]["status"], sent[1]["body"][:40]
>>> call(BodyLimit(echo_size, limit=10), b"0123456789")
(200, b'10')
>>> call(BodyLimit(echo_size, limit=10), b"0123456789!")
(413, b'{"error": {"message": "the request body ')
"""

from __future__ import annotations

import json
from typing import Any

from lexgpt.generation.generation_params import MAX_PROMPT_CHARS

MAX_BODY_BYTES = 1 << 20  # ~50 prompts of MAX_PROMPT_CHARS
# How much of a refused body is read and dropped before the 413. Clients without
# ``Expect: 100-continue`` (urllib, requests, httpx) send the whole body before reading the
# answer; a server that closes with their bytes unread makes the kernel reset the connection,
# and the client sees "connection reset" instead of the 413. Past this bound, it does.
DRAIN_BYTES = 16 * MAX_BODY_BYTES


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with HTTP 413."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES, drain: int = DRAIN_BYTES) -> None:
        self.app, self.limit, self.drain = app, limit, drain

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            if declared.isdigit() and int(declared) <= self.drain:
                await self._drain(receive, 0)
            await self._refuse(send)
            return
        chunks, size = [], 0
        while True:  # read it all first (it is bounded), so the app never sees a cut body
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                if message.get("more_body", False):
                    await self._drain(receive, size)
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return whole
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _drain(self, receive: Any, seen: int) -> None:
        """Read and drop the rest of a refused body, up to ``self.drain`` bytes in all."""
        while seen <= self.drain:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"error": {
            "message": f"the request body is over {self.limit:,} bytes; send less (a prompt may have at "
                       f"most {MAX_PROMPT_CHARS:,} characters)", "type": "invalid_request_error", "param": None, "code": None,
        }}).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
