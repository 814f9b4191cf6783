"""LEXGPT_CONFIG: a --config file whose overrides are the defaults of every run (automation's too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, TINY_CONFIG, lexgpt_cli

# What a run launched without run config (by automation, or "Materialize" in the UI) gets,
# and what `lexgpt status` / `refresh` compare against; in a fresh process, as the code
# server loads the definitions.
PROBE = """
import json, warnings
warnings.simplefilter("ignore")
import dagster as dg
from pipelines.definitions import defs
from pipelines.staleness import effective_config
ops = dg.validate_run_config(defs.resolve_implicit_global_asset_job_def(), {})["ops"]
print(json.dumps({"run": {k: ops[k]["config"] for k in ("bpe_vocab", "trained_model", "ngram_baseline")},
                  "effective": effective_config({"bpe_vocab": {"vocab_size": 500}})}))
"""


def _probe(env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_file_overrides_are_the_defaults_of_every_run(lexgpt_home: Path, tmp_path: Path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    plain = _probe(os.environ.copy())
    assert plain["run"]["trained_model"]["preset"] == "auto" and plain["run"]["bpe_vocab"]["vocab_size"] == 1000

    tiny = _probe(os.environ | {"LEXGPT_CONFIG": str(config)})
    run = tiny["run"]
    assert run["bpe_vocab"] == {"vocab_size": 300}
    assert run["trained_model"]["preset"] == "test-tiny" and run["trained_model"]["max_steps"] == 30
    assert run["trained_model"]["seed"] == plain["run"]["trained_model"]["seed"]  # not in the file
    assert run["ngram_baseline"] == plain["run"]["ngram_baseline"]  # nothing for it in the file
    # `lexgpt status` / `refresh` start from the same defaults; --config still wins.
    assert tiny["effective"]["trained_model"] == run["trained_model"]
    assert tiny["effective"]["bpe_vocab"] == {"vocab_size": 500}


def test_a_bad_file_is_one_line(lexgpt_home: Path, tmp_path: Path, monkeypatch):
    config = tmp_path / "bad.yaml"
    monkeypatch.setenv("LEXGPT_CONFIG", str(config))
    for text, message in [
        ("trained_model:\n  max_stepz: 3\n", "trained_model: no config field max_stepz (fields: preset, "),
        ("trained_modle:\n  max_steps: 3\n", "no configurable asset named trained_modle (choose from "),
        ("bpe_vocab:\n  vocab_size: lots\n", "bpe_vocab: vocab_size: Input should be a valid integer"),
    ]:
        config.write_text(text)
        proc = lexgpt_cli("status", check=False)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.strip().splitlines() if "Warning" not in line and line[:1] != " "]
        assert len(lines) == 1 and lines[0].startswith(f"lexgpt status: LEXGPT_CONFIG={config}: "), proc.stderr
        assert message in lines[0], lines[0]
