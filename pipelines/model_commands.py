"""The ``lexgpt`` commands that run a model: generate, chat, compare, serve (the registry's
commands are in :mod:`pipelines.registry_commands`).

Every command that samples text goes through :func:`lexgpt.generation.generate.stream_text` with a
:class:`lexgpt.generation.generate.GenerationParams` built from the same flags (same defaults as the
served model and ``evaluation_samples``); a bad value is refused in one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import textwrap
from pathlib import Path

from lexgpt.generation.generation_params import (
    MIN_TEMPERATURE,
    MIN_TOP_P,
    GenerationParamError,
    GenerationParams,
    seed_for,
)

DEFAULT_MODEL = "models:/lexgpt@champion"
MAX_SAMPLES = 100
MAX_PROMPTS = 100
COMPARE_PROMPTS = [
    "What do you think about language models?",
    "Is there free will?",
    "What is the meaning of life?",
]


# ------------------------------------------------------------------------- helpers


def fail(command: str, message: str) -> int:
    """Say what went wrong in one line on stderr; the exit status of a refused command (2)."""
    print(f"lexgpt {command}: {message}", file=sys.stderr)
    return 2


def _params(args: argparse.Namespace, **override) -> GenerationParams:
    """The flags as checked params; ``override`` replaces some (a per-sample seed)."""
    values = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": args.top_k,
              "top_p": args.top_p, "seed": args.seed, "qa": args.qa, **override}
    return GenerationParams.from_mapping(values)


def load_for_generation(model_uri: str):
    """``(model, tokenizer)`` of a registered model (``models:/lexgpt@champion``, a run URI)."""
    from lexgpt.tracking import packaging, runs

    runs.configure()
    return packaging.load_model_for_generation(model_uri)


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise GenerationParamError(f"{path}: cannot read the {what} ({getattr(err, 'strerror', None) or err})") from None


def _stream(model, tokenizer, prompt: str, params: GenerationParams) -> str:
    from lexgpt.generation.generate import stream_text

    pieces = []
    for piece in stream_text(model, tokenizer, prompt, params):
        sys.stdout.write(piece)
        sys.stdout.flush()
        pieces.append(piece)
    return "".join(pieces)


def _add_sampling_flags(p: argparse.ArgumentParser, *, qa: bool) -> None:
    # The declared defaults, unchecked: building the parser must not read (and fail on) a
    # bad LEXGPT_MAX_NEW_TOKENS, which the command then refuses in one line.
    d = argparse.Namespace(**{f.name: f.default for f in dataclasses.fields(GenerationParams)})
    p.add_argument("--model", default=DEFAULT_MODEL, help="MLflow model URI")
    # Values stay strings here: GenerationParams checks them, so a bad one gets the same
    # one-line message as in the served model.
    p.add_argument("--max-new-tokens", default=d.max_new_tokens,
                   help="tokens to generate (at most LEXGPT_MAX_NEW_TOKENS, default 1024)")
    p.add_argument("--temperature", default=d.temperature, help=f"0 is greedy, else at least {MIN_TEMPERATURE}")
    p.add_argument("--top-k", default=d.top_k, help="0 switches it off")
    p.add_argument("--top-p", default=d.top_p, help=f"nucleus sampling, {MIN_TOP_P} to 1; 1 switches it off")
    p.add_argument("--seed", default=d.seed, help="the same prompt and seed give the same text "
                   "(the sampler's seed mixes in the prompt)")
    p.add_argument("--qa", action=argparse.BooleanOptionalAction, default=qa,
                   help="the original notebook's podcast question-answer framing")


# ------------------------------------------------------------------------- commands


def cmd_generate(args: argparse.Namespace) -> int:
    try:
        if (args.prompt is None) == (args.prompt_file is None):
            raise GenerationParamError("give a prompt, @file.txt, or --prompt-file FILE (exactly one)")
        if args.prompt_file is not None:  # the file's last newline ends the file, not the prompt
            prompt = _read_text(args.prompt_file, "prompt file").removesuffix("\n")
        elif args.prompt.startswith("@") and len(args.prompt) > 1:
            prompt = _read_text(args.prompt[1:], "prompt file").removesuffix("\n")
        else:
            prompt = args.prompt
        if not 1 <= args.num_samples <= MAX_SAMPLES:
            raise GenerationParamError(f"--num-samples must be from 1 to {MAX_SAMPLES}, got {args.num_samples}")
        first = _params(args)
        from lexgpt.generation.generate import check_prompt, qa_prompt

        check_prompt(prompt)
    except GenerationParamError as err:
        return fail("generate", str(err))
    model, tokenizer = load_for_generation(args.model)
    shown = qa_prompt(prompt) if first.qa else prompt
    for i in range(args.num_samples):
        # Sample i is what `--seed S+i` draws alone: the header names that seed.
        seed = first.seed + i if first.seed is not None else None
        if args.num_samples > 1:
            print(f"--- sample {i + 1}/{args.num_samples} (seed {seed}) ---")
        sys.stdout.write(shown)
        _stream(model, tokenizer, prompt, _params(args, seed=seed_for(seed, prompt)))
        sys.stdout.write("\n")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from pipelines.line_input import LineTooLong, read_line

    try:
        params = _params(args)
    except GenerationParamError as err:
        return fail("chat", str(err))
    model, tokenizer = load_for_generation(args.model)
    print(f"lexgpt chat with {args.model}: type a question, Enter to send, Ctrl-D to leave.")
    turn = 0
    try:
        while True:
            try:
                question = read_line("you> ")  # not input(): Ctrl-C must not wait for Enter
            except LineTooLong as err:
                print(f"({err})")
                continue
            if question is None:  # EOF (Ctrl-D)
                print()
                return 0
            if not question.strip():
                continue
            # seed + turn: asking the same question again gets a new answer, yet a
            # session replayed with the same seed answers the same.
            seed = seed_for(params.seed + turn, question) if params.seed is not None else None
            turn += 1
            sys.stdout.write("lex> " + ("I think that " if params.qa else ""))
            try:
                _stream(model, tokenizer, question, _params(args, seed=seed))
            except GenerationParamError as err:
                sys.stdout.write(f"({err})")
            sys.stdout.write("\n")
    except KeyboardInterrupt:
        print()
        return 130


def _val_bpc(model_uri: str) -> float | None:
    from lexgpt.tracking import registry

    if not model_uri.startswith("models:/"):
        return None
    return registry.version_val_bpc(registry.get_model_version(model_uri))


def side_by_side(left: str, right: str, width: int) -> list[str]:
    """Two texts wrapped into two columns of ``width`` characters, separated by `` | ``.

    >>> side_by_side("one two three", "four", 7)
    ['one two | four', 'three   | ']
    """
    a, b = textwrap.wrap(left, width) or [""], textwrap.wrap(right, width) or [""]
    rows = max(len(a), len(b))
    a, b = a + [""] * (rows - len(a)), b + [""] * (rows - len(b))
    return [f"{x:<{width}} | {y}" for x, y in zip(a, b)]


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        prompts = COMPARE_PROMPTS
        if args.prompts:
            prompts = [line.strip() for line in _read_text(args.prompts, "prompts file").splitlines() if line.strip()]
            if not 1 <= len(prompts) <= MAX_PROMPTS:
                raise GenerationParamError(f"{args.prompts}: expected 1 to {MAX_PROMPTS} prompts, one a line, got {len(prompts)}")
        base = _params(args)
    except GenerationParamError as err:
        return fail("compare", str(err))
    from lexgpt.generation.generate import complete

    models = [(uri, *load_for_generation(uri), _val_bpc(uri)) for uri in (args.model_a, args.model_b)]
    width = max(30, (shutil.get_terminal_size((160, 24)).columns - 3) // 2)
    heads = [f"{'AB'[i]}: {uri} ({f'{bpc:.4f}' if bpc is not None else '?'} val bits/char)"
             for i, (uri, _, _, bpc) in enumerate(models)]
    print(*side_by_side(heads[0], heads[1], width), sep="\n")
    print("=" * (2 * width + 3))
    answer_start = "I think that " if base.qa else ""
    for prompt in prompts:  # each answer is `lexgpt generate PROMPT --qa --seed S`'s (same flags)
        params = _params(args, seed=seed_for(base.seed, prompt))
        texts = [answer_start + complete(model, tok, prompt, params) for _, model, tok, _ in models]
        print(f"\n{prompt}  (seed {base.seed})")
        print(*side_by_side(texts[0], texts[1], width), sep="\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """MLflow's scoring server over a checked copy of the model's files (hashes from the
    registry), with an MLmodel written by the installed lexgpt: nothing from the artifact
    store is imported. ``--openai``: :mod:`lexgpt.serving.openai_api` over the same checked files."""
    import subprocess
    import tempfile

    from lexgpt.tracking import packaging, runs

    if args.openai:
        from lexgpt.serving import openai_api

        if args.workers != 1:
            return fail("serve", "--openai runs one process (generation takes the CPU); leave --workers out")
        model, tokenizer = load_for_generation(args.model)
        print(f"serving {args.model} as an OpenAI API on http://127.0.0.1:{args.port}/v1 "
              f"(model name {args.model!r} or 'lexgpt'; Ctrl-C stops)", flush=True)
        try:
            openai_api.serve(openai_api.Engine(model, tokenizer, args.model, args.timeout), args.port)
        except KeyboardInterrupt:
            return 130
        return 0

    import shlex

    from mlflow.pyfunc.scoring_server import get_cmd

    uri = runs.configure()  # also re-points a moved home (lexgpt.tracking.moved_home)
    bin_dir = str(Path(sys.executable).parent)
    with tempfile.TemporaryDirectory(prefix="lexgpt-serve-") as tmp:
        local = packaging.stage_for_serving(args.model, tmp)
        # MLflow's own command and environment (`mlflow models serve --env-manager local`
        # runs the same), with its app behind a request-body bound (lexgpt.serving.scoring_app).
        command, env = get_cmd(str(local), port=args.port, host="127.0.0.1", timeout=args.timeout,
                               nworkers=args.workers)
        argv = shlex.split(command)
        app = argv.index("mlflow.pyfunc.scoring_server.app:app")
        cmd = [sys.executable, "-m", "uvicorn", *argv[1:app], "--factory", "lexgpt.serving.scoring_app:create_app",
               *argv[app + 1:]]
        env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri}
        print(f"serving {args.model} on http://127.0.0.1:{args.port}/invocations (store {uri})", flush=True)
        try:
            return subprocess.run(cmd, env=env).returncode
        except KeyboardInterrupt:
            return 130


def add_model_commands(sub) -> None:
    """Register generate, chat, compare, serve, lineage, promote and mlflow-ui."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("generate", help="stream generated text from a registered model", formatter_class=fmt,
                       description="Stream text from a registered model. Every default below is also the "
                       "served model's and evaluation_samples'.")
    p.add_argument("prompt", nargs="?", help="the prompt, or @file.txt to read it from a file")
    p.add_argument("--prompt-file", metavar="FILE", help="read the prompt from FILE")
    p.add_argument("--num-samples", type=int, default=1, help=f"samples to draw (1 to {MAX_SAMPLES})")
    _add_sampling_flags(p, qa=False)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("chat", help="ask the model questions in the terminal (Ctrl-D leaves)", formatter_class=fmt)
    _add_sampling_flags(p, qa=True)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("compare", help="the same seeded prompts through two models, side by side",
                       formatter_class=fmt)
    p.add_argument("model_a", metavar="A", help="a model URI, e.g. models:/lexgpt/1")
    p.add_argument("model_b", metavar="B", help="another, e.g. models:/lexgpt@champion")
    p.add_argument("--prompts", metavar="FILE", help="one prompt a line (default: three built-in questions)")
    _add_sampling_flags(p, qa=True)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("serve", help="serve a model over HTTP on 127.0.0.1 (MLflow scoring server)",
                       formatter_class=fmt)
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, metavar="MODEL_URI")
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--workers", type=int, default=1, help="server processes (each holds the model)")
    p.add_argument("--timeout", type=int, default=60, help="seconds per request; generation stops then")
    p.add_argument("--openai", action="store_true",
                   help="serve the OpenAI API instead (/v1/chat/completions, /v1/completions, streaming) "
                        "for any OpenAI client: base_url http://127.0.0.1:PORT/v1")
    p.set_defaults(func=cmd_serve)
