"""Token bookkeeping shared by the attention analyses: a stack of per-layer attention maps,
the number of prefix (class) tokens, the patch grid."""
from __future__ import annotations

import math
from typing import Sequence

import torch

AttentionList = Sequence[torch.Tensor]  # per layer: (B, heads, N, N)


def check_attentions(attentions: AttentionList, name: str = "attentions") -> torch.Tensor:
    """Stack a list of per-layer (B, H, N, N) maps into (L, B, H, N, N), with checks."""
    if isinstance(attentions, torch.Tensor):
        attentions = [attentions] if attentions.dim() == 4 else list(attentions)
    if len(attentions) == 0:
        raise ValueError(f"{name} must hold at least one layer's (B, heads, N, N) weights, got none")
    shapes = {tuple(a.shape) for a in attentions}
    first = tuple(attentions[0].shape)
    if len(shapes) != 1 or len(first) != 4 or first[-1] != first[-2]:
        raise ValueError(f"{name} must be (B, heads, N, N) per layer, all the same shape; got "
                         f"{sorted(shapes)}")
    return torch.stack([a.float() for a in attentions])  # (L, B, H, N, N)


def is_square(n: int) -> bool:
    return n > 0 and math.isqrt(n) ** 2 == n


def infer_prefix_tokens(num_tokens: int) -> int:
    """Guess the number of prefix (class) tokens from N when the patch grid is square: 0 if N is a
    square, 1 if N - 1 is. Pass `num_prefix_tokens` explicitly for non-square grids."""
    if is_square(num_tokens):
        return 0
    if is_square(num_tokens - 1):
        return 1
    raise ValueError(f"cannot infer num_prefix_tokens from N={num_tokens} tokens (neither N nor N-1 is "
                     "a square number); pass num_prefix_tokens explicitly")



def check_grid(grid: Sequence[int]) -> tuple[int, int]:
    if (not isinstance(grid, (tuple, list)) or len(grid) != 2
            or not all(isinstance(g, int) and g > 0 for g in grid)):
        raise ValueError(f"grid must be (rows, cols) of positive ints, got {grid!r}")
    return int(grid[0]), int(grid[1])
