"""Normalisation layers for (B, N, D) tokens, the norm choices of a MetaFormer block.

What each one averages over, for tokens x of shape (B, N, D):

    "layernorm"  each token on its own, over its D channels (ViT, Mixer): 2·B·N statistics
    "groupnorm"  each image on its own, over all N tokens and D channels: GroupNorm with one group,
                 PoolFormer's norm (Yu et al. 2022); 2·B statistics
    "batchnorm"  each channel, over the whole batch and all tokens (B, N): 2·D statistics, kept as
                 running averages for evaluation (BatchNorm1d on the B·N tokens)
    "bn_ffn"     Yao et al. 2021, "Leveraging Batch Normalization for Vision Transformers": every
                 LayerNorm becomes "batchnorm" AND one more BatchNorm goes inside the FFN, between
                 its two Linear layers (here: fc1 -> BatchNorm -> GELU -> fc2, the conv -> BN -> act
                 order of CNNs; the paper only says "in-between the two linear layers"). The paper
                 found that swapping LN for BN alone ("batchnorm") often crashes training, blaming
                 the un-normalised FFN; the extra BN is what made the pure-BN ViT train.

All four have one weight and one bias per channel, so swapping norms changes no parameter count
except "bn_ffn", which adds 2 x the FFN's hidden width per block.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("layernorm", "groupnorm", "batchnorm", "bn_ffn")

# Each library's usual epsilon: timm and the ViT paper's code use 1e-6 for LayerNorm; PyTorch's
# GroupNorm and BatchNorm default to 1e-5, which timm's PoolFormer keeps.
DEFAULT_EPS = {"layernorm": 1e-6, "groupnorm": 1e-5, "batchnorm": 1e-5, "bn_ffn": 1e-5}


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm over tokens: per channel, statistics over the batch and the token axis (B, N).

    In training it normalises with the batch's statistics and updates the running mean and
    variance; in eval mode it uses the running ones, so an image's output does not depend on the
    rest of its batch. Accepts (B, N, D) tokens or (B, D) pooled features.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return super().forward(x)  # (B, D)
        if x.ndim != 3:
            raise ValueError(f"TokenBatchNorm expects (B, N, D) tokens or (B, D) features, got {tuple(x.shape)}")
        b, n, d = x.shape
        return super().forward(x.reshape(b * n, d)).view(b, n, d)  # (B*N, D) -> (B, N, D)


class TokenGroupNorm(nn.GroupNorm):
    """GroupNorm with one group on (B, N, D) tokens: each image normalised over all its tokens and
    channels, then a per-channel scale and shift. The same numbers as `nn.GroupNorm(1, D)` on the
    (B, D, H, W) map the tokens came from (the mean and variance do not depend on the layout)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__(1, dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return super().forward(x)  # (B, D): group norm over D
        if x.ndim != 3:
            raise ValueError(f"TokenGroupNorm expects (B, N, D) tokens or (B, D) features, got {tuple(x.shape)}")
        # group_norm wants channels second: (B, N, D) -> (B, D, N) -> back
        return F.group_norm(x.transpose(1, 2), 1, self.weight, self.bias, self.eps).transpose(1, 2)


def _check_name(name: str) -> str:
    if name not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {name!r}")
    return name


def make_norm(name: str, dim: int, eps: float | None = None) -> nn.Module:
    """The norm `name` (one of NORMS) for D=`dim` channels; eps None = that norm's DEFAULT_EPS."""
    eps = DEFAULT_EPS[_check_name(name)] if eps is None else eps
    if name == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    if name == "groupnorm":
        return TokenGroupNorm(dim, eps=eps)
    return TokenBatchNorm(dim, eps=eps)  # "batchnorm", and "bn_ffn" outside the FFN


def ffn_norm(name: str, hidden: int, eps: float | None = None) -> nn.Module | None:
    """The norm between the FFN's two Linear layers: a BatchNorm for "bn_ffn", else None."""
    if _check_name(name) != "bn_ffn":
        return None
    return TokenBatchNorm(hidden, eps=DEFAULT_EPS[name] if eps is None else eps)
