"""The README's main job on the real Lexicap folder: every stage, end to end (slow).

Runs ``lexgpt run`` with its embedded defaults (cpu-small on CPU) into a temporary home,
then uses what it made the way a user would: status, lineage, generate, and the
registered model loaded through MLflow in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REAL_LEXICAP, lexgpt_cli, use_home

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_LEXICAP.is_dir(), reason=f"Lexicap folder {REAL_LEXICAP} not present"),
]


@pytest.mark.timeout(1800)
def test_lexgpt_run_on_real_lexicap(tmp_path: Path, monkeypatch):
    home = use_home(monkeypatch, tmp_path / "home", REAL_LEXICAP)

    run = lexgpt_cli("run", "--json", timeout=1700)
    print(run.stdout[-2500:])  # the verdict: per-asset times, the model's and the baseline's bits/char
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["executed"] == ["raw_subtitles", "cleaned_corpus", "bpe_vocab", "token_shards",
                                  "ngram_baseline", "trained_model", "registered_model", "evaluation_samples"]
    states = json.loads(lexgpt_cli("status", "--json").stdout)
    assert {s["status"] for s in states} == {"fresh"}

    lake = home / "data_lake"
    raw = json.loads((lake / "raw_subtitles" / "lineage.json").read_text())
    assert Path(raw["source_folder"]) == REAL_LEXICAP.resolve()
    manifest = json.loads((lake / "token_shards" / "manifest.json").read_text())
    assert manifest["vocab_size"] == 1000
    assert len(manifest["splits"]["train"]["episodes"]) + len(manifest["splits"]["val"]["episodes"]) == 319
    model = json.loads((lake / "trained_model" / "lineage.json").read_text())
    # cpu-small in its 8-minute budget: ~1.45 full-val bits/char on a quiet 2-core box
    # (BENCHMARKS.md); the old recipe reached 1.78. A generous bar, for a loaded CI machine.
    assert model["val_bpc"] <= 1.65, model["val_bpc"]

    # Version 1 is champion only if it beat the n-gram baseline: the lineage is there either way.
    lineage = lexgpt_cli("lineage", "models:/lexgpt/1").stdout
    for key in ("corpus_version", "vocab_version", "shards_version", "rules_hash", "git_commit"):
        assert key in lineage

    out = lexgpt_cli("generate", "What do you think about language models?", "--max-new-tokens", "40",
                     "--seed", "1", "--model", "models:/lexgpt/1").stdout
    assert out.startswith("What do you think about language models?")
    assert len(out) > len("What do you think about language models?") + 20

    code = ("import mlflow, sys; m = mlflow.pyfunc.load_model('models:/lexgpt/1'); "
            "out = m.predict(['What do you think about language models?']); "
            "assert isinstance(out[0], str) and out[0].strip(), out; print(out[0])")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                          timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
