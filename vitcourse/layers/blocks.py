"""The Transformer encoder block as ViT uses it (Dosovitskiy et al. 2021, eqs. 2-3): pre-norm,

    x = x + MSA(LN(x))
    x = x + MLP(LN(x))

Normalising *before* each sub-layer (rather than after the residual sum, as the original
Transformer did) keeps an identity path from input to output, which is what lets deep stacks
train without a learning-rate warm-up trick to survive the first steps.

Two options for the small-data models of chapter 13, both off by default (so ViT, T2T and their
checkpoints are unchanged): `lsa` swaps the attention for Locality Self-Attention, `drop_path`
wraps both residual branches in stochastic depth:

    x = x + DropPath(MSA(LN(x)));  x = x + DropPath(MLP(LN(x)))
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .attention import MultiHeadSelfAttention
from .drop_path import DropPath
from .dropout import Dropout
from .lsa import LocalitySelfAttention


class MLP(nn.Module):
    """Two Linear layers with a GELU between them (exact erf GELU, as in the paper, timm and torchvision).

    Args:
        dim: input and output width D.
        hidden: width of the hidden layer (ViT: 4D).
        dropout: dropout after the GELU and after the second Linear.
        norm: an optional norm on the hidden layer, before the GELU (Yao et al.'s BatchNorm in
            the FFN, see `vitcourse.layers.norms`); None = none, as in ViT.
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, norm: nn.Module | None = None) -> None:
        super().__init__()
        for name, val in (("dim", dim), ("hidden", hidden)):
            if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.fc1 = nn.Linear(dim, hidden)
        self.norm = norm if norm is not None else nn.Identity()
        self.act = nn.GELU()
        self.drop1 = Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.norm(self.fc1(x))))  # (B, N, hidden)
        return self.drop2(self.fc2(x))  # (B, N, D)


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block: LN -> MSA -> residual, LN -> MLP -> residual.

    Args:
        dim: token width D.
        heads: attention heads (D must be divisible by it).
        mlp_dim: hidden width of the MLP.
        dropout: dropout after the attention projection and inside the MLP.
        attn_dropout: dropout on the attention weights.
        qkv_bias: bias in the q, k, v projection.
        norm_eps: LayerNorm epsilon (1e-6 as in the paper's JAX code, timm and torchvision).
        fused: attention path, see `MultiHeadSelfAttention`.
        proj_bias: bias in the attention's output projection.
        lsa: True uses `LocalitySelfAttention` (learned temperature, diagonal masked; h more
            parameters), False standard multi-head self-attention.
        drop_path: stochastic-depth rate of both residual branches (0 = off; no parameters either way).
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0,
                 attn_dropout: float = 0.0, qkv_bias: bool = True, norm_eps: float = 1e-6,
                 fused: bool = True, proj_bias: bool = True, lsa: bool = False,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        attention = LocalitySelfAttention if lsa else MultiHeadSelfAttention
        self.attn = attention(dim, heads, qkv_bias=qkv_bias, attn_dropout=attn_dropout,
                              proj_dropout=dropout, fused=fused, proj_bias=proj_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, mlp_dim, dropout)
        self.drop_path = DropPath(drop_path)  # identity when 0 or in eval mode

    def forward(self, x: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D); `fused` overrides the attention path for this call."""
        x = x + self.drop_path(self.attn(self.norm1(x), fused=fused))
        return x + self.drop_path(self.mlp(self.norm2(x)))
