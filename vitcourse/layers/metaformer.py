"""The MetaFormer block (Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022):

    x = x + LS1 · TokenMixer(Norm1(x))
    x = x + LS2 · MLP(Norm2(x))

The ViT's encoder block with its attention replaced by a pluggable token mixer. With
mixer="attention" and norm="layernorm" it is ViT's `EncoderBlock`, parameter for parameter;
"pooling" makes it PoolFormer's, "mlp" MLP-Mixer's, "identity" the floor that mixes nothing. So the
four families differ in exactly one argument, and any difference in accuracy is that argument's.

LS is layer scale (Touvron et al. 2021, CaiT): a learned per-channel factor, started small (1e-5
in PoolFormer), so a deep stack starts close to the identity. Off (None) in the ViT and the Mixer.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .attention import MultiHeadSelfAttention
from .blocks import MLP
from .mixers import make_mixer
from .norms import ffn_norm, make_norm


class LayerScale(nn.Module):
    """x · scale, one learned factor per channel, started at `init` (timm's `Scale`, CaiT's LS)."""

    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale  # (B, N, D) * (D,)


class MetaFormerBlock(nn.Module):
    """Pre-norm block: Norm -> token mixer -> [layer scale] -> residual, Norm -> MLP -> [layer scale] -> residual.

    Args:
        dim: token width D.
        grid_size: (H, W) of the token grid (N = H·W), for the mixers that work on it.
        mixer: one of `vitcourse.layers.mixers.MIXERS`.
        norm: one of `vitcourse.layers.norms.NORMS` ("bn_ffn" also puts a BatchNorm inside the MLP).
        heads, qkv_bias, attn_dropout, fused: for the attention mixer.
        mlp_ratio: the MLP's hidden width is int(mlp_ratio * dim) (timm's rounding).
        token_mlp_ratio: the token MLP's hidden width / dim ("mlp" mixer).
        pool_size: the pooling window ("pooling") or kernel ("dwconv").
        norm_eps: epsilon of every norm; None = each norm's default (LayerNorm 1e-6, others 1e-5).
        layer_scale_init: start value of the layer scales; None = no layer scale.
        dropout: after the mixer's projection and inside the MLP.
    """

    def __init__(self, dim: int, grid_size: tuple[int, int], mixer: str = "attention",
                 norm: str = "layernorm", *, heads: int = 1, mlp_ratio: float = 4.0,
                 token_mlp_ratio: float = 0.5, pool_size: int = 3, qkv_bias: bool = True,
                 norm_eps: float | None = None, layer_scale_init: float | None = None,
                 dropout: float = 0.0, attn_dropout: float = 0.0, fused: bool = True) -> None:
        super().__init__()
        self.mixer_name = mixer
        self.norm1 = make_norm(norm, dim, norm_eps)
        self.token_mixer = make_mixer(mixer, dim, grid_size, heads=heads, qkv_bias=qkv_bias,
                                      attn_dropout=attn_dropout, dropout=dropout, fused=fused,
                                      token_mlp_ratio=token_mlp_ratio, pool_size=pool_size)
        self.layer_scale1 = nn.Identity() if layer_scale_init is None else LayerScale(dim, layer_scale_init)
        self.norm2 = make_norm(norm, dim, norm_eps)
        hidden = int(mlp_ratio * dim)
        self.mlp = MLP(dim, hidden, dropout, norm=ffn_norm(norm, hidden, norm_eps))
        self.layer_scale2 = nn.Identity() if layer_scale_init is None else LayerScale(dim, layer_scale_init)

    @property
    def attn(self) -> MultiHeadSelfAttention | None:
        """The attention mixer (hook `.attn.probe` for its maps), or None for the other mixers."""
        return self.token_mixer if isinstance(self.token_mixer, MultiHeadSelfAttention) else None

    def forward(self, x: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D); `fused` overrides the attention path for this call (other mixers ignore it)."""
        y = self.norm1(x)
        y = self.token_mixer(y, fused=fused) if self.attn is not None else self.token_mixer(y)
        x = x + self.layer_scale1(y)
        return x + self.layer_scale2(self.mlp(self.norm2(x)))
