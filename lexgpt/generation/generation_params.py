"""Generation parameters: one set of defaults, validated in one place (no torch here, so
the ``lexgpt`` command can show them in ``--help`` without loading it).

>>> GenerationParams(temperature=0).top_k
50
>>> GenerationParams.from_mapping({"top_p": 0})
Traceback (most recent call last):
...
lexgpt.generation.generation_params.GenerationParamError: top_p must be from 1e-06 to 1 (1 switches it off), got 0.0
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping
from typing import Any

MAX_NEW_TOKENS_ENV = "LEXGPT_MAX_NEW_TOKENS"
DEFAULT_MAX_NEW_TOKENS_CEILING = 1024
MAX_NEW_TOKENS_CEILING = 1_000_000  # what LEXGPT_MAX_NEW_TOKENS may raise it to: hours of CPU
MAX_PROMPT_CHARS = 20_000  # ~40x a gpu-small window of text; longer prompts are refused
MAX_SEED = 2**63 - 1
# Sampling divides float32 logits by the temperature: below ~1e-36 a logit of 30 overflows
# to inf and the probabilities become NaN (measured; 1e-45 is a float32 subnormal, 1e-46
# rounds to 0). Long before that sampling is greedy anyway: at 1e-3 a logit gap of 0.1 is
# a probability ratio of e**-100, which float32 holds as 0. So 1e-3 is the floor.
MIN_TEMPERATURE = 1e-3
# A top_p below the most likely token's probability keeps that token alone (greedy), and
# that probability is >= 1/vocab_size: 1e-6 is greedy for any vocabulary under a million.
# Far below it, top_p rounds to 0 in float32 and would drop every token (NaN sampling).
MIN_TOP_P = 1e-6


class GenerationParamError(ValueError):
    """A generation parameter out of range; the message is one line a person can act on."""


def max_new_tokens_ceiling() -> int:
    """The largest ``max_new_tokens`` accepted (``LEXGPT_MAX_NEW_TOKENS``, default 1024)."""
    raw = os.environ.get(MAX_NEW_TOKENS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_NEW_TOKENS_CEILING
    try:
        value = int(raw)
    except ValueError:
        value = 0  # refused just below, with the range
    if not 1 <= value <= MAX_NEW_TOKENS_CEILING:
        raise GenerationParamError(f"{MAX_NEW_TOKENS_ENV}={raw!r}: set it to a whole number from 1 to "
                                   f"{MAX_NEW_TOKENS_CEILING} (or unset it for {DEFAULT_MAX_NEW_TOKENS_CEILING})")
    return value


def seed_for(seed: int | None, prompt: str) -> int | None:
    """The sampler's seed for ``prompt`` under the user's ``seed``: both hashed together, so
    two questions asked with one seed do not start from the same random draws, while the
    same prompt and seed always give the same text. ``None`` (unseeded) stays ``None``.

    >>> seed_for(0, "Is there free will?")
    4644850794266096463
    >>> seed_for(0, "Is there free will?") != seed_for(0, "What is love?")
    True
    >>> seed_for(None, "Is there free will?") is None
    True
    """
    if seed is None:
        return None
    # surrogatepass: a prompt from the command line may hold undecodable bytes as surrogates
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


@dataclasses.dataclass(frozen=True)
class GenerationParams:
    """How to sample. The defaults are *the* defaults of every command, the pyfunc and
    ``evaluation_samples``. ``top_k=0`` and ``top_p=1.0`` switch those filters off;
    ``temperature=0`` is greedy; a fixed ``seed`` makes the output reproducible
    (``None``: unseeded). ``qa`` wraps the prompt with :func:`lexgpt.generation.generate.qa_prompt`."""

    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 1.0
    seed: int | None = 0
    qa: bool = False

    def __post_init__(self) -> None:
        ceiling = max_new_tokens_ceiling()
        if not 0 <= self.max_new_tokens <= ceiling:
            raise GenerationParamError(
                f"max_new_tokens must be a whole number from 0 to {ceiling} (the ceiling is "
                f"{MAX_NEW_TOKENS_ENV}), got {self.max_new_tokens}"
            )
        if not (self.temperature == 0 or (math.isfinite(self.temperature) and self.temperature >= MIN_TEMPERATURE)):
            raise GenerationParamError(f"temperature must be 0 (greedy) or a finite number >= {MIN_TEMPERATURE}, "
                                       f"got {self.temperature}")
        if self.top_k < 0:
            raise GenerationParamError(f"top_k must be >= 0 (0 switches it off), got {self.top_k}")
        if not MIN_TOP_P <= self.top_p <= 1:  # NaN fails both comparisons
            raise GenerationParamError(f"top_p must be from {MIN_TOP_P} to 1 (1 switches it off), got {self.top_p}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise GenerationParamError(f"seed must be a whole number from 0 to 2**63-1, got {self.seed}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> GenerationParams:
        """Defaults overridden by ``values`` (JSON, a request's params, CLI flags), each
        converted and checked; ``None`` keeps the default; unknown keys are refused."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values or {}) - set(fields))
        if unknown:
            raise GenerationParamError(
                f"unknown generation parameter {', '.join(unknown)} (known: {', '.join(fields)})"
            )
        kwargs = {}
        for name, raw in (values or {}).items():
            if raw is None:
                continue
            if name in ("max_new_tokens", "top_k", "seed"):
                kwargs[name] = _whole_number(name, raw)
            elif name in ("temperature", "top_p"):
                kwargs[name] = _real_number(name, raw)
            else:
                kwargs[name] = _flag(name, raw)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _whole_number(name: str, raw: Any) -> int:
    value = raw
    if isinstance(raw, str):
        try:
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        except ValueError:
            raise GenerationParamError(f"{name} must be a whole number, got {raw!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GenerationParamError(f"{name} must be a whole number, got {raw!r}")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer() and abs(value) < 2**63):
            raise GenerationParamError(_range_message(name, raw))
        value = int(value)
    return value


def _range_message(name: str, raw: Any) -> str:
    if name == "max_new_tokens":
        return (f"max_new_tokens must be a whole number from 0 to {max_new_tokens_ceiling()} "
                f"(the ceiling is {MAX_NEW_TOKENS_ENV}), got {raw}")
    return f"{name} must be a whole number, got {raw!r}"


def _real_number(name: str, raw: Any) -> float:
    if isinstance(raw, bool):
        raise GenerationParamError(f"{name} must be a number, got {raw!r}")
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise GenerationParamError(f"{name} must be a number, got {raw!r}") from None


def _flag(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise GenerationParamError(f"{name} must be true or false, got {raw!r}")


def check_prompt(prompt: str) -> None:
    """Refuse a prompt over ``MAX_PROMPT_CHARS`` (the model sees one window of it anyway)."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise GenerationParamError(
            f"the prompt has {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}"
        )
