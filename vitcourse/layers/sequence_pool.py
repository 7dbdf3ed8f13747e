"""Sequence pooling (Hassani et al. 2021, "Escaping the Big Data Paradigm with Compact Transformers", §3):

    w = softmax_n(g(x_n))        g = Linear(D, 1): one score per token
    z = Σ_n w_n x_n              (B, N, D) -> (B, D)

A learned, input-dependent weighted average of the tokens: between the class token (one token
that must learn to gather everything) and mean pooling (every token weighted 1/N). No extra token
goes through the encoder, and it costs D + 1 parameters.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def sequence_pool(x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Average the tokens of `x` with weights softmax(scores) over the tokens.

    Args:
        x: (B, N, D) tokens.
        scores: (B, N) or (B, N, 1) one unnormalised score per token.
    Returns:
        (B, D).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be tokens (B, N, D), got {shape}")
    if isinstance(scores, torch.Tensor) and scores.ndim == 3 and scores.shape[-1] == 1:
        scores = scores.squeeze(-1)  # (B, N, 1) -> (B, N)
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != tuple(x.shape[:2]):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be (B, N) = {tuple(x.shape[:2])} or (B, N, 1) for x of shape "
                         f"{tuple(x.shape)}, got {shape}")
    weights = scores.softmax(dim=1)  # (B, N), each row sums to 1
    return torch.einsum("bn,bnd->bd", weights, x)  # (B, D)


class SeqPool(nn.Module):
    """Attention-weighted pooling of (B, N, D) tokens to (B, D), with a learned Linear(D, 1) score.

    Args:
        dim: token width D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.attention_pool = nn.Linear(dim, 1)  # CCT's name for g

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"SeqPool expects tokens (B, N, D) with D={self.dim}, got {shape}")

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The pooling weights (B, N): softmax over the tokens, each row sums to 1 (for plots)."""
        self._check(x)
        return self.attention_pool(x).squeeze(-1).softmax(dim=1)  # (B, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, D)."""
        self._check(x)
        return sequence_pool(x, self.attention_pool(x))  # scores (B, N, 1) -> (B, D)
