"""Mixed precision and compilation, chosen by the device.

- CUDA with bf16 (Ampere and newer): bf16 autocast, no gradient scaler (bf16 has fp32's range).
- CUDA without bf16 (Colab's T4): fp16 autocast with a `GradScaler`, because small fp16
  gradients underflow to zero unless the loss is scaled up first.
- CPU with AMX (Sapphire Rapids and newer Xeons): bf16 autocast, which doubled training speed
  there. AVX512-BF16 without AMX is slower in bf16 than in fp32 (see `settings.supports_bf16`).
- Anything else, or on request: fp32.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from ..settings import supports_bf16

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """Turn "auto" into "bf16", "fp16" or "fp32" for `device`; check explicit requests."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if supports_bf16(device) else "fp16"
        return "bf16" if device.type == "cpu" and supports_bf16(device) else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision='fp16' needs a GPU (fp16 autocast on CPU is slow and needs "
                         "loss scaling); use 'bf16' or 'fp32' on a CPU")
    return precision


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved `precision` ("bf16", "fp16" or "fp32" = no autocast)."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in _DTYPES:
        raise ValueError(f"precision must be resolved to 'bf16', 'fp16' or 'fp32', got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler:
    """A `GradScaler`, enabled only for fp16 (disabled it is a no-op with the same interface)."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))


def resolve_compile(compile: bool | str, device: torch.device | str) -> bool:
    """Whether to `torch.compile`: "auto" compiles on CUDA only (on this CPU it gave 0.96-1.04x
    and cost ~25 s of compiling, twice: once for training, once for evaluation shapes)."""
    if compile == "auto":
        return torch.device(device).type == "cuda"
    if not isinstance(compile, bool):
        raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
    return compile


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """`torch.compile(model)` when `enabled`, else the model itself."""
    return torch.compile(model) if enabled else model
