"""Scaled dot-product attention and multi-head self-attention (Vaswani et al. 2017, §3.2).

Two paths compute the same thing: PyTorch's fused `F.scaled_dot_product_attention` (fast, never
materialises the N x N weights) and an explicit softmax(q kᵀ / √d) v that does, for teaching and for
attention maps. The explicit path passes the weights through an `AttentionProbe`, an identity
module: register a forward hook on it to capture attention maps without changing `forward`'s output.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from einops import rearrange

from .dropout import Dropout


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d) v, written out.

    Args:
        q: (..., Nq, d) queries.  k: (..., Nk, d) keys.  v: (..., Nk, dv) values.
        mask: optional, broadcastable to (..., Nq, Nk): bool (True = may attend, as in
            `F.scaled_dot_product_attention`) or float (added to the scores).
    Returns:
        (out (..., Nq, dv), weights (..., Nq, Nk)); each row of `weights` sums to 1.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.ndim < 2:
            raise ValueError(f"{name} must be a tensor with at least 2 dims (..., N, d), got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dim d, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of tokens, got k {tuple(k.shape)} and v {tuple(v.shape)}")
    weights = attention_weights(q, k, mask)  # (..., Nq, Nk)
    return weights @ v, weights  # (..., Nq, dv), (..., Nq, Nk)


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ / √d) over the keys: (..., Nq, d), (..., Nk, d) -> (..., Nq, Nk)."""
    # Dividing by √d keeps the scores' variance ~1 for unit-variance q, k, so softmax does not saturate.
    scores = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)  # (..., Nq, Nk)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    return scores.softmax(dim=-1)


class AttentionProbe(nn.Module):
    """Identity on the attention weights (B, heads, N, N); a place to hang forward hooks."""

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        return weights


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention: one Linear makes q, k, v for all heads, one Linear mixes them back.

    Args:
        dim: token width D; must be divisible by `heads`.
        heads: number of heads h; each works in D/h dimensions.
        qkv_bias: whether the q, k, v projection has a bias (ViT: yes).
        attn_dropout: dropout on the attention weights.
        proj_dropout: dropout after the output projection.
        fused: True uses `F.scaled_dot_product_attention`; False the explicit path that calls `.probe`.
        proj_bias: bias in the output projection (ViT: yes; D2L's attention: no).
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0,
                 proj_dropout: float = 0.0, fused: bool = True, proj_bias: bool = True) -> None:
        super().__init__()
        for name, val in (("dim", dim), ("heads", heads)):
            if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        for name, p in (("attn_dropout", attn_dropout), ("proj_dropout", proj_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p!r}")
        self.dim = dim
        self.heads = heads
        self.head_dim = dim // heads
        self.attn_dropout = attn_dropout
        self.fused = bool(fused)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = Dropout(attn_dropout)
        self.probe = AttentionProbe()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = Dropout(proj_dropout)

    def forward(self, x: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D). `fused` overrides `self.fused` for this call (the ViT's "auto")."""
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"attention expects tokens (B, N, D) with D={self.dim}, got {shape}")
        use_fused = self.fused if fused is None else fused
        # Same layout as timm and nn.MultiheadAttention: the 3D outputs are [q | k | v], each split
        # into `heads` contiguous chunks of head_dim, so their weights load unchanged.
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d",
                            three=3, h=self.heads)  # each (B, h, N, D/h)
        if use_fused:
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        else:
            weights = self.probe(attention_weights(q, k))  # (B, h, N, N)
            weights = self.attn_drop(weights)
            out = weights @ v
        out = rearrange(out, "b h n d -> b n (h d)")  # (B, N, D)
        return self.proj_drop(self.proj(out))


ATTN_IMPLS: tuple[str, ...] = ("auto", "fused", "explicit")


def set_attn_impl(blocks, impl: str) -> None:
    """Switch every block's attention to `impl`: "fused" (SDPA), "explicit" (hookable weights) or
    "auto" (the model decides per forward from the input's device: fused on CUDA only). Blocks
    without attention (a MetaFormer's pooling mixer) are left alone."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f"impl must be one of {ATTN_IMPLS}, got {impl!r}")
    for block in blocks:
        if getattr(block, "attn", None) is not None:
            block.attn.fused = impl != "explicit"


class AttentionSwitch:
    """Mixin for a model with `.blocks` and a dataclass `.config` holding `attn_impl`."""

    def set_attn_impl(self, impl: str):
        """Choose the attention path: "fused" (SDPA), "explicit" (hookable weights) or "auto"
        (fused on CUDA, explicit elsewhere, decided from the input's device at each forward).
        Returns the model."""
        set_attn_impl(self.blocks, impl)
        self.config = dataclasses.replace(self.config, attn_impl=impl)
        return self
