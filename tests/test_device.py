"""Where training runs: the compile cache's folder and whether a run compiles."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lexgpt.training.device import compile_pays, keep_compiled_kernels


def test_compiled_kernels_go_under_lexgpts_cache_unless_the_user_chose(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LEXGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert keep_compiled_kernels() == (tmp_path / "cache" / "inductor").resolve()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str((tmp_path / "cache" / "inductor").resolve())
    # A folder the user (or torch, once it has compiled in this process) set is kept.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert keep_compiled_kernels() == tmp_path / "mine"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_an_explicit_compile_setting_wins_over_the_default():
    cpu = torch.device("cpu")
    assert compile_pays(cpu, True) is True and compile_pays(cpu, False) is False
