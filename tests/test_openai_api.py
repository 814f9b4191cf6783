"""``lexgpt serve --openai``: the official ``openai`` client talks to our model, streaming
included, and what the API cannot honour is refused with a 400 naming it."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import torch

from lexgpt.generation.generate import complete, qa_prompt
from lexgpt.generation.generation_params import GenerationParams, seed_for
from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.serving import openai_api
from lexgpt.tokenizer.bpe import BPETokenizer

openai = pytest.importorskip("openai")
MODEL_ID = "models:/lexgpt@champion"


@pytest.fixture(scope="module")
def served():
    import uvicorn

    tok = BPETokenizer.train(["I think that love is the answer. Is there free will? Maybe."] * 20, 290)
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():  # zero-initialised projections would make every logit equal
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = openai_api.Engine(model, tok, MODEL_ID, time_limit_s=30)
    server = uvicorn.Server(uvicorn.Config(openai_api.build_app(engine), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)
    yield client, model, tok, port
    server.should_exit = True
    thread.join(10)


def test_chat_answers_in_the_podcast_voice_through_the_one_generation_path(served):
    client, model, tok, _ = served
    question = "Is there free will?"
    reply = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": question}],
                                           max_tokens=12, seed=3, temperature=0.8)
    choice = reply.choices[0]
    expected = complete(model, tok, question, GenerationParams(max_new_tokens=12, seed=seed_for(3, question),
                                                               qa=True))  # fmt: skip
    assert choice.message.role == "assistant" and choice.message.content == expected
    assert choice.finish_reason in ("stop", "length") and reply.model == MODEL_ID
    assert reply.usage.prompt_tokens == len(tok.encode(qa_prompt(question)))


def test_streaming_yields_the_same_text_in_pieces(served):
    client, *_ = served
    messages = [{"role": "user", "content": "What is love?"}]
    whole = client.chat.completions.create(model="lexgpt", messages=messages, max_tokens=10, seed=1)
    stream = client.chat.completions.create(model="lexgpt", messages=messages, max_tokens=10, seed=1,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and len([c for c in chunks if c.choices]) >= 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_a_follow_up_never_replays_an_earlier_answer(served):
    client, *_ = served
    first = [{"role": "user", "content": "Tell me more."}]
    one = client.chat.completions.create(model="lexgpt", messages=first, max_tokens=12, seed=0)
    later = first + [{"role": "assistant", "content": one.choices[0].message.content},
                     {"role": "user", "content": "Tell me more."}]
    two = client.chat.completions.create(model="lexgpt", messages=later, max_tokens=12, seed=0)
    assert one.choices[0].message.content != two.choices[0].message.content


def test_completions_continue_the_raw_prompt_streamed_or_not(served):
    client, model, tok, _ = served
    whole = client.completions.create(model="lexgpt", prompt="I think", max_tokens=8, seed=5)
    expected = complete(model, tok, "I think", GenerationParams(max_new_tokens=8, seed=seed_for(5, "I think")))
    assert whole.choices[0].text == expected and whole.choices[0].finish_reason in ("stop", "length")
    pieces = client.completions.create(model="lexgpt", prompt="I think", max_tokens=8, seed=5, stream=True)
    assert "".join(c.choices[0].text for c in pieces) == expected
    assert [m.id for m in client.models.list()] == [MODEL_ID]


@pytest.mark.parametrize("extra, param, says", [
    (dict(extra_body={"frequency_penalty": 0.5}), "frequency_penalty", "unsupported parameter(s): frequency_penalty"),
    (dict(presence_penalty=1.0), "presence_penalty", "unsupported parameter(s): presence_penalty"),
    (dict(n=2), "n", "n must be 1"),
    (dict(max_tokens=10**9), "max_tokens", "max_tokens must be a whole number from 0 to 1024"),
    (dict(temperature=-1), "temperature", "temperature must be 0 (greedy) or a finite number"),
    (dict(top_p=0), "top_p", "top_p must be from 1e-06 to 1"),
])  # fmt: skip
def test_what_cannot_be_honoured_is_a_400_naming_it(served, extra, param, says):
    client, *_ = served
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="lexgpt", messages=[{"role": "user", "content": "Hi"}], **extra)
    assert refused.value.status_code == 400
    error = refused.value.body
    assert says in error["message"] and error["param"] == param, error


def test_bad_requests_are_refused_in_one_line_without_generating(served):
    client, *_ = served
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.BadRequestError, match="last message must be the user's"):
        client.chat.completions.create(model="lexgpt", messages=[{"role": "assistant", "content": "Hi"}])
    with pytest.raises(openai.BadRequestError, match="limit is 20,000"):
        client.completions.create(model="lexgpt", prompt="x" * 20_001, max_tokens=1)


def test_the_body_is_bounded_and_must_be_a_json_object(served):
    import http.client

    *_, port = served
    for body, status in ((b"[1, 2]", 400), (b"{not json", 400), (b"{" + b" " * (2 << 20) + b"}", 413)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == status, (body[:20], response.status)
        assert "message" in json.loads(response.read())["error"]
        conn.close()
