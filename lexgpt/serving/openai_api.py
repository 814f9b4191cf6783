"""An OpenAI-compatible HTTP API over the one generation path, so any OpenAI client (the
official ``openai`` package, chat UIs, LangChain) can talk to a registered model:
``POST /v1/chat/completions`` and ``POST /v1/completions``, both with streaming
(server-sent events), and ``GET /v1/models``. ``lexgpt serve --openai`` runs it on
127.0.0.1::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:5001/v1", api_key="not-needed")
    reply = client.chat.completions.create(model="lexgpt", max_tokens=60,
        messages=[{"role": "user", "content": "Is there free will?"}])

A chat answers the last user message in the podcast's voice (the QA framing of
``lexgpt chat``); its seed combines the request's seed, the question and the number of
earlier answers, as in ``lexgpt chat``, so a follow-up never replays an earlier answer's
draws. ``/v1/completions`` continues the raw prompt. Parameters: ``max_tokens`` (or
``max_completion_tokens``), ``temperature``, ``top_p``, ``seed``, ``stream``,
``stream_options.include_usage``, ``n`` (1 only), ``top_k`` (an extension); their defaults
and bounds are :class:`lexgpt.generation.generation_params.GenerationParams`'. Anything else is
refused with HTTP 400 naming it, never silently ignored.

Why not an existing server: ``transformers serve`` (on the exported folder) samples
through ``transformers``' own ``generate``, a second generation path with other defaults
and bounds, answers unknown fields with 422 and accepts OpenAI fields it ignores (``n``,
``presence_penalty``); MLflow's scoring server has no OpenAI routes. So the HTTP layer is
FastAPI and uvicorn (already installed with MLflow) and the text comes from
:func:`lexgpt.generation.generate.stream_text`, like every other command.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route handlers'
# annotations at runtime (``request: Request`` would become an unresolvable string).
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from lexgpt.generation.generate import prompt_ids, stream_text
from lexgpt.generation.generation_params import GenerationParamError, GenerationParams, check_prompt, seed_for
from lexgpt.serving.body_limit import BodyLimit

MAX_MESSAGES = 256
COMMON = {"model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stream", "stream_options", "n"}
CHAT_FIELDS = COMMON | {"messages", "max_completion_tokens"}
COMPLETION_FIELDS = COMMON | {"prompt"}


class ApiError(Exception):
    """A request the API refuses: HTTP status, OpenAI error type and the parameter at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}}


def generation_params(body: dict[str, Any], allowed: set[str], *, qa: bool, seed_text: str,
                      turn: int = 0) -> GenerationParams:
    """The request's sampling params, checked: unknown fields and out-of-range values raise
    ``ApiError(400)``. ``seed_text`` and ``turn`` vary the seed per question and answer."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unsupported parameter(s): {', '.join(unknown)}; this server takes "
                            f"{', '.join(sorted(allowed))}", param=unknown[0])
    if body.get("n", 1) != 1:
        raise ApiError(400, f"n must be 1 (one completion per request), got {body['n']!r}", param="n")
    if not isinstance(body.get("stream", False), bool):
        raise ApiError(400, f"stream must be true or false, got {body['stream']!r}", param="stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}):
        raise ApiError(400, "stream_options takes only include_usage", param="stream_options")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    raw = {"max_new_tokens": limit, "temperature": body.get("temperature"), "top_p": body.get("top_p"),
           "top_k": body.get("top_k"), "seed": body.get("seed"), "qa": qa}  # fmt: skip
    try:
        params = GenerationParams.from_mapping(raw)
    except GenerationParamError as err:
        name = str(err).split()[0]
        name = {"max_new_tokens": "max_tokens"}.get(name, name)
        raise ApiError(400, str(err).replace("max_new_tokens", "max_tokens"), param=name) from None
    seed = seed_for(params.seed + turn, seed_text) if params.seed is not None else None
    return GenerationParams(**{**params.to_dict(), "seed": seed})


def chat_question(body: dict[str, Any]) -> tuple[str, int]:
    """(the last user message, how many answers came before it) from ``messages``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise ApiError(400, f"messages must be a list of 1 to {MAX_MESSAGES} messages", param="messages")
    for i, message in enumerate(messages):
        if (not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant")
                or not isinstance(message.get("content"), str) or set(message) - {"role", "content", "name"}):
            raise ApiError(400, f"messages[{i}] must be {{role: system|user|assistant, content: text}}",
                           param="messages")  # fmt: skip
    if messages[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's question", param="messages")
    return messages[-1]["content"], sum(m["role"] == "assistant" for m in messages)


def completion_prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string (or a list of one string)", param="prompt")
    return prompt


class Engine:
    """The model behind the API: one generation at a time (the CPU has no room for two),
    each within ``time_limit_s``."""

    def __init__(self, model, tokenizer, model_id: str, time_limit_s: float = 120.0) -> None:
        self.model, self.tokenizer, self.model_id, self.time_limit_s = model, tokenizer, model_id, time_limit_s
        self.lock = threading.Lock()

    def check_model(self, body: dict[str, Any]) -> None:
        name = body.get("model")
        if name not in (self.model_id, "lexgpt"):
            raise ApiError(404, f"model {name!r} is not served here; use {self.model_id!r}", param="model",
                           kind="model_not_found")

    def pieces(self, prompt: str, params: GenerationParams, outcome: dict[str, str]) -> Iterator[str]:
        """The text pieces; ``outcome["finish_reason"]`` is set once they end."""
        with self.lock:
            pieces = stream_text(self.model, self.tokenizer, prompt, params, time_limit_s=self.time_limit_s)
            while True:
                try:
                    yield next(pieces)
                except StopIteration as end:
                    outcome["finish_reason"] = end.value or "stop"
                    return

    def usage(self, prompt: str, params: GenerationParams, text: str) -> dict[str, int]:
        """Token counts (the completion's by encoding its text again)."""
        prompt_tokens, completion_tokens = len(prompt_ids(self.tokenizer, prompt, params)), len(self.tokenizer.encode(text))
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


def answer(engine: Engine, body: dict[str, Any], *, chat: bool) -> dict[str, Any] | Iterator[str]:
    """A whole response object, or (``stream``) the server-sent event lines of one."""
    engine.check_model(body)
    if chat:
        prompt, turn = chat_question(body)
        params = generation_params(body, CHAT_FIELDS, qa=True, seed_text=prompt, turn=turn)
    else:
        prompt = completion_prompt(body)
        params = generation_params(body, COMPLETION_FIELDS, qa=False, seed_text=prompt)
    try:
        check_prompt(prompt)
    except GenerationParamError as err:
        raise ApiError(400, str(err), param="messages" if chat else "prompt") from None
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time()),
            "model": engine.model_id}
    if body.get("stream"):
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return _events(engine, prompt, params, head, chat=chat, usage=usage)
    outcome: dict[str, str] = {}
    text = "".join(engine.pieces(prompt, params, outcome))
    reason = outcome.get("finish_reason", "stop")
    choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason,
               "logprobs": None} if chat else
              {"index": 0, "text": text, "finish_reason": reason, "logprobs": None})  # fmt: skip
    return {**head, "object": "chat.completion" if chat else "text_completion", "choices": [choice],
            "usage": engine.usage(prompt, params, text)}


def _events(engine: Engine, prompt: str, params: GenerationParams, head: dict[str, Any], *, chat: bool,
            usage: bool) -> Iterator[str]:
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        return f"data: {json.dumps({**head, 'object': kind, 'choices': choices, **extra})}\n\n"

    def choice(piece: str | None, reason: str | None = None, role: bool = False) -> dict[str, Any]:
        if chat:
            delta = ({"role": "assistant", "content": ""} if role else
                     {} if piece is None else {"content": piece})  # fmt: skip
            return {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        return {"index": 0, "text": piece or "", "finish_reason": reason, "logprobs": None}

    if chat:
        yield event([choice(None, role=True)])
    outcome: dict[str, str] = {}
    text = []
    for piece in engine.pieces(prompt, params, outcome):
        text.append(piece)
        yield event([choice(piece)])
    yield event([choice(None, outcome.get("finish_reason", "stop"))])
    if usage:
        yield event([], usage=engine.usage(prompt, params, "".join(text)))
    yield "data: [DONE]\n\n"


def build_app(engine: Engine):
    """The ASGI application: FastAPI routes with OpenAI-style errors, behind a body bound."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="lexgpt (OpenAI-compatible)", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def refused(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    async def read_json(request: Request) -> dict[str, Any]:
        raw = await request.body()  # bounded: BodyLimit below has read it already
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    def respond(result: dict[str, Any] | Iterator[str]):
        if isinstance(result, dict):
            return JSONResponse(result)
        return StreamingResponse(result, media_type="text/event-stream")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": engine.model_id, "object": "model", "created": 0,
                                            "owned_by": "lexgpt"}]}  # fmt: skip

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await read_json(request)
        return respond(await _in_thread(answer, engine, body, chat=True))

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_json(request)
        return respond(await _in_thread(answer, engine, body, chat=False))

    return BodyLimit(app)


async def _in_thread(fn, *args: Any, **kwargs: Any) -> Any:
    """Run blocking generation off the event loop (a stream's pieces are pulled there too)."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)


def serve(engine: Engine, port: int) -> None:
    """Serve on 127.0.0.1:``port`` until Ctrl-C."""
    import uvicorn

    uvicorn.run(build_app(engine), host="127.0.0.1", port=port, log_level="warning")
