"""The lexgpt MLflow pyfunc flavour, loaded from the *installed* lexgpt package.

The logged model's MLmodel names this module as its ``loader_module``; MLflow imports it
(from the environment, never from the artifact store: the model carries no code) and calls
:func:`_load_pyfunc` with the model's ``data/lexgpt`` folder, which holds the files of
:mod:`lexgpt.modeling.model_files` (``model.pt`` read with ``weights_only=True``, ``config.json``,
``tokenizer.json``). ``lexgpt serve`` hands MLflow's scoring server a copy whose files were
checked against the hashes in the registry (:func:`lexgpt.tracking.packaging.stage_for_serving`).

``predict`` takes a prompt string, a list of prompt strings or a DataFrame of prompts
(column ``prompt`` or else the first column) and returns one generated continuation
(the new text only, without the prompt) per prompt.

Params (all optional) are :class:`lexgpt.generation.generate.GenerationParams`, with its defaults
(declared in the logged signature too): ``max_new_tokens`` (200, at most
``LEXGPT_MAX_NEW_TOKENS``, default 1024), ``temperature`` (0.8; 0 is greedy), ``top_k`` (50;
0 switches it off), ``top_p`` (1.0, in (0, 1]), ``seed`` (0, from 0 to 2**63-1), ``qa``
(False; the notebook's podcast question-answer framing). A bad value is refused with an
MLflow ``INVALID_PARAMETER_VALUE`` error (HTTP 400 from the scoring server) that names it.
Inside the scoring server, a request stops generating once the server's request timeout
(``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``, 60 s) has passed, so an abandoned request
does not keep the CPU busy.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import pandas as pd  # an MLflow dependency


def default_params() -> dict[str, Any]:
    """The params declared in the signature: :class:`GenerationParams`' defaults."""
    from lexgpt.generation.generate import GenerationParams

    params = GenerationParams().to_dict()
    params["seed"] = 0 if params["seed"] is None else params["seed"]  # a signature needs a value
    return params


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


def _request_time_limit() -> float | None:
    """The scoring server's request timeout when running inside it, else no limit."""
    if os.environ.get("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "").lower() != "true":
        return None
    try:
        return float(os.environ.get("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "60"))
    except ValueError:
        return 60.0


class LexGPTModel:
    """Prompt(s) in, generated continuation(s) out, for a loaded GPT and tokenizer."""

    def __init__(self, model=None, tokenizer=None) -> None:
        self.model, self.tokenizer = model, tokenizer

    # MLflow hands ``predict`` a DataFrame (one column of prompts, per the signature).
    # Called directly, it also takes a string, a list or a dict (``_as_prompts``).
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        """The ``PythonModel``-style entry point (``context`` is unused)."""
        from mlflow.exceptions import MlflowException

        from lexgpt.generation.generate import GenerationParams, check_prompt, complete
        from lexgpt.generation.generation_params import seed_for

        try:
            opts = GenerationParams.from_mapping(params)
            prompts = _as_prompts(model_input)
            for prompt in prompts:
                check_prompt(prompt)
        except ValueError as err:  # GenerationParamError too: HTTP 400 with our words
            raise MlflowException.invalid_parameter_value(str(err)) from None
        limit = _request_time_limit()
        deadline = time.monotonic() + limit if limit is not None else None
        outputs = []
        for prompt in prompts:  # one time budget for the whole request
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            seeded = dataclasses.replace(opts, seed=seed_for(opts.seed, prompt))  # answers depend on the question
            outputs.append(complete(self.model, self.tokenizer, prompt, seeded, time_limit_s=left))
        return outputs


class _Pyfunc:
    """What MLflow's ``loader_module`` protocol calls: ``predict(model_input, params=...)``."""

    def __init__(self, lexgpt: LexGPTModel) -> None:
        self.lexgpt = lexgpt

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        return self.lexgpt.predict(None, model_input, params)


def _load_pyfunc(data_path: str) -> _Pyfunc:
    """MLflow's entry point: the model in ``data_path`` (the ``data/lexgpt`` folder)."""
    from lexgpt.modeling import model_files

    return _Pyfunc(LexGPTModel(*model_files.load(data_path)))
