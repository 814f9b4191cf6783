"""torch.compile's kernels are kept under lexgpt's cache folder, which outlives a reboot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lexgpt.infra import paths

from conftest import REPO


def test_the_compile_cache_goes_under_lexgpts_cache_unless_the_user_chose(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LEXGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert paths.persist_compile_cache() == (tmp_path / "cache" / "inductor").resolve()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str((tmp_path / "cache" / "inductor").resolve())
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert paths.persist_compile_cache() == tmp_path / "mine"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_the_training_cli_sets_the_folder_before_anything_else(monkeypatch):
    from lexgpt.training import train

    calls = []
    monkeypatch.setattr(train.paths, "persist_compile_cache", lambda: calls.append("set"))
    with pytest.raises(SystemExit):
        train.main(["--help"])
    assert calls == ["set"]


COMPILE_AFTER_IMPORTING = """
import pipelines  # the Dagster layer's processes (lexgpt CLI, dagster, the training process tree)
import torch
with torch.device("meta"):  # imports torch._dynamo, which would fix torch's own default folder
    torch.nn.Embedding(4, 4)
print(torch.compile(lambda x: x * 2 + 1)(torch.ones(3)).tolist())
"""


@pytest.mark.slow  # one small C++ kernel: ~10-20 s on 2 cores
def test_a_pipeline_process_writes_its_compiled_kernels_under_lexgpts_cache(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env["LEXGPT_CACHE"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", COMPILE_AFTER_IMPORTING], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("[3.0, 3.0, 3.0]")
    kernels = list((tmp_path / "cache" / "inductor").rglob("*.py"))
    assert kernels, f"no compiled kernel under {tmp_path / 'cache' / 'inductor'}"
