"""GPU smoke test: every CUDA-only path of training and generation in one short command.

    python bench/gpu_smoke.py --out smoke.json                 # a CUDA machine: 2-4 minutes
    python bench/gpu_smoke.py --device cpu --no-compile        # the checks that apply on CPU

One line per check, PASS / FAIL / SKIP (and why); exit status 1 if any check failed. The
CPU suite cannot reach these paths (``cuda.set_device``, fused AdamW, pinned batches, the
CUDA RNG in a checkpoint, SDPA with dropout, bf16 autocast, MFU against the GPU's peak);
this script is what a lent GPU runs first, before the budgeted run (BENCHMARKS.md "GPU"):

    compile_bf16_train  a compiled bf16 run on patterned random tokens, dropout 0.1: finite
                        and falling loss, tokens/s, MFU against PEAK_BF16_FLOPS
    fused_adamw         the run's AdamW is torch's fused CUDA kernel
    pinned_batches      BatchSampler's pinned, non-blocking copy lands on the device intact
    sdpa_dropout        SDPA drops in train mode, is deterministic in eval mode, and equals
                        the written-out attention (lexgpt.modeling.model.causal_attention)
    resume_rng          crashed after a checkpoint and resumed: the uninterrupted losses, and
                        the checkpoint holds the device's RNG state
    cached_generation   greedy generation with the KV cache gives the tokens without it
    gpu_small_mfu       gpu-small for --mfu-seconds: tokens/s and MFU (goal >= 0.45)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from lexgpt.data.dataloader import BatchSampler
from lexgpt.generation.generate import generate
from lexgpt.modeling.checkpoint import load_model
from lexgpt.modeling.model import GPT, GPTConfig, causal_attention
from lexgpt.training.device import autocast_for, peak_flops, pick_device
from lexgpt.training.optim import build_optimizers
from lexgpt.training.train import TrainConfig, train

VOCAB, BLOCK = 512, 256


class Skip(Exception):
    """A check that does not apply on this device."""


class Crash(Exception):
    pass


def patterned_shards(folder: Path, n_train: int = 400_000) -> np.ndarray:
    """Random tokens with a repeating motif under 10% noise: a loss that can fall."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    motif = rng.integers(1, VOCAB, size=997)
    for name, n in (("train.bin", n_train), ("val.bin", n_train // 10)):
        ids = np.resize(motif, n)
        noise = rng.random(n) < 0.1
        ids[noise] = rng.integers(0, VOCAB, size=noise.sum())
        ids.astype("<u2").tofile(folder / name)
    (folder / "manifest.json").write_text(json.dumps({"vocab_size": VOCAB}))
    return np.full(VOCAB, 3, dtype=np.int64)


@contextlib.contextmanager
def exact_fp32():
    """float32 matmuls without TF32 (training turns it on for CUDA), for comparisons to 1e-4."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def max_loss_gap(a, b) -> float:
    loss = lambda r: np.array([h["train_loss"] for h in r.history if "train_loss" in h])  # noqa: E731
    return float(np.abs(loss(a) - loss(b)).max())


class Smoke:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.device = pick_device(args.device)
        self.cuda = self.device.type == "cuda"
        self.token_chars = patterned_shards(work / "data")
        self.model_config = GPTConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=4, n_embd=128,
                                      dropout=0.1)  # fmt: skip
        self.trained: Path | None = None

    def config(self, **kw) -> TrainConfig:
        base = dict(max_steps=60, max_minutes=None, batch_size=16, warmup_steps=5, log_every=5,
                    eval_every=10**6, eval_windows=8, checkpoint_every=10**6, checkpoint_minutes=10**6,
                    device=self.args.device, compile=self.args.compile, seed=0)  # fmt: skip
        return TrainConfig(**{**base, **kw})

    def needs_cuda(self) -> None:
        if not self.cuda:
            raise Skip(f"needs CUDA (device is {self.device})")

    def compile_bf16_train(self) -> str:
        dtype, _ = autocast_for("auto", self.device)
        if self.cuda and dtype != "bfloat16":
            raise AssertionError(f"auto precision on CUDA is {dtype}, not bfloat16")
        res = train(self.model_config, self.config(), self.work / "data", self.work / "run", self.token_chars,
                    progress=False)  # fmt: skip
        losses = [h["train_loss"] for h in res.history if "train_loss" in h]
        assert all(np.isfinite(losses)), losses
        assert losses[-1] < losses[0] - 1.0, f"loss did not fall: {losses[0]:.3f} -> {losses[-1]:.3f}"
        if self.cuda and peak_flops(self.device) is not None:
            assert res.mfu is not None and 0 < res.mfu < 1, res.mfu
        self.trained = res.weights_path
        mfu = "n/a (peak unknown)" if res.mfu is None else f"{res.mfu:.3f}"
        return (f"{dtype}, compile={self.args.compile}, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
                f"{res.tokens_per_s:,.0f} tokens/s, MFU {mfu}")

    def fused_adamw(self) -> str:
        self.needs_cuda()
        adamw = build_optimizers(GPT(self.model_config).to(self.device), device_type="cuda")[0]
        assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults.get("fused") is True, adamw.defaults
        return "AdamW(fused=True)"

    def pinned_batches(self) -> str:
        self.needs_cuda()
        sampler = BatchSampler(self.work / "data" / "train.bin", BLOCK, 8, seed=0)
        x, y = sampler.batch(3, self.device)
        x_cpu, y_cpu = sampler.batch(3, torch.device("cpu"))
        torch.cuda.synchronize()
        assert x.device.type == "cuda" and torch.equal(x.cpu(), x_cpu) and torch.equal(y.cpu(), y_cpu)
        return "pinned copy equals the CPU batch"

    def sdpa_dropout(self) -> str:
        torch.manual_seed(0)
        q, k, v = (torch.randn(2, 4, 64, 32, device=self.device) for _ in range(3))
        with exact_fp32():
            sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.testing.assert_close(sdpa, causal_attention(q, k, v), rtol=2e-4, atol=2e-4)
        model = GPT(self.model_config).to(self.device)
        for p in model.parameters():  # zero-initialised projections would hide the attention
            torch.nn.init.normal_(p, 0, 0.05)
        idx = torch.randint(0, VOCAB, (2, BLOCK), device=self.device)
        with torch.no_grad():
            model.train()
            a, b = model(idx)[0], model(idx)[0]
            model.eval()
            c, d = model(idx)[0], model(idx)[0]
        assert not torch.equal(a, b), "dropout 0.1 in train mode changed nothing"
        assert torch.equal(c, d), "eval mode is not deterministic"
        path = "SDPA" if self.cuda else "written-out attention (CPU, T <= 512)"
        return f"{path}: train-mode forwards differ, eval-mode equal; SDPA == written out"

    def resume_rng(self) -> str:
        cfg = self.config(max_steps=20, checkpoint_every=8, log_every=1)
        data, chars = self.work / "data", self.token_chars
        full = train(self.model_config, cfg, data, self.work / "full", chars, progress=False)
        # CUDA's atomics (embedding backward) may reorder float sums: two identical runs give
        # the noise floor. A lost RNG state (other dropout masks) moves the losses by ~1e-2.
        noise = max_loss_gap(full, train(self.model_config, cfg, data, self.work / "again", chars,
                                         progress=False)) if self.cuda else 0.0  # fmt: skip

        def crash(step, metrics):
            if step == 12:  # after the step-8 checkpoint
                raise Crash

        try:
            train(self.model_config, cfg, data, self.work / "cut", chars, on_metrics=crash, progress=False)
        except Crash:
            pass
        ckpt = torch.load(self.work / "cut" / "checkpoint.pt", weights_only=True)
        assert ckpt["step"] == 8, ckpt["step"]
        if self.cuda:
            assert "cuda" in ckpt["rng"][0], "the checkpoint has no CUDA RNG state"
        resumed = train(self.model_config, cfg, data, self.work / "cut", chars, progress=False)
        diff = max_loss_gap(resumed, full)
        tolerance = 4 * noise + 1e-4 if self.cuda else 0.0  # exact on CPU
        assert diff <= tolerance, f"resumed losses differ by {diff:.2e} (two identical runs: {noise:.2e})"
        return f"20 steps, crash at 12, resumed from 8: max loss difference {diff:.1e} (noise {noise:.1e})"

    def cached_generation(self) -> str:
        if self.trained is None:
            raise Skip("compile_bf16_train did not produce weights")
        model = load_model(self.trained, device=self.device)
        prompt = list(range(1, 40))
        with exact_fp32():  # TF32 noise could flip a near-tie between two greedy candidates
            with_cache = list(generate(model, prompt, 300, temperature=0))  # slides past block_size
            without = list(generate(model, prompt, 300, temperature=0, use_cache=False))
        assert with_cache == without, "the KV cache changed greedy tokens"
        return f"300 greedy tokens equal with and without the cache on {self.device}"

    def gpu_small_mfu(self) -> str:
        self.needs_cuda()
        # bench/train.py is the one place tokens/s and MFU are measured; run it as documented.
        proc = subprocess.run([sys.executable, str(Path(__file__).with_name("train.py")), "--synthetic",
                               "--preset", "gpu-small", "--seconds", str(self.args.mfu_seconds)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        report = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
        return f"{report['steps']} steps, {report['tokens_per_s']:,} tokens/s, MFU {report.get('mfu')}"


CHECKS = ("compile_bf16_train", "fused_adamw", "pinned_batches", "sdpa_dropout", "resume_rng",
          "cached_generation", "gpu_small_mfu")  # fmt: skip


def run_checks(smoke: Smoke, names: tuple[str, ...]) -> dict[str, dict]:
    results = {}
    for name in names:
        start = time.perf_counter()
        try:
            status, detail = "PASS", getattr(smoke, name)()
        except Skip as why:
            status, detail = "SKIP", str(why)
        except Exception as err:  # a smoke test reports every failure, then exits 1
            status, detail = "FAIL", f"{type(err).__name__}: {err}"
            traceback.print_exc()
        results[name] = {"status": status, "detail": detail, "seconds": round(time.perf_counter() - start, 1)}
        print(f"{status:4}  {name:18}  {detail}  ({results[name]['seconds']} s)", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto: CUDA if present")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--mfu-seconds", type=float, default=90, help="gpu-small's run (CUDA only)")
    p.add_argument("--only", nargs="*", choices=CHECKS, help="default: every check")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lexgpt-smoke-") as tmp:
        smoke = Smoke(args, Path(tmp))
        where = torch.cuda.get_device_name(smoke.device) if smoke.cuda else str(smoke.device)
        print(f"lexgpt GPU smoke on {where}, torch {torch.__version__}", flush=True)
        results = run_checks(smoke, tuple(args.only or CHECKS))
    if args.out:
        args.out.write_text(json.dumps({"device": where, "torch": torch.__version__, "checks": results}, indent=2))
    return 1 if any(r["status"] == "FAIL" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
