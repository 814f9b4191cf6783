"""The README's commands are real: every ``lexgpt`` command line it shows (in ```bash blocks
and in `inline code`) parses with the real command-line parser, every ``make`` target exists,
the ``curl`` body is a request the served model accepts, the Python snippet compiles and the
store path it exports is absolute. Each subcommand's ``--help`` runs (the cheap ones)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex

import pytest

from conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def _bash_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                lines.append(line.strip())
    return lines


def _words(line: str) -> list[str]:
    return shlex.split(line, comments=True)


BASH = _bash_lines()
INLINE = sorted({m for m in re.findall(r"`(lexgpt [^`]+)`", README)})
LEXGPT = sorted({" ".join(shlex.quote(w) for w in _words(line)) for line in BASH if line.startswith("lexgpt ")})


def _parse(argv: list[str]):
    from pipelines.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return build_parser().parse_args(argv)
        except SystemExit:
            raise AssertionError(f"lexgpt {' '.join(argv)}: {err.getvalue().strip()}") from None


def test_the_readme_shows_commands():
    assert len(LEXGPT) >= 10 and len(INLINE) >= 5, (LEXGPT, INLINE)
    assert any(line.startswith("curl ") for line in BASH)


@pytest.mark.parametrize("line", LEXGPT)
def test_lexgpt_command_parses(line):
    args = _parse(_words(line)[1:])
    assert callable(args.func)


@pytest.mark.parametrize("span", INLINE)
def test_inline_mentions_name_real_subcommands_and_flags(span):
    """Prose like `lexgpt status --config my.yaml` or `lexgpt compare`: the subcommand and
    every flag it names exist (positional arguments may be left out of a mention)."""
    from pipelines.cli import build_parser

    words = _words(span)
    subparsers = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert words[1] in subparsers.choices, span
    options = subparsers.choices[words[1]]._option_string_actions
    assert all(w in options for w in words[2:] if w.startswith("-")), span


@pytest.mark.parametrize("command", sorted({_words(line)[1] for line in LEXGPT + INLINE}))
def test_subcommand_help_runs(command):
    from pipelines.cli import build_parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0 and f"lexgpt {command}" in out.getvalue()


def test_make_targets_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    used = {w[1] for line in BASH if (w := _words(line)) and w[0] == "make"}
    used |= set(re.findall(r"`make ([\w-]+)`", README))
    assert used and used <= targets, used - targets


def test_curl_example_is_a_request_the_server_accepts():
    from lexgpt.generation.generation_params import GenerationParams
    from pipelines.model_commands import add_model_commands  # noqa: F401 - serve's defaults below
    from pipelines.cli import build_parser

    (line,) = [line for line in BASH if line.startswith("curl ")]
    words = _words(line)
    url = next(w for w in words if w.startswith("http"))
    serve = build_parser().parse_args(["serve"])
    assert url == f"http://127.0.0.1:{serve.port}/invocations"
    body = json.loads(words[words.index("-d") + 1])
    assert body["inputs"] and all(isinstance(p, str) for p in body["inputs"])
    params = GenerationParams.from_mapping(body["params"])  # accepted as written
    assert set(body["params"]) == set(params.to_dict())  # and it shows every param


def test_python_snippet_uses_an_absolute_store():
    exports = [line for line in BASH if line.startswith("export MLFLOW_TRACKING_URI=")]
    assert exports and all(re.fullmatch(r"export MLFLOW_TRACKING_URI=sqlite:////\S+\.db", e) for e in exports)
    assert "$PWD" not in "".join(exports)
    snippets = [_words(line)[2] for line in BASH if line.startswith("python -c ")]
    assert snippets
    for code in snippets:
        compile(code, "README", "exec")
