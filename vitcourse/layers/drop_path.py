"""Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth"), as DeiT, CCT and the
small-data ViTs use it: in training, drop a residual branch for a whole sample at once.

    x = x + DropPath(branch(x))   # per sample: branch(x) / keep with probability keep, else 0

Dropout zeroes single activations; DropPath zeroes the whole branch of one image, so that image
goes through a shallower network for this step. Dividing by keep = 1 - p keeps the expected
output unchanged, so evaluation (where nothing is dropped) needs no rescaling. `drop_path_rates`
is the usual rule for a stack: the rate grows linearly from 0 at the first block to the maximum
at the last, as deeper blocks are the ones a shallower network can do without.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _check_rate(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {p!r}")
    return float(p)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each sample of `x` (dim 0) with probability p, scale the kept ones by 1 / (1 - p).

    Args:
        x: (B, ...) a residual branch's output.
        p: drop probability in [0, 1).
        training: False (evaluation) or p == 0 returns `x` itself.
    Returns:
        (B, ...) like `x`.
    """
    p = _check_rate("p", p)
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    # One Bernoulli draw per sample, broadcast over every other dim: (B, 1, 1, ...).
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def drop_path_rates(depth: int, max_rate: float) -> list[float]:
    """Per-block drop rates for a stack of `depth` blocks: linear from 0 (first) to `max_rate` (last).

    The rule of timm, DeiT and CCT (`torch.linspace(0, max_rate, depth)`); depth 1 gives [0.0].
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    max_rate = _check_rate("max_rate", max_rate)
    if depth == 1:
        return [0.0]
    return [max_rate * i / (depth - 1) for i in range(depth)]


class DropPath(nn.Module):
    """`drop_path` as a module: identity in eval mode and when p = 0; no parameters.

    Args:
        p: probability of dropping a sample's branch, in [0, 1).
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = _check_rate("p", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x  # every encoder block calls this twice: skip the checks when it does nothing
        return drop_path(x, self.p, True)  # (B, ...) -> (B, ...)

    def extra_repr(self) -> str:
        return f"p={self.p}"
