"""The benchmark scripts still run and measure what BENCHMARKS.md says they measure.

Tiny budgets counted in steps, not seconds: these check the scripts, not the speed (speed is
BENCHMARKS.md's business), so a busy machine makes them slower, never red.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from lexgpt.training.train import TrainConfig


def bench(script: str, *args: str) -> list[dict]:
    # No subprocess timeout: the suite's per-test limit (pytest-timeout) guards against a hang.
    proc = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=REPO, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.mark.timeout(1800)
# A bench smoke test (cpu-small 38 s, gpu-small 164 s on 2 cores): slow, still in CI.
@pytest.mark.slow
@pytest.mark.parametrize("preset", ["cpu-small", "gpu-small"])
def test_train_bench_uses_the_presets_recipe(preset):
    # The pipeline trains each preset with its recipe; the bench must measure the same thing.
    (report,) = bench("train.py", "--synthetic", "--preset", preset, "--block-size", "32", "--batch-size", "2",
                      "--steps", "2", "--minutes", "600", "--eval-windows", "4", "--no-compile")  # fmt: skip
    recipe = TrainConfig.for_preset(preset)
    assert report["preset"] == preset and report["steps"] == 2 and report["val_fraction"] == 1.0
    assert report["matrix_lr"] == recipe.matrix_lr
    assert report["batch_tokens"] == 2 * recipe.grad_accum * 32
    assert report["tokens_per_s"] > 0


def test_generate_bench_reports_both_paths():
    reports = bench("generate.py", "--new-tokens", "20", "--repeat", "1", "--block-size", "64")
    assert [r["block_size"] for r in reports] == [64]
    assert reports[0]["kv_cache_s"] > 0 and reports[0]["recompute_s"] > 0


def test_gpu_smoke_runs_its_checks_on_cpu_and_skips_the_cuda_only_ones(tmp_path):
    # The GPU smoke script is what a lent GPU runs first; on CPU its device-agnostic checks
    # must pass (so it has not rotted) and the CUDA-only ones say why they were skipped.
    out = tmp_path / "smoke.json"
    proc = subprocess.run([sys.executable, "bench/gpu_smoke.py", "--device", "cpu", "--no-compile", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    checks = json.loads(out.read_text())["checks"]
    status = {name: c["status"] for name, c in checks.items()}
    assert status == {"compile_bf16_train": "PASS", "fused_adamw": "SKIP", "pinned_batches": "SKIP",
                      "sdpa_dropout": "PASS", "resume_rng": "PASS", "cached_generation": "PASS",
                      "gpu_small_mfu": "SKIP"}, checks  # fmt: skip
    assert all("needs CUDA" in c["detail"] for c in checks.values() if c["status"] == "SKIP")
    assert "max loss difference 0.0e+00" in checks["resume_rng"]["detail"]  # exact on CPU
