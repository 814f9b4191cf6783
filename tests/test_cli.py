"""The ``lexgpt`` command: a bad run-config file or generation parameter gets one line naming
the problem; a refresh that trained ends with a verdict; chat, generate, compare, serve."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, lexgpt_cli


@pytest.mark.parametrize("body, says", [
    ("trained_model: {max_stepz: 10}\n", "trained_model: no config field max_stepz (fields: preset, max_steps,"),
    ("trained_model: {max_steps: lots}\n", "trained_model: max_steps: Input should be a valid integer"),
    ("bpe_vocab: {vocab_size: 300}\nnot_an_asset: {x: 1}\n", "no configurable asset named not_an_asset"),
    ("trained_model: [1, 2]\n", "{config}: expected a mapping of asset name -> config"),
    ("trained_model: {max_steps: 10\n", "{config}: not valid YAML"),
    (None, "{config}: cannot read the config file (No such file or directory)"),
])  # fmt: skip
def test_bad_config_is_refused_before_anything_runs(lexgpt_home: Path, tmp_path: Path, body, says):
    config = tmp_path / "run.yaml"
    if body is not None:
        config.write_text(body)
    result = lexgpt_cli("refresh", "--config", str(config), check=False, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert says.format(config=config) in result.stderr, result.stderr
    assert not (lexgpt_home / "data_lake" / "raw_subtitles").exists()


# ------------------------------------------------------------------ model commands


@pytest.mark.parametrize("args, says", [
    (["generate", "hi", "--max-new-tokens", "1e30"], "max_new_tokens must be a whole number from 0 to 1024"),
    (["generate", "hi", "--temperature", "-1"], "temperature must be 0 (greedy) or a finite number >= 0.001"),
    (["generate", "hi", "--top-k", "-3"], "top_k must be >= 0"),
    (["generate", "hi", "--top-p", "0"], "top_p must be from 1e-06 to 1"),
    (["generate", "hi", "--seed", "-5"], "seed must be a whole number from 0 to 2**63-1"),
    (["generate", "hi", "--num-samples", "0"], "--num-samples must be from 1 to 100"),
    (["generate"], "give a prompt, @file.txt, or --prompt-file FILE"),
    (["generate", "@/nonexistent/p.txt"], "/nonexistent/p.txt: cannot read the prompt file"),
    (["chat", "--top-p", "2"], "top_p must be from 1e-06 to 1"),
    (["compare", "models:/lexgpt/1", "models:/lexgpt/2", "--temperature", "inf"], "temperature must be"),
])  # fmt: skip
def test_bad_generation_params_are_refused_in_one_line(args, says):
    from pipelines.cli import main

    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(args) == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lexgpt {args[0]}: ") and says in lines[0], lines


@pytest.mark.parametrize("env, args, says", [
    ("abc", ["generate", "hi"], "LEXGPT_MAX_NEW_TOKENS='abc': set it to a whole number from 1 to 1000000"),
    ("abc", ["chat"], "LEXGPT_MAX_NEW_TOKENS='abc': set it to a whole number from 1 to 1000000"),
    ("0", ["compare", "a", "b"], "LEXGPT_MAX_NEW_TOKENS='0': set it to a whole number from 1 to 1000000"),
    (None, ["generate", "hi", "--temperature", "1e-45"], "temperature must be 0 (greedy) or a finite number "
                                                          ">= 0.001, got 1e-45"),
    (None, ["chat", "--temperature", "1e-45"], "temperature must be 0 (greedy) or a finite number >= 0.001"),
    (None, ["generate", "hi", "--top-p", "1e-45"], "top_p must be from 1e-06 to 1 (1 switches it off), got 1e-45"),
])  # fmt: skip
def test_values_that_would_break_sampling_end_in_one_line(monkeypatch, env, args, says):
    """Through the real command: before any model loads, one line on stderr, no traceback."""
    if env is None:
        monkeypatch.delenv("LEXGPT_MAX_NEW_TOKENS", raising=False)
    else:
        monkeypatch.setenv("LEXGPT_MAX_NEW_TOKENS", env)
    result = lexgpt_cli(*args, check=False, timeout=120)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and result.stdout == "", result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"lexgpt {args[0]}: {says}"), lines


def test_servers_bind_localhost_from_the_venv(monkeypatch):
    import sys

    from pipelines.cli import main

    calls = []

    def fake_exec(path, argv, env=None):
        calls.append((path, argv, env))
        raise SystemExit(0)

    staged = []
    # First: importing lexgpt.tracking.packaging imports MLflow, which runs subprocesses of its own.
    monkeypatch.setattr("lexgpt.tracking.packaging.stage_for_serving", lambda uri, dest: staged.append(uri) or Path(dest))
    monkeypatch.setattr("os.execvp", lambda path, argv: fake_exec(path, argv))
    monkeypatch.setattr("subprocess.run", lambda argv, env=None: fake_exec(argv[0], argv, env))
    for argv in (["serve"], ["mlflow-ui"], ["mlflow-ui", "--workers", "3"]):
        with pytest.raises(SystemExit):
            main(argv)
    venv_bin = str(Path(sys.executable).parent)
    (serve_path, serve, env), (_, ui, _), (_, ui3, _) = calls
    assert serve_path.startswith(venv_bin)  # no activation needed to find mlflow ...
    assert env["PATH"].split(":")[0] == venv_bin  # ... nor the uvicorn it execs
    assert staged == ["models:/lexgpt@champion"]  # served from a hash-checked copy of its files
    assert serve[serve.index("--host") + 1] == "127.0.0.1" and serve[serve.index("--workers") + 1] == "1"
    assert serve[1:3] == ["-m", "uvicorn"] and serve[-2:] == ["--factory", "lexgpt.serving.scoring_app:create_app"]  # MLflow's app, bounded
    assert ui[ui.index("-h") + 1] == "127.0.0.1" and ui[ui.index("--workers") + 1] == "1"
    assert ui3[ui3.index("--workers") + 1] == "3"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny refresh that trains and registers lexgpt v1; its output for the verdict."""
    from conftest import TINY_CONFIG, use_home, write_episode

    base = tmp_path_factory.mktemp("trained")
    vtt = base / "vtt"
    vtt.mkdir()
    for episode in (1, 2, 3, 4, 5, 20):
        write_episode(vtt, episode)
    config = base / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        home = use_home(mp, base / "home", vtt)
        result = lexgpt_cli("refresh", "--config", str(config), timeout=1200)
        # A tiny model loses to the 5-gram, so the gate makes it challenger; the commands
        # below talk to the champion, which a user can still name by hand.
        lexgpt_cli("promote", "1")
        yield home, result


@pytest.mark.slow  # one tiny training + a model load per command
def test_refresh_that_trained_ends_with_a_verdict(trained):
    _, result = trained
    out = result.stdout[result.stdout.index("\nverdict"):]
    for asset in ("raw_subtitles", "cleaned_corpus", "bpe_vocab", "token_shards", "ngram_baseline",
                  "trained_model", "registered_model", "evaluation_samples"):
        assert re.search(rf"^  {asset} +\d+\.\d s$", out, re.M), out
    # 30 tiny steps lose to the 5-gram: the verdict says so, by how much, and what to run.
    assert re.search(r"^  new model +lexgpt v1: \d\.\d{4} val bits/char -> challenger$", out, re.M), out
    assert not re.search(r"^  (previous )?champion ", out, re.M), out  # there is none yet
    assert re.search(r"^  n-gram baseline +\d\.\d{4} val bits/char: the model LOSES to counting by "
                     r"\d\.\d{4} bits/char,$", out, re.M), out
    assert re.search(r"Train longer: lexgpt refresh --minutes \d+$", out, re.M), out
    samples = out[out.index("  samples\n"):].splitlines()[1:]
    assert len(samples) == 3 and all(" -> I think that" in s for s in samples), samples
    # one line per evaluation during training (the tiny config evaluates at 15 and 30)
    assert re.search(r"step 15: train loss \d+\.\d{3}, val \d+\.\d{3} bits/char \(\d+% of val\), [\d,]+ tokens/s, "
                     r"15 steps left", result.stderr), result.stderr[-2000:]


@pytest.mark.slow  # one tiny training + a model load per command
def test_chat_answers_two_questions_then_exits_on_eof(trained):
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "chat", "--max-new-tokens", "8"],
                          input="Is there free will?\nWhat is love?\n", capture_output=True, text=True,
                          timeout=600, env=os.environ.copy(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("lex> I think that") == 2, proc.stdout
    assert proc.stdout.rstrip().endswith("you>")  # the third prompt got EOF


@pytest.mark.slow  # one tiny training + a model load per command
def test_ctrl_c_at_the_chat_prompt_leaves_at_once(trained):
    """In a terminal, Ctrl-C at ``you>`` (a half-typed question pending) exits 130 at once,
    not after the next Enter."""
    import pty
    import select

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "chat"], stdin=follower, stdout=follower,
                            stderr=follower, cwd=REPO, env=os.environ.copy(), start_new_session=True)
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 300
        while b"you> " not in seen and time.monotonic() < deadline:
            if select.select([leader], [], [], 1)[0]:
                seen += os.read(leader, 4096)
        assert b"you> " in seen, seen.decode(errors="replace")
        os.write(leader, b"Is there free")  # typed, no Enter
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
        assert proc.wait(timeout=20) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)


@pytest.mark.slow  # one tiny training + a model load per command
def test_generate_samples_from_a_prompt_file(trained, tmp_path):
    prompt = tmp_path / "p.txt"
    prompt.write_text("What is love?\n")
    a = lexgpt_cli("generate", f"@{prompt}", "--num-samples", "2", "--max-new-tokens", "6", timeout=600)
    assert "--- sample 1/2 (seed 0) ---\nWhat is love?" in a.stdout
    assert "--- sample 2/2 (seed 1) ---\nWhat is love?" in a.stdout
    b = lexgpt_cli("generate", "--prompt-file", str(prompt), "--num-samples", "2", "--max-new-tokens", "6",
                   timeout=600)
    assert a.stdout == b.stdout  # seeded: the same samples both ways


@pytest.mark.slow  # one tiny training + a model load per command
def test_compare_prints_both_columns(trained, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Is there free will?\n\nWhat is love?\n")
    out = lexgpt_cli("compare", "models:/lexgpt/1", "models:/lexgpt@champion", "--prompts", str(prompts),
                     "--max-new-tokens", "6", timeout=600).stdout
    head = out.splitlines()[0]
    assert re.search(r"A: models:/lexgpt/1 \(\d\.\d{4} val bits/char\) +\| B: models:/lexgpt@champion \(", head)
    assert "Is there free will?  (seed 0)" in out and "What is love?  (seed 0)" in out
    rows = [line for line in out.splitlines() if line.startswith("I think that")]
    assert len(rows) == 2 and all(" | I think that" in r for r in rows)
    left, right = rows[0].split(" | ", 1)
    assert left.rstrip() == right.rstrip()  # the same version twice: the same seeded text


@pytest.mark.slow  # one tiny training + a model load per command
def test_generate_into_a_reader_that_left_stops_quietly(trained):
    """`lexgpt generate ... | head -1`: once the reader has gone, no BrokenPipeError traceback."""
    from test_quiet_terminal import run_into_closed_pipe

    proc = run_into_closed_pipe("generate", "What is love?", "--max-new-tokens", "40")
    assert (proc.returncode, proc.stderr) == (141, "")


def test_a_training_budget_under_a_minute_is_refused_up_front(lexgpt_home):
    result = lexgpt_cli("run", "--minutes", "0.5", check=False, timeout=120)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "lexgpt run --minutes 0.5: give at least 1 (minutes of training; the first ~minute on a CPU is compiling)"]
