"""Dropout that is cheap on a CPU: `Dropout`, a drop-in `nn.Dropout`.

Why not `nn.Dropout` everywhere: on a CPU, PyTorch's dropout draws one Bernoulli sample per element
from its mt19937 generator, on one core. In D2L's configuration (dropout 0.1 on embeddings,
attention weights and MLPs) that sampling took 35% of a bf16 training step on this course's 2-core
CPU (torch.profiler: `aten::bernoulli_`, 208 ms of 595 ms per batch of 128), more than all the
matrix products.

What this one does on a CPU, in training: take 64 random bits at a time from numpy's SFC64
generator (about 4x faster per bit than torch's CPU generator here) and cut them into four 16-bit
integers; keep an element when its 16-bit number is at or above round(p * 2^16), so it is dropped
with probability p to within 2^-17; scale the kept ones by 1 / (1 - p). For a 4,736 x 2,048 bf16
activation this took 29 ms against `nn.Dropout`'s 82 ms. Backward multiplies by the same mask, as
`nn.Dropout` does. Everywhere else (CUDA, whose Philox generator is fast; evaluation; p = 0) it is
`nn.Dropout` itself.

Each mask's generator is seeded with one number drawn from PyTorch's default generator, so
`torch.manual_seed` makes the masks reproducible and a saved RNG state resumes them exactly, as
with `nn.Dropout` (the masks themselves differ from `nn.Dropout`'s).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

_LEVELS = 1 << 16  # 16-bit uniforms


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool CPU tensor of `shape`: True (keep) with probability 1 - p, from 16-bit uniforms."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    n = math.prod(shape)
    seed = int(torch.randint(0, (1 << 63) - 1, (), dtype=torch.int64))  # from torch's generator
    words = np.random.SFC64(seed).random_raw((n + 3) // 4)  # (ceil(n / 4),) uint64
    u = torch.from_numpy(words.view(np.int16)[:n]).view(shape)  # uniform on [-2^15, 2^15)
    threshold = round(p * _LEVELS) - (1 << 15)  # P(u < threshold) = round(p * 2^16) / 2^16
    return u >= threshold


class Dropout(nn.Dropout):
    """`nn.Dropout` with a faster mask on CPU tensors in training (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or not x.is_floating_point():
            return super().forward(x)
        if self.p == 1.0:
            return x * 0.0
        keep = keep_mask(x.shape, self.p).to(x.dtype)  # 0 or 1, exact in any float dtype
        scale = 1.0 / (1.0 - self.p)  # a Python float: applied at full precision, even to bf16 values
        out = x.mul_(keep) if self.inplace else x * keep
        return out.mul_(scale)
