"""The lexgpt MLflow pyfunc, logged as *models from code*.

``lexgpt.tracking.log_and_register_model`` passes this file's path as ``python_model``;
MLflow copies the file into the model and runs it at load time, so no class is pickled.
The ``lexgpt`` package itself travels with the model through ``code_paths``.

Artifacts (keys of ``context.artifacts``):

* ``weights``   – a ``GPT`` state dict (``model.pt``), loaded with ``weights_only=True``;
* ``config``    – ``config.json``, a ``GPTConfig.to_dict()``;
* ``tokenizer`` – the ``BPETokenizer`` file.

``predict`` takes a prompt string, a list of prompt strings or a DataFrame of prompts
(column ``prompt`` or else the first column) and returns one generated continuation
(the new text only, without the prompt) per prompt.

Params (all optional; the defaults are also declared in the logged signature):

* ``max_new_tokens`` (200), ``temperature`` (0.8);
* ``top_k`` (50; ``0`` or less disables it), ``top_p`` (1.0; ``>= 1.0`` disables it);
* ``seed`` (0; a fixed seed gives deterministic output; a negative seed means unseeded);
* ``qa`` (False; wrap each prompt with ``lexgpt.generate.qa_prompt``).
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import pandas as pd  # an MLflow dependency
from mlflow.pyfunc import PythonModel

ARTIFACT_WEIGHTS = "weights"
ARTIFACT_CONFIG = "config"
ARTIFACT_TOKENIZER = "tokenizer"

DEFAULT_PARAMS: dict[str, Any] = {
    "max_new_tokens": 200,
    "temperature": 0.8,
    "top_k": 50,
    "top_p": 1.0,
    "seed": 0,
    "qa": False,
}


def _as_prompts(model_input: Any) -> list[str]:
    """Normalise whatever the pyfunc / scoring server hands us to a list of prompts."""
    if model_input is None:
        return []
    if isinstance(model_input, (str, bytes)):
        return [_text(model_input)]
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] == 0:
            return []
        column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
        return [_text(v) for v in model_input[column].tolist()]
    if isinstance(model_input, pd.Series):
        return [_text(v) for v in model_input.tolist()]
    if isinstance(model_input, dict):
        for key in ("prompt", "prompts", "inputs", "question"):
            if key in model_input:
                return _as_prompts(model_input[key])
        raise ValueError(f"cannot find prompts in a dict with keys {sorted(model_input)}")
    if hasattr(model_input, "tolist") and not isinstance(model_input, (list, tuple)):
        model_input = model_input.tolist()  # numpy arrays
    if isinstance(model_input, (list, tuple)):
        prompts = []
        for item in model_input:
            if isinstance(item, dict):
                prompts.extend(_as_prompts(item))
            elif isinstance(item, (list, tuple)) and len(item) == 1:
                prompts.append(_text(item[0]))
            else:
                prompts.append(_text(item))
        return prompts
    return [_text(model_input)]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _resolve_params(params: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key in merged and value is not None:
            merged[key] = value
    max_new_tokens = int(merged["max_new_tokens"])
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    temperature = float(merged["temperature"])
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    top_k = int(merged["top_k"])
    top_p = float(merged["top_p"])
    seed = int(merged["seed"])
    qa = merged["qa"]
    if isinstance(qa, str):
        qa = qa.strip().lower() in {"1", "true", "yes", "on"}
    return {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k if top_k > 0 else None,
        "top_p": top_p if 0.0 < top_p < 1.0 else None,
        "seed": seed if seed >= 0 else None,
        "qa": bool(qa),
    }


def _clean_state_dict(state: Any) -> dict[str, Any]:
    """Accept a bare state dict; strip a ``torch.compile`` ``_orig_mod.`` prefix."""
    if not isinstance(state, dict):
        raise TypeError(f"expected a state dict in the weights file, got {type(state).__name__}")
    prefix = "_orig_mod."
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


class LexGPTModel(PythonModel):
    """Prompt(s) in, generated continuation(s) out."""

    def load_context(self, context) -> None:
        import torch

        from lexgpt.bpe import BPETokenizer
        from lexgpt.model import GPT, GPTConfig

        artifacts = context.artifacts
        with open(artifacts[ARTIFACT_CONFIG], encoding="utf-8") as fh:
            self.config = GPTConfig.from_dict(json.load(fh))
        state = torch.load(artifacts[ARTIFACT_WEIGHTS], weights_only=True, map_location="cpu")
        model = GPT(self.config)
        model.load_state_dict(_clean_state_dict(state))
        model.eval()
        self.model = model
        self.tokenizer = BPETokenizer.load(artifacts[ARTIFACT_TOKENIZER])

    # MLflow hands ``predict`` a DataFrame (one column of prompts, per the signature); the
    # hint says so, and stops MLflow warning on every load that ``predict`` has none.
    # Called directly, ``predict`` also takes a string, a list or a dict (``_as_prompts``).
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        import torch

        from lexgpt.generate import generate, qa_prompt

        opts = _resolve_params(params)
        eot = getattr(self.tokenizer, "eot_id", None)
        block_size = int(getattr(self.config, "block_size", 0) or 0)
        outputs: list[str] = []
        for prompt in _as_prompts(model_input):
            text = qa_prompt(prompt) if opts["qa"] else prompt
            ids = list(self.tokenizer.encode(text))
            if not ids:
                if eot is None:
                    raise ValueError("empty prompt and the tokenizer has no end-of-text token")
                ids = [eot]
            if block_size and len(ids) > block_size:
                ids = ids[-block_size:]
            new_ids: list[int] = []
            if opts["max_new_tokens"] > 0:
                with torch.inference_mode():
                    for tok in generate(
                        self.model,
                        ids,
                        opts["max_new_tokens"],
                        temperature=opts["temperature"],
                        top_k=opts["top_k"],
                        top_p=opts["top_p"],
                        eos_id=eot,
                        seed=opts["seed"],
                    ):
                        tok = int(tok)
                        if eot is not None and tok == eot:
                            break
                        new_ids.append(tok)
            outputs.append(self.tokenizer.decode(new_ids))
        return outputs


mlflow.models.set_model(LexGPTModel())
