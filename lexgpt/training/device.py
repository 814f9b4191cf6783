"""Where training runs: device, precision, CPU threads, distributed rank, peak FLOP/s.

>>> autocast_for("float32", torch.device("cpu"))
('float32', None)
"""

from __future__ import annotations

import functools
import os
import shutil
from typing import Any

import torch

# Dense bf16 tensor-core peaks (FLOP/s) for MFU. H100 SXM 989 T, PCIe 756 T (NVIDIA's
# datasheets, without sparsity); others: MFU is not reported rather than guessed.
PEAK_BF16_FLOPS = {"H100 SXM": 989e12, "H100 80GB HBM3": 989e12, "H100 PCIe": 756e12,
                   "H200": 989e12, "A100": 312e12}  # fmt: skip


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this rank's CUDA device, else Apple's MPS, else the CPU."""
    if name == "cuda":  # this rank's GPU: torchrun's ranks must not all land on the first one
        return torch.device("cuda", local_rank)
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where oneDNN runs bf16 matmuls natively (AVX512-BF16 / AMX), so bf16 pays."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls run natively and so beat float32: CUDA with bf16 support,
    CPUs with AVX512-BF16 or AMX. Decides bf16 autocast and Muon's iteration dtype."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def autocast_for(dtype: str, device: torch.device) -> tuple[str, Any]:
    """(dtype name, autocast context or None). ``auto``: bf16 where it is native
    (:func:`native_bf16`), else float32."""
    if dtype == "auto":
        dtype = "bfloat16" if native_bf16(device) else "float32"
    if dtype == "float32":
        return dtype, None
    if dtype == "bfloat16":
        return dtype, torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"dtype must be auto, float32 or bfloat16, got {dtype!r}")


def compile_pays(device: torch.device, setting: bool | None = None) -> bool:
    """Whether a run compiles: ``setting`` (a config's ``compile``) if given; by default on
    CUDA, and on CPUs where inductor can build its C++ kernels (a compiler on PATH).
    Measured on 2 CPU cores: 1.4-1.6x the eager step rate in bf16 on AMX, 1.08-1.2x in
    float32 on an AVX2-only box (BENCHMARKS.md)."""
    if setting is not None:
        return setting
    if device.type == "cuda":
        return True
    return device.type == "cpu" and any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))


def set_cpu_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads; 0 keeps torch's default (one per core). Returns it."""
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, if known (for MFU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None
