"""The GPT: a decoder-only transformer with a modern block, laid out like Qwen3.

Each block is pre-norm: ``x + attn(rmsnorm(x))`` then ``x + mlp(rmsnorm(x))``.
- Attention: no biases, rotary position embeddings (RoPE) on queries and keys, and an
  RMSNorm over each head's queries and keys before RoPE (QK-norm keeps attention logits
  bounded, which lets a small model train at a high learning rate).
- MLP: SwiGLU, ``down(silu(gate(x)) * up(x))``.
- The output projections of both branches start at zero, so every block starts as the
  identity and the residual stream is the embedding; training grows each branch in.
- A final RMSNorm and an output head (tied to the token embedding or not, per config).

The parameter names and maths are those of Hugging Face's ``Qwen3ForCausalLM``, so
``lexgpt.modeling.export`` can hand the weights to ``transformers`` as they are.

RoPE encodes position by rotating queries and keys, so attention scores depend only on the
distance between two tokens. There is no learned position table (the cos/sin values are cached
for ``block_size`` positions only for speed): a KV cache entry stays valid when
older entries are dropped, and a window can roll past ``block_size`` (see
``lexgpt.generation.generate``).

``forward`` takes an optional KV cache: anything with
``update(layer, k, v, start_pos) -> (k_all, v_all)``. With a cache the ``T`` new tokens sit
at positions ``start_pos .. start_pos+T-1``; they attend to every cached key and causally
among themselves.

>>> cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
>>> logits, loss = GPT(cfg)(torch.zeros(3, 8, dtype=torch.long), torch.zeros(3, 8, dtype=torch.long))
>>> tuple(logits.shape), round(loss.item(), 2) == round(math.log(50), 2)  # zero-init head: uniform
((3, 8, 50), True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

# Sizes chosen by measurement (BENCHMARKS.md, "Model quality"). The CPU preset is what a
# 2-core box trains well in 8 minutes; the GPU preset is for one GPU and ~10 minutes.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu-small": dict(block_size=128, n_layer=4, n_head=3, n_embd=192),
    "gpu-small": dict(block_size=512, n_layer=8, n_head=8, n_embd=512, dropout=0.1),
    # A tiny model for tests and smoke runs (seconds, not minutes).
    "test-tiny": dict(block_size=64, n_layer=2, n_head=2, n_embd=64),
}
# Old names still found in run configs and MLflow params.
PRESET_ALIASES = {"cpu-tiny": "cpu-small"}

# Limits on what a config.json may ask for (a hostile or corrupt file must not allocate
# terabytes): checked in GPTConfig.__post_init__.
MAX_VOCAB = 65_536  # the shards are uint16
MAX_BLOCK = 1 << 16
MAX_WIDTH = 1 << 15
MAX_LAYERS = 256
# Each size alone may be fine while their product is not (n_layer 64 x n_embd 8192 is 52B
# parameters). 2B is ~20x gpu-small even at the largest vocab (~93M) and still trains on
# one 80 GB GPU (weights, grads and AdamW state: 16 bytes a parameter, 32 GB); the cached RoPE
# tables (2 x block_size x head_dim) count towards it, as they are allocated too.
MAX_PARAMS = 2_000_000_000


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int  # the context the model is trained on
    n_layer: int
    n_head: int
    n_embd: int
    mlp_hidden: int = 0  # SwiGLU width; 0 = 8/3 * n_embd rounded up to a multiple of 64
    dropout: float = 0.0
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        limits = dict(vocab_size=MAX_VOCAB, block_size=MAX_BLOCK, n_layer=MAX_LAYERS,
                      n_head=MAX_WIDTH, n_embd=MAX_WIDTH, mlp_hidden=4 * MAX_WIDTH)  # fmt: skip
        for name, upper in limits.items():
            value = getattr(self, name)
            low = 0 if name == "mlp_hidden" else 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= upper:
                raise ValueError(f"model config {name}={value!r}: expected an integer in [{low}, {upper}]")
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"n_embd={self.n_embd} must split into n_head={self.n_head} heads of even size (RoPE)"
            )
        self._check_number("dropout", "0 <= dropout < 1", lambda v: 0.0 <= v < 1.0)
        self._check_number("rope_theta", "a finite number > 0", lambda v: 0.0 < v < math.inf)
        self._check_number("norm_eps", "a finite number > 0", lambda v: 0.0 < v < math.inf)
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"model config tie_embeddings={self.tie_embeddings!r}: expected true or false")
        if not self.mlp_hidden:
            self.mlp_hidden = 64 * math.ceil(8 * self.n_embd / 3 / 64)
        if self.allocated_numbers() > MAX_PARAMS:
            raise ValueError(
                f"model config n_layer={self.n_layer}, n_embd={self.n_embd}, mlp_hidden={self.mlp_hidden}, "
                f"vocab_size={self.vocab_size}, block_size={self.block_size}: {self.allocated_numbers():,} "
                f"parameters and RoPE table entries, over the limit of {MAX_PARAMS:,}"
            )

    def _check_number(self, name: str, expected: str, ok: Any) -> None:
        """Refuse a field that is not a real number (bools and strings too) or fails ``ok`` (NaN does)."""
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(float(value)):
            raise ValueError(f"model config {name}={value!r}: expected {expected}")

    def num_params(self) -> int:
        """The model's parameter count (as ``GPT(config).num_params()``), without building it.

        >>> GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8, mlp_hidden=16).num_params()
        840
        """
        E, hd = self.n_embd, self.head_dim
        per_layer = 4 * E * E + 3 * E * self.mlp_hidden + 2 * E + 2 * hd  # attn, mlp, 2 norms, q/k norms
        embeddings = self.vocab_size * E * (1 if self.tie_embeddings else 2)
        return embeddings + self.n_layer * per_layer + E  # + the final norm

    def allocated_numbers(self) -> int:
        """Parameters plus the cached RoPE cos/sin tables: what building the model allocates."""
        return self.num_params() + 2 * self.block_size * self.head_dim

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from a dict (e.g. ``config.json``); unknown keys are an error, not ignored."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"model config has unknown fields {unknown}; expected {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str, vocab_size: int, **overrides: Any) -> GPTConfig:
        name = PRESET_ALIASES.get(name, name)
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(vocab_size=vocab_size, **{**PRESETS[name], **overrides})


class RMSNorm(nn.Module):
    """``x / rms(x) * weight``, computed in float32 (as Qwen3's)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.size(-1),), self.weight.float(), self.eps).type_as(x)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (T, head_dim) for integer ``positions`` (T,), in the "rotate half" layout."""
    # Angles in float64: at position 10^4 a float32 angle is already off by ~1e-3 radians.
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    freqs = positions.double()[:, None] * inv_freq[None, :]  # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
    return emb.cos().float(), emb.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (i, i + hd/2) pair of ``x`` (B, nh, T, hd) by its position's angle."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos + rotated * sin).type_as(x)


# Up to this context, CPU training writes attention out (causal_attention) instead of calling
# SDPA: the (T, T) scores are small there, and compiled they ran 1.2-1.3x faster per step.
EXPLICIT_ATTENTION_MAX_T = 512


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
    """``softmax(q k^T / sqrt(hd), future masked) v`` for q, k, v (B, nh, T, hd), written out.

    The same maths as ``F.scaled_dot_product_attention(q, k, v, is_causal=True)``. On CPU,
    under ``torch.compile`` at T=256, hd=64, a training step with this ran 1.2-1.3x faster
    than with SDPA's CPU flash kernel, whose backward dominated (BENCHMARKS.md).
    """
    T = q.size(-2)
    scores = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5  # (B, nh, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)  # key j > query i
    # The softmax in float32 at least (bf16 under autocast), float64 for a float64 model.
    softmax_dtype = torch.promote_types(scores.dtype, torch.float32)
    probs = F.softmax(scores.masked_fill(future, float("-inf")), dim=-1, dtype=softmax_dtype).type_as(q)
    if dropout:
        probs = F.dropout(probs, dropout)
    return probs @ v  # (B, nh, T, hd)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.dropout = config.dropout
        self.q_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.o_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.q_norm = RMSNorm(config.head_dim, config.norm_eps)
        self.k_norm = RMSNorm(config.head_dim, config.norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], kv_cache: Any = None,
                start_pos: int = 0) -> torch.Tensor:
        B, T, C = x.size()
        shape = (B, T, self.n_head, self.head_dim)
        q = self.q_norm(self.q_proj(x).view(shape)).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_norm(self.k_proj(x).view(shape)).transpose(1, 2)  # (B, nh, T, hd)
        v = self.v_proj(x).view(shape).transpose(1, 2)  # (B, nh, T, hd)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)

        mask, is_causal = None, True
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v, start_pos)  # (B, nh, S, hd), S = cached + T
            S = k.size(2)
            if S > T:
                # Queries are the last T of S keys: query i may see keys 0 .. S-T+i.
                # A single query sees everything, so it needs no mask at all.
                is_causal = False
                if T > 1:
                    mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
        # The softmax runs over keys (the last dim), so no future token leaks into a query.
        dropout = self.dropout if self.training else 0.0
        if kv_cache is None and x.device.type == "cpu" and T <= EXPLICIT_ATTENTION_MAX_T:
            y = causal_attention(q, k, v, dropout)  # (B, nh, T, hd)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                               dropout_p=dropout)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.down_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = CausalSelfAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], kv_cache: Any = None,
                start_pos: int = 0) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), rope, kv_cache, start_pos))
        x = x + self.dropout(self.mlp(self.post_attention_layernorm(x)))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        # cos/sin for positions 0 .. block_size-1, computed once: inside a compiled step the
        # float64 angles were recomputed per element and took a quarter of a CPU step.
        # Not saved with the weights (persistent=False): they follow from the config.
        cos, sin = rope_cos_sin(torch.arange(config.block_size), config.head_dim, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, hd)
        self.register_buffer("rope_sin", sin, persistent=False)  # (block_size, hd)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialisation (nanochat / modded-nanogpt practice).

        Input matrices: uniform with std 1/sqrt(fan_in), so activations keep unit scale.
        Output projections (o_proj, down_proj): zero, so each block starts as the identity.
        Untied embedding: std 1 (every block normalises its input anyway); untied head:
        zero, so the first loss is exactly ln(vocab_size). Tied: std 1/sqrt(n_embd), which
        keeps the first logits near zero.
        """
        cfg = self.config
        for block in self.layers:
            for lin in (block.self_attn.q_proj, block.self_attn.k_proj, block.self_attn.v_proj,
                        block.mlp.gate_proj, block.mlp.up_proj):  # fmt: skip
                bound = math.sqrt(3.0 / lin.in_features)
                nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(block.self_attn.o_proj.weight)
            nn.init.zeros_(block.mlp.down_proj.weight)
        if cfg.tie_embeddings:
            nn.init.normal_(self.embed_tokens.weight, std=cfg.n_embd**-0.5)
        else:
            nn.init.normal_(self.embed_tokens.weight, std=1.0)
            nn.init.zeros_(self.lm_head.weight)

    def num_params(self) -> int:
        """Parameter count (a tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: Any = None,
        start_pos: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) for token ids ``idx`` (B, T); loss if ``targets`` (-1 = ignore)."""
        B, T = idx.size()
        if kv_cache is None and T > self.config.block_size:
            raise ValueError(f"{T} tokens exceed block_size={self.config.block_size}")
        if start_pos + T <= self.rope_cos.size(0):
            rope = self.rope_cos[start_pos : start_pos + T], self.rope_sin[start_pos : start_pos + T]  # 2 x (T, hd)
        else:  # a KV cache past block_size (lexgpt.generation.generate rolls its window)
            positions = torch.arange(start_pos, start_pos + T, device=idx.device)  # (T,)
            rope = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta)  # 2 x (T, hd)
        x = self.embed_tokens(idx)  # (B, T, C)
        for block in self.layers:
            x = block(x, rope, kv_cache, start_pos)
        x = self.norm(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab)

        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    def estimate_flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 L H Q T.

        N counts the matmul weights only (embedding lookups are free; the head is a matmul).
        """
        cfg = self.config
        n_matmul = self.num_params() - (0 if cfg.tie_embeddings else self.embed_tokens.weight.numel())
        T = seq_len or cfg.block_size
        return 6 * n_matmul + 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * T
