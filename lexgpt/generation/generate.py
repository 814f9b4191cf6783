"""Text generation: one path from a prompt to streamed text, with one set of defaults.

Everything that generates text (``lexgpt generate`` / ``chat`` / ``compare``, the MLflow
pyfunc behind ``lexgpt serve``, the ``evaluation_samples`` asset) calls :func:`stream_text`
(or :func:`complete`) with a :class:`GenerationParams`. The params are validated in one
place, :meth:`GenerationParams.from_mapping`, so every entry point refuses the same bad
values with the same one-line message:

>>> GenerationParams().max_new_tokens, GenerationParams().temperature
(200, 0.8)
>>> GenerationParams.from_mapping({"temperature": "0", "top_k": 1}).temperature
0.0
>>> GenerationParams.from_mapping({"max_new_tokens": 1e30})
Traceback (most recent call last):
...
lexgpt.generation.generation_params.GenerationParamError: max_new_tokens must be a whole number from 0 to 1024 (the ceiling is LEXGPT_MAX_NEW_TOKENS), got 1e+30

Underneath, :func:`generate` yields token ids from a GPT with a KV cache.

The context window. Positions count from the window's start and stay below
``block_size`` (the positions the model trained on, and what its RoPE tables hold): a
cached key was rotated for its position, so once the window is full, dropping the oldest
token would shift every position and invalidate the whole cache. Recomputing the full
window for every new token would make the cache useless past ``block_size``, so the window
*slides in hops*: when it would exceed ``block_size`` tokens it restarts from the last
``keep`` tokens (default 3/4 of ``block_size``), which are re-encoded in one batched
forward; the next ``block_size - keep`` tokens are then cheap cached steps. So every
generated token past the first window sees at least ``keep`` tokens before it (the val
score, ``lexgpt.evaluation.loss_eval``, likewise gives every target at least half a
window). The whole policy lives in :func:`_slide`; since RoPE scores depend only on
distance, a rolling cache could replace it there. ``use_cache=False`` follows the same
window policy with a full forward per token, so both paths produce the same tokens (the
tests check this).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Generator, Iterator

import torch
from torch.nn import functional as F

from lexgpt.generation.generation_params import GenerationParamError, GenerationParams, check_prompt, seed_for
from lexgpt.modeling.model import GPT

__all__ = ["GenerationParamError", "GenerationParams", "check_prompt", "complete", "generate",
           "qa_prompt", "seed_for", "stream_text"]

# Batch-1 sampling on CPU is ~100 tiny ops per token: a second thread only adds
# synchronisation, and costs ~1 ms per op whenever the other core is busy. Measured in
# BENCHMARKS.md ("Generation threads"); LEXGPT_GENERATE_THREADS overrides it.
GENERATE_THREADS_ENV = "LEXGPT_GENERATE_THREADS"
DEFAULT_GENERATE_THREADS = 1


class KVCache:
    """Keys and values of every layer for one sequence window, preallocated.

    ``update`` writes the new keys/values at ``start_pos`` and returns all of them up to
    the end of what was written, which is what attention at those positions may see.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len

    @classmethod
    def for_model(cls, model: GPT, batch_size: int = 1) -> KVCache:
        cfg = model.config
        p = next(model.parameters())
        return cls(
            cfg.n_layer,
            batch_size,
            cfg.n_head,
            cfg.block_size,
            cfg.n_embd // cfg.n_head,
            device=p.device,
            dtype=p.dtype,
        )

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, start_pos: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = start_pos + k.size(2)  # k, v: (B, nh, T, hs)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, asked for {end}")
        self.k[layer, :, :, start_pos:end] = k
        self.v[layer, :, :, start_pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, nh, end, hs)


def _filter_logits(
    logits: torch.Tensor, top_k: int | None, top_p: float | None
) -> torch.Tensor:
    """Mask (to -inf) every token outside the top-k and outside the top-p nucleus."""
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the most
        # likely token is therefore always kept.
        drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """One token id from logits (vocab,); temperature 0 is greedy."""
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = _filter_logits(logits.float() / temperature, top_k, top_p)
    probs = F.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _slide(length: int, start: int, block_size: int, keep: int) -> int:
    """The window's new start once ``length`` tokens exist and it began at ``start``.

    Unchanged while ``tokens[start:]`` fits ``block_size``; otherwise the last ``keep``
    tokens (which the caller re-encodes: their cached keys were rotated for old positions).

    >>> _slide(10, 0, 16, 12), _slide(17, 0, 16, 12)
    (0, 5)
    """
    return start if length - start <= block_size else length - keep


def generate(
    model: GPT,
    prompt_ids: list[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    keep: int | None = None,
) -> Iterator[int]:
    """Yield up to ``max_new_tokens`` new token ids as they are sampled.

    Stops early at ``eos_id`` (not yielded). ``seed`` makes sampling reproducible without
    touching the global RNG. ``keep``: tokens kept when the window slides (module doc).
    """
    if not prompt_ids:
        raise ValueError("generate needs at least one prompt token (e.g. <|endoftext|>)")
    block_size = model.config.block_size
    keep = keep if keep is not None else max(1, block_size * 3 // 4)
    if not 0 < keep < block_size:
        raise ValueError(f"keep must be in [1, block_size - 1], got {keep}")
    device = next(model.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)

    tokens = list(prompt_ids)
    start = 0  # the window is tokens[start:]
    cached = 0  # how many tokens of the window the cache holds
    with torch.inference_mode():  # inference tensors: less per-op bookkeeping than no_grad
        cache = KVCache.for_model(model) if use_cache else None
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            new_start = _slide(len(tokens), start, block_size, keep)
            if new_start != start:
                start, cached = new_start, 0
            with torch.inference_mode():
                if cache is not None:
                    new = torch.tensor([tokens[start + cached :]], dtype=torch.long, device=device)
                    logits, _ = model(new, kv_cache=cache, start_pos=cached)
                    cached = len(tokens) - start
                else:
                    window = torch.tensor([tokens[start:]], dtype=torch.long, device=device)
                    logits, _ = model(window)
                next_id = sample_next(
                    logits[0, -1],
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    generator=generator,
                )
            if eos_id is not None and next_id == eos_id:
                return
            tokens.append(next_id)
            yield next_id
    finally:
        model.train(was_training)


@contextlib.contextmanager
def generation_threads(model: GPT) -> Iterator[int]:
    """Run batch-1 CPU sampling on the thread count that is fastest for it (module
    constant, ``LEXGPT_GENERATE_THREADS`` overrides); restores torch's setting after."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        yield torch.get_num_threads()
        return
    raw = os.environ.get(GENERATE_THREADS_ENV, "").strip()
    wanted = int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_GENERATE_THREADS
    before = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)


def prompt_ids(tokenizer, prompt: str, params: GenerationParams) -> list[int]:
    """The token ids sampling starts from: the (QA-framed) prompt, or ``<|endoftext|>``
    alone for an empty prompt. Prompts over ``MAX_PROMPT_CHARS`` are refused."""
    check_prompt(prompt)
    text = qa_prompt(prompt) if params.qa else prompt
    return list(tokenizer.encode(text)) or [tokenizer.eot_id]


def stream_text(
    model: GPT,
    tokenizer,
    prompt: str,
    params: GenerationParams | None = None,
    *,
    time_limit_s: float | None = None,
) -> Generator[str, None, str]:
    """Yield the continuation of ``prompt`` (not the prompt itself) as text pieces, as
    soon as they decode to whole characters. Stops at ``<|endoftext|>``, after
    ``params.max_new_tokens`` tokens, or once ``time_limit_s`` has passed (a server sets
    it so an abandoned request stops using the CPU). ``params`` default to
    :class:`GenerationParams`' defaults, built at the call (they read
    ``LEXGPT_MAX_NEW_TOKENS``, which must not fail the import). ``params.seed`` seeds the
    sampler as is: callers that sample per prompt pass :func:`seed_for` of it.

    The generator's return value says why it stopped, as OpenAI's ``finish_reason``:
    ``"stop"`` at ``<|endoftext|>``, ``"length"`` at the token or time limit."""
    params = params if params is not None else GenerationParams()
    ids = prompt_ids(tokenizer, prompt, params)
    if params.max_new_tokens == 0 or (time_limit_s is not None and time_limit_s <= 0):
        return "length"
    deadline = time.monotonic() + time_limit_s if time_limit_s is not None else None
    pending: list[int] = []
    count, reason = 0, "stop"
    with generation_threads(model):
        tokens = generate(
            model, ids, params.max_new_tokens, temperature=params.temperature,
            top_k=params.top_k or None, top_p=params.top_p if params.top_p < 1 else None,
            eos_id=tokenizer.eot_id, seed=params.seed,
        )  # fmt: skip
        for token in tokens:
            count += 1
            pending.append(token)
            text = tokenizer.decode(pending)
            # A token can end inside a multi-byte character: wait for the rest (at most
            # 4 tokens, the longest UTF-8 sequence, in case the model never finishes it).
            if "\ufffd" not in text or len(pending) >= 4:
                yield text
                pending.clear()
            if deadline is not None and time.monotonic() > deadline:
                reason = "length"
                break
        tokens.close()
    if pending:
        yield tokenizer.decode(pending)
    return "length" if count >= params.max_new_tokens else reason


def complete(model: GPT, tokenizer, prompt: str, params: GenerationParams | None = None,
             *, time_limit_s: float | None = None) -> str:
    """The whole continuation of ``prompt`` as one string (see :func:`stream_text`)."""
    return "".join(stream_text(model, tokenizer, prompt, params, time_limit_s=time_limit_s))


def qa_prompt(question: str) -> str:
    """The original notebook's framing: a podcast preamble, the question, the start of an answer."""
    return (
        "The following is a conversation with a researcher and author on the Lex Fridman "
        "podcast. We talk about science, technology, and the nature of intelligence. "
        f"{question.strip()} "
        "That's such an interesting question. I think that "
    )
