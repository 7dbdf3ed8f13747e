"""Compact Convolutional Transformer (Hassani et al. 2021, "Escaping the Big Data Paradigm with
Compact Transformers"): a ViT small enough to train from scratch on CIFAR-10 in a few hours.

    tokens = CCTTokenizer(x)                      conv -> ReLU -> maxpool, n times (B, N, D)
    z = encoder(tokens + E_pos)                   L pre-norm blocks, stochastic depth
    y = head(SeqPool(LN(z)))                      attention-weighted average, no class token

Three changes from ViT, each aimed at small data: convolutions make the tokens (locality and
overlap for free), sequence pooling replaces the class token, and the model is narrow (D = 128 to
384) with stochastic depth and attention dropout. Names: CCT-L/kxn is L blocks and n conv layers
of kernel k; `cct_7_3x1_32` is CCT-7/3x1 on 32x32 CIFAR.

One difference from the paper's code: its blocks normalise the residual stream itself before the
MLP (`src = norm1(src)`); here every block is the course's pre-norm `EncoderBlock`, which keeps the
identity path. The parameters are the same in number and shape (3,760,139 for CCT-7/3x1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
import torch.nn as nn

from ..layers.attention import ATTN_IMPLS, AttentionSwitch
from ..layers.blocks import EncoderBlock
from ..layers.conv_stem import CCTTokenizer, cct_conv_defaults, cct_grid_size
from ..layers.drop_path import drop_path_rates
from ..layers.dropout import Dropout
from ..layers.init import init_linear_and_norm_
from ..layers.patches import _pair
from ..layers.sequence_pool import SeqPool
from ..layers.validate import check_choice, check_image_batch, check_int, check_rate, config_or_default, plain_dict
from .preset import preset_builder

POS_EMBEDS = ("learned", "none")


@dataclass
class CCTConfig:
    """Every hyper-parameter of a CCT. Defaults are CCT-7/3x1 on 32x32 CIFAR-10 (`cct_7_3x1_32`)."""

    image_size: Union[int, tuple[int, int]] = 32  # input H (square) or (H, W); fixed once built
    in_channels: int = 3           # C: 3 for CIFAR, 1 for Fashion-MNIST
    num_classes: int = 10          # width of the head; 0 = no head (forward returns pooled features)
    dim: int = 256                 # D: token width (CCT-7: 256)
    depth: int = 7                 # L: encoder blocks (the "7" in CCT-7/3x1)
    heads: int = 4                 # attention heads; must divide dim
    mlp_ratio: float = 2.0         # MLP hidden width = int(mlp_ratio * dim) (CCT-7: 2)
    n_conv_layers: int = 1         # tokenizer conv-ReLU-pool layers (the "1" in 3x1)
    kernel_size: int = 3           # tokenizer convolution kernel (the "3" in 3x1)
    conv_stride: Optional[int] = None   # None = CCT's rule max(1, k // 2 - 1): 1 for k = 3
    conv_padding: Optional[int] = None  # None = CCT's rule max(1, k // 2): 1 for k = 3
    pooling_kernel_size: int = 3   # max-pool after each convolution: 3x3, stride 2, padding 1
    pooling_stride: int = 2
    pooling_padding: int = 1
    hidden_channels: int = 64      # tokenizer channels between convolutions (only with 2+ layers)
    pos_embed: str = "learned"     # "learned" (CCT's 'learnable') or "none"
    dropout: float = 0.0           # after the position embedding, attention projection and MLP layers
    attn_dropout: float = 0.1      # on the attention weights (CCT: 0.1)
    drop_path_rate: float = 0.1    # stochastic depth of the last block, linear from 0 (CCT: 0.1)
    qkv_bias: bool = False         # bias in the q, k, v projection (CCT: none)
    norm_eps: float = 1e-5         # LayerNorm epsilon (CCT: PyTorch's default)
    attn_impl: str = "auto"        # "fused" SDPA, "explicit" softmax (hookable), "auto": fused on CUDA

    def __post_init__(self) -> None:
        h, w = _pair("image_size", self.image_size)
        for name in ("in_channels", "dim", "depth", "heads", "n_conv_layers", "kernel_size",
                     "pooling_kernel_size", "pooling_stride", "hidden_channels"):
            check_int(name, getattr(self, name))
        check_int("num_classes", self.num_classes, minimum=0)
        check_int("pooling_padding", self.pooling_padding, minimum=0)
        if self.conv_stride is not None:
            check_int("conv_stride", self.conv_stride)
        if self.conv_padding is not None:
            check_int("conv_padding", self.conv_padding, minimum=0)
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads} "
                             f"(each head gets dim/heads channels)")
        if (isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float))
                or int(self.mlp_ratio * self.dim) < 1):
            raise ValueError(f"mlp_ratio must be a positive float with int(mlp_ratio * dim) >= 1 for "
                             f"dim={self.dim}, got {self.mlp_ratio!r}")
        for name in ("dropout", "attn_dropout", "drop_path_rate"):
            check_rate(name, getattr(self, name))
        for name, allowed in (("pos_embed", POS_EMBEDS), ("attn_impl", ATTN_IMPLS)):
            check_choice(name, getattr(self, name), allowed)
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)) or self.norm_eps <= 0:
            raise ValueError(f"norm_eps must be a positive float, got {self.norm_eps!r}")
        _ = self.grid_size  # a ValueError if the image is too small for the tokenizer
        if not isinstance(self.image_size, int):
            self.image_size = (h, w)

    @property
    def conv(self) -> tuple[int, int, int]:
        """(kernel, stride, padding) of the tokenizer's convolutions, CCT's rules filled in."""
        stride, padding = cct_conv_defaults(self.kernel_size)
        return (self.kernel_size, stride if self.conv_stride is None else self.conv_stride,
                padding if self.conv_padding is None else self.conv_padding)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(H', W') of the token grid the tokenizer makes."""
        return cct_grid_size(self.image_size, self.n_conv_layers, self.conv,
                             (self.pooling_kernel_size, self.pooling_stride, self.pooling_padding))

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid_size)

    @property
    def mlp_dim(self) -> int:
        return int(self.mlp_ratio * self.dim)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for checkpoints and model cards); `CCTConfig(**d)` rebuilds it."""
        return plain_dict(self)


class CCT(AttentionSwitch, nn.Module):
    """Compact Convolutional Transformer built from a `CCTConfig`.

    Attributes: `tokenizer` (`CCTTokenizer`), `pos_embed`, `blocks`, `norm`, `pool` (`SeqPool`),
    `head`. Attention maps: attn_impl "explicit" (the CPU default) and hook
    `model.blocks[i].attn.probe`; pooling weights: `model.pool.weights(model.forward_features(x))`.
    """

    def __init__(self, config: CCTConfig | None = None) -> None:
        super().__init__()
        config = config_or_default(config, CCTConfig)
        self.config = c = config
        kernel, stride, padding = c.conv
        self.tokenizer = CCTTokenizer(c.in_channels, c.dim, c.n_conv_layers, kernel, stride, padding,
                                      c.pooling_kernel_size, c.pooling_stride, c.pooling_padding,
                                      c.hidden_channels)
        self.image_size = _pair("image_size", c.image_size)
        self.grid_size = self.tokenizer.grid_size(self.image_size)
        self.pos_embed = (nn.Parameter(torch.zeros(1, c.num_tokens, c.dim)) if c.pos_embed == "learned"
                          else None)
        self.pos_drop = Dropout(c.dropout)
        fused = c.attn_impl != "explicit"
        self.blocks = nn.ModuleList([
            EncoderBlock(c.dim, c.heads, c.mlp_dim, dropout=c.dropout, attn_dropout=c.attn_dropout,
                         qkv_bias=c.qkv_bias, norm_eps=c.norm_eps, fused=fused, drop_path=rate)
            for rate in drop_path_rates(c.depth, c.drop_path_rate)])
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.pool = SeqPool(c.dim)
        self.head = nn.Linear(c.dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's init: truncated normal (std 0.02) Linear weights, zero biases, LayerNorms at
        1 and 0, the position embedding truncated normal with std 0.2; the tokenizer's
        convolutions keep their Kaiming normal init."""
        init_linear_and_norm_(self)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, N, D) tokens after the final LayerNorm."""
        c = self.config
        check_image_batch(x, c.in_channels, self.image_size, "this CCT")
        x = self.tokenizer(x)  # (B, N, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.pos_drop(x)
        # "auto": SDPA on CUDA, the explicit path elsewhere (faster to train on a CPU, see ViT)
        fused = x.device.type == "cuda" if c.attn_impl == "auto" else None
        for block in self.blocks:
            x = block(x, fused=fused)
        return self.norm(x)  # (B, N, D)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, N, D) -> (B, num_classes): sequence pooling, then the head."""
        pooled = self.pool(tokens)  # (B, D)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_classes) logits."""
        return self.forward_head(self.forward_features(x))


# -------------------------------------------------------------------------------------------------
# Presets. Each builder takes **overrides of CCTConfig fields, e.g. cct_7_3x1_32(num_classes=100).

def _builder(name: str, doc: str, **defaults: Any) -> Callable[..., CCT]:
    return preset_builder(CCT, CCTConfig, name, doc, **defaults)


# CCT-7/3x1 on CIFAR-10, the paper's Table 1 (3.76M parameters; 94.72% at 300 epochs, 95.0% at
# 5000): one 3x3 conv (stride 1) + maxpool makes 16x16 = 256 tokens of width 256. Exactly 3,760,139
# parameters, as the paper's code builds it (tests/test_small_data_models.py).
cct_7_3x1_32 = _builder("cct_7_3x1_32", "CCT-7/3x1 for 32x32 CIFAR-10: one 3x3 conv layer (256 tokens), "
                        "D=256, 7 blocks, 4 heads, MLP ratio 2; 3.76M params.")
# Fashion-MNIST (28x28x1): two 3x3 conv-pool layers, 28 -> 14 -> 7, so 49 tokens (vit_fmnist_p4's
# grid), width 128. cct_fmnist has vit_fmnist's depth and MLP (6 blocks, 256); cct_fmnist_s is the
# paper's CCT-4/3x2 (4 blocks, MLP ratio 1: 0.48M on CIFAR too).
_FMNIST = dict(image_size=28, in_channels=1, num_classes=10, dim=128, heads=2, n_conv_layers=2, kernel_size=3)
cct_fmnist = _builder("cct_fmnist", "CCT-6/3x2 for 28x28 Fashion-MNIST: 49 tokens, D=128, 6 blocks, "
                      "2 heads, MLP 256; 0.87M params.", depth=6, mlp_ratio=2.0, **_FMNIST)
cct_fmnist_s = _builder("cct_fmnist_s", "CCT-4/3x2 for 28x28 Fashion-MNIST: 49 tokens, D=128, 4 blocks, "
                        "2 heads, MLP 128; 0.48M params.", depth=4, mlp_ratio=1.0, **_FMNIST)

PRESETS: dict[str, Callable[..., CCT]] = {b.__name__: b for b in (cct_7_3x1_32, cct_fmnist, cct_fmnist_s)}
