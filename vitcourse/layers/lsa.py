"""Locality Self-Attention (Lee, Lee & Song 2021, "Vision Transformer for Small-Size Datasets", §3.3).

Trained on little data, a ViT's attention stays nearly uniform: softmax(q kᵀ / √d) is too smooth
to single out the few tokens that matter, and a token's score with itself (q_i · k_i, usually the
largest) takes much of the weight. LSA makes two changes to standard attention:

- a learnable temperature τ (one per head, started at √d, so LSA starts as standard attention):
  logits = q kᵀ / τ; training lowers τ where sharper attention helps;
- diagonal masking: the logit of each token with itself is set to -inf before the softmax, so
  every token attends only to *other* tokens (its own value still reaches it via the residual).

    weights = softmax(q kᵀ / τ + M),   M_ij = -inf if i == j else 0

The paper writes one τ; its code learns one per head, as here (h parameters per layer).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .attention import MultiHeadSelfAttention


def diagonal_mask(n: int, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """(N, N) mask that keeps every token from attending to itself.

    bool: True = may attend (the convention of `F.scaled_dot_product_attention`), False on the
    diagonal. A float dtype: 0 off the diagonal and -inf on it, to be added to the logits.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2 (with the diagonal masked, one token would have "
                         f"nothing to attend to), got {n!r}")
    eye = torch.eye(n, dtype=torch.bool, device=device)  # (N, N)
    if dtype == torch.bool:
        return ~eye
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be torch.bool or a floating-point dtype, got {dtype}")
    return torch.zeros(n, n, dtype=dtype, device=device).masked_fill(eye, float("-inf"))


def locality_attention_weights(q: torch.Tensor, k: torch.Tensor, temperature: torch.Tensor | float
                               ) -> torch.Tensor:
    """softmax(q kᵀ / τ) over the keys with the diagonal masked: (..., N, d), (..., N, d) -> (..., N, N).

    Args:
        q, k: queries and keys of the same N tokens.
        temperature: τ, a float or a tensor broadcastable to (..., N, d) (e.g. (h, 1, 1) per head).
    Returns:
        (..., N, N) weights; each row sums to 1 and the diagonal is exactly 0.
    """
    if q.shape != k.shape or q.ndim < 2:
        raise ValueError(f"q and k must be (..., N, d) tensors of the same shape, got q {tuple(q.shape)} "
                         f"and k {tuple(k.shape)}")
    scores = (q / temperature) @ k.transpose(-2, -1)  # (..., N, N)
    scores = scores.masked_fill(~diagonal_mask(q.shape[-2], q.device), float("-inf"))
    return scores.softmax(dim=-1)


class LocalitySelfAttention(MultiHeadSelfAttention):
    """Multi-head self-attention with a learnable per-head temperature and the diagonal masked.

    The same q, k, v and output projections as `MultiHeadSelfAttention` (so the same parameter
    names, plus `temperature`), the same `fused` switch and the same `probe`, called with the
    (B, h, N, N) weights on the explicit path: `capture_attention` works unchanged.

    Args:
        dim, heads, qkv_bias, attn_dropout, proj_dropout, fused, proj_bias: as `MultiHeadSelfAttention`.
        float_mask: the fused path's mask as a float 0 / -inf tensor added to the logits (True) or
            as a bool "may attend" tensor (False); the two give the same numbers.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0,
                 proj_dropout: float = 0.0, fused: bool = True, proj_bias: bool = True,
                 float_mask: bool = False) -> None:
        super().__init__(dim, heads, qkv_bias=qkv_bias, attn_dropout=attn_dropout,
                         proj_dropout=proj_dropout, fused=fused, proj_bias=proj_bias)
        # τ = √d: at initialisation the logits are standard attention's q kᵀ / √d.
        self.temperature = nn.Parameter(torch.full((heads,), self.head_dim ** 0.5))
        self.float_mask = bool(float_mask)

    def forward(self, x: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D), N >= 2. `fused` overrides `self.fused` for this call."""
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"attention expects tokens (B, N, D) with D={self.dim}, got {shape}")
        n = x.shape[1]
        if n < 2:
            raise ValueError(f"locality self-attention needs at least 2 tokens (each attends only to "
                             f"the others), got x of shape {tuple(x.shape)}")
        use_fused = self.fused if fused is None else fused
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d",
                            three=3, h=self.heads)  # each (B, h, N, D/h)
        tau = self.temperature.view(1, self.heads, 1, 1)  # (1, h, 1, 1): one τ per head
        if use_fused:
            # SDPA's `scale` is a Python float: one for all heads, and τ would not get a gradient
            # through it. Dividing q by τ first is the same logit, q kᵀ / τ, so pass scale=1.
            mask = diagonal_mask(n, x.device, q.dtype if self.float_mask else torch.bool)  # (N, N)
            out = F.scaled_dot_product_attention(
                q / tau, k, v, attn_mask=mask, scale=1.0,
                dropout_p=self.attn_dropout if self.training else 0.0)
        else:
            weights = self.probe(locality_attention_weights(q, k, tau))  # (B, h, N, N)
            out = self.attn_drop(weights) @ v
        out = rearrange(out, "b h n d -> b n (h d)")  # (B, N, D)
        return self.proj_drop(self.proj(out))
