"""Sampling from a GPT, streaming token by token, with a KV cache.

The context window. Learned absolute position embeddings mean a cached key belongs to
one position: once the window is full, dropping the oldest token shifts every position
and invalidates the whole cache. Recomputing the full window for every new token would
make the cache useless past ``block_size``, so the window *slides in hops*: when it would
exceed ``block_size`` tokens it restarts from the last ``keep`` tokens (default 3/4 of
``block_size``), which are re-encoded in one batched forward; the next
``block_size - keep`` tokens are then cheap cached steps. The model therefore always
sees between ``keep`` and ``block_size`` tokens of context. ``use_cache=False`` follows
the same window policy with a full forward per token, so both paths produce the same
tokens (the tests check this). ``keep=block_size - 1`` gives the classic "last
block_size tokens" crop, at the price of one full forward per token once it is full.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.nn import functional as F

from lexgpt.model import GPT


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
            if len(tokens) - start > block_size:
                start, cached = len(tokens) - keep, 0
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


def qa_prompt(question: str) -> str:
    """The original notebook's framing: a podcast preamble, the question, the start of an answer."""
    return (
        "The following is a conversation with a researcher and author on the Lex Fridman "
        "podcast. We talk about science, technology, and the nature of intelligence. "
        f"{question.strip()} "
        "That's such an interesting question. I think that "
    )
