"""Course-wide settings: fast mode, device choice, seeding, Colab detection.

Nothing here changes global state on import; call the functions.
"""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

FAST_ENV = "VITCOURSE_FAST"
DEVICE_ENV = "VITCOURSE_DEVICE"


def is_fast() -> bool:
    """True when `VITCOURSE_FAST` is set to a true value (``make test`` sets it).

    Fast mode shrinks data and epochs but runs the same code path as a full run.
    """
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def fast_or(fast_value, full_value):
    """``fast_value`` in fast mode, else ``full_value`` (e.g. ``epochs = fast_or(1, 20)``)."""
    return fast_value if is_fast() else full_value


def in_colab() -> bool:
    """True when running inside Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def get_device(preferred: str | None = None) -> torch.device:
    """The device to train on: `preferred`, else `$VITCOURSE_DEVICE`, else cuda, mps, cpu.

    Args:
        preferred: "cuda", "cuda:1", "mps" or "cpu"; None picks the best available.
    """
    choice = preferred or os.environ.get(DEVICE_ENV) or None
    if choice is not None:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={choice!r} was asked for, but CUDA is not available here; "
                             "use 'cpu' or leave the device unset")
        if device.type == "mps" and not (hasattr(torch.backends, "mps")
                                         and torch.backends.mps.is_available()):
            raise ValueError(f"device={choice!r} was asked for, but MPS is not available here; "
                             "use 'cpu' or leave the device unset")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); returns a torch.Generator seeded the same."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def supports_bf16(device: torch.device | str) -> bool:
    """Whether bf16 autocast is worth using on `device` (CUDA with bf16 support, or a CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        # Native bf16 needs compute capability 8.0 (Ampere) or newer. Not
        # `torch.cuda.is_bf16_supported()`: by default it also counts emulated bf16 and says True
        # on a T4 (7.5), where bf16 is slow; there fp16 with a GradScaler is the right choice.
        if not torch.cuda.is_available():
            return False
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_capability(index) >= (8, 0)
    if device.type == "cpu":
        # bf16 autocast runs everywhere on CPU but pays only with AMX tiles. AVX512-BF16 alone is
        # not enough: on a 2-core Xeon VM with avx512_bf16 and no AMX, a bf16 matmul ran at 163
        # GFLOP/s against fp32's 294, and training was 10-25% slower in bf16 (vit_fmnist 1,225 vs
        # 1,398 images/s, resnet_fmnist 1,091 vs 1,383); with AMX, bf16 doubled training speed.
        # A flag, not a timing: a resumed run must pick the same precision as the run it resumes.
        try:
            caps = torch.backends.cpu.get_cpu_capability()
        except AttributeError:  # torch < 2.1
            return False
        return "AVX512" in caps.upper() and "amx_bf16" in cpu_flags()
    return False


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags from `cpuinfo` (empty where there is none, e.g. macOS)."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
