"""A ViT for small data: the fixes of 2021 as switches on one model, `SmallDataViT`.

Chapter 13 trains these variants for the same time on Fashion-MNIST; of those it measured, the
cheaper convolutional stem (`vit_convstem_s_fmnist`) is the best, and still behind the ResNet.

ViT needs ImageNet-21k-sized data because it has to learn locality from scratch. Each switch
puts some of a CNN's prior back, or regularises, and can be turned on alone:

    stem="conv"     Xiao et al. 2021: a 3x3 conv-BN-ReLU stem instead of patchify
    stem="resnet"   Dosovitskiy et al. 2021, §3.1 ("hybrid"): tokens = an early ResNet feature map
    spt=True        Lee, Lee & Song 2021: shifted patch tokenization (each patch sees its neighbours)
    lsa=True        Lee, Lee & Song 2021: locality self-attention (learned temperature, no self-token)
    pool="seq"      Hassani et al. 2021 (CCT): sequence pooling instead of a class token
    distilled=True  Touvron et al. 2021 (DeiT): a distillation token with its own head
    drop_path_rate  stochastic depth, linear from 0 to the rate over the blocks

With every switch off (stem="patch", pool "cls" or "mean"), it is the course's `ViT`, parameter
for parameter, with the same names: `vit_fmnist_p4`'s state dict loads into the default config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
import torch.nn as nn
from einops import rearrange

from ..layers.attention import ATTN_IMPLS, AttentionSwitch
from ..layers.blocks import EncoderBlock
from ..layers.conv_stem import ConvStem, conv_out
from ..layers.drop_path import drop_path_rates
from ..layers.dropout import Dropout
from ..layers.init import init_linear_and_norm_
from ..layers.patches import PatchEmbed, _pair
from ..layers.sequence_pool import SeqPool
from ..layers.spt import ShiftedPatchTokenization
from ..layers.validate import check_image_batch, check_int, check_rate, config_or_default, int_tuple, plain_dict
from .cnn import ResNet, ResNetConfig
from .preset import preset_builder

STEMS = ("patch", "conv", "resnet")
POOLS = ("cls", "mean", "seq")
POS_EMBEDS = ("learned", "none")


@dataclass
class SmallDataViTConfig:
    """Every hyper-parameter of a SmallDataViT. Defaults: `vit_fmnist_p4` (28x28 Fashion-MNIST,
    patch 4 -> 49 tokens, D=128, 6 blocks, mean pooling) with every switch off."""

    image_size: Union[int, tuple[int, int]] = 28  # input H (square) or (H, W); fixed once built
    in_channels: int = 1           # C: 1 for Fashion-MNIST, 3 for RGB
    num_classes: int = 10          # width of the head(s); 0 = no head (not with distilled)
    stem: str = "patch"            # tokenizer: "patch" (ViT), "conv" (Xiao et al.), "resnet" (ViT hybrid)
    patch_size: int = 4            # "patch" stem and SPT: side of each square patch
    conv_channels: tuple[int, ...] = (64, 128)  # "conv" stem: channels of each 3x3 conv (last = D here)
    conv_strides: tuple[int, ...] = (2, 2)      # "conv" stem: their strides; total 4 = replaces patch 4
    resnet_widths: tuple[int, ...] = (32, 64)   # "resnet" stem: channels of the ResNet stages kept
    resnet_depths: tuple[int, ...] = (1, 1)     # "resnet" stem: basic blocks per stage kept
    resnet_stem_stride: int = 2    # "resnet" stem: stride of the ResNet's first conv (28 -> 14 -> 7)
    spt: bool = False              # shifted patch tokenization (needs stem="patch")
    lsa: bool = False              # locality self-attention in every block
    pool: str = "mean"             # "cls" token, "mean" of patch tokens, "seq" sequence pooling
    distilled: bool = False        # DeiT's distillation token and second head
    dim: int = 128                 # D: token width
    depth: int = 6                 # L: encoder blocks
    heads: int = 2                 # attention heads; must divide dim
    mlp_dim: int = 256             # hidden width of each block's MLP
    dropout: float = 0.0           # after position embedding, attention projection and MLP layers
    attn_dropout: float = 0.0      # on the attention weights
    drop_path_rate: float = 0.0    # stochastic depth of the last block, linear from 0 at the first
    pos_embed: str = "learned"     # "learned" 1D or "none"
    qkv_bias: bool = True          # bias in the q, k, v projection
    norm_eps: float = 1e-6         # LayerNorm epsilon (as the course's ViT)
    attn_impl: str = "auto"        # "fused" SDPA, "explicit" softmax (hookable), "auto": fused on CUDA

    def __post_init__(self) -> None:
        h, w = _pair("image_size", self.image_size)
        for name in ("in_channels", "patch_size", "resnet_stem_stride", "dim", "depth", "heads", "mlp_dim"):
            check_int(name, getattr(self, name))
        check_int("num_classes", self.num_classes, minimum=0)
        for name in ("conv_channels", "conv_strides", "resnet_widths", "resnet_depths"):
            setattr(self, name, int_tuple(name, getattr(self, name)))
        for name, allowed in (("stem", STEMS), ("pool", POOLS), ("pos_embed", POS_EMBEDS),
                              ("attn_impl", ATTN_IMPLS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("spt", "lsa", "distilled", "qkv_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("dropout", "attn_dropout", "drop_path_rate"):
            check_rate(name, getattr(self, name))
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)) or self.norm_eps <= 0:
            raise ValueError(f"norm_eps must be a positive float, got {self.norm_eps!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads} "
                             f"(each head gets dim/heads channels)")
        if self.spt and self.stem != "patch":
            raise ValueError(f"spt=True is a patch tokenizer: it needs stem='patch', got stem={self.stem!r}")
        if self.spt and self.patch_size < 2:
            raise ValueError(f"spt=True shifts by patch_size // 2, so patch_size must be >= 2, got {self.patch_size}")
        if self.distilled and self.num_classes == 0:
            raise ValueError("distilled=True needs num_classes > 0 (the distillation token has its own head)")
        if self.stem == "patch" and (h % self.patch_size or w % self.patch_size):
            raise ValueError(f"image_size={self.image_size!r} must be divisible by patch_size={self.patch_size}")
        if self.stem == "conv" and len(self.conv_channels) != len(self.conv_strides):
            raise ValueError(f"conv_channels and conv_strides need one entry per convolution, got "
                             f"conv_channels={self.conv_channels} and conv_strides={self.conv_strides}")
        if self.stem == "resnet":
            if len(self.resnet_widths) != len(self.resnet_depths):
                raise ValueError(f"resnet_widths and resnet_depths need one entry per stage, got "
                                 f"resnet_widths={self.resnet_widths} and resnet_depths={self.resnet_depths}")
            if self.resnet_stem_stride not in (1, 2):
                raise ValueError(f"resnet_stem_stride must be 1 or 2, got {self.resnet_stem_stride!r}")
        if self.lsa and self.num_prefix_tokens + self.num_patches < 2:
            raise ValueError(f"lsa=True needs at least 2 tokens (each attends only to the others); "
                             f"image_size={self.image_size!r} with this stem gives {self.num_patches}")
        if not isinstance(self.image_size, int):
            self.image_size = (h, w)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(H', W') of the token grid the stem makes."""
        h, w = _pair("image_size", self.image_size)
        if self.stem == "patch":
            return h // self.patch_size, w // self.patch_size
        if self.stem == "conv":
            for s in self.conv_strides:
                h, w = conv_out(h, 3, s, 1), conv_out(w, 3, s, 1)
            return h, w
        # ResNet: a 3x3 stem conv (stride 1 or 2), then each later stage halves the side (stride 2).
        h, w = conv_out(h, 3, self.resnet_stem_stride, 1), conv_out(w, 3, self.resnet_stem_stride, 1)
        for _ in self.resnet_widths[1:]:
            h, w = conv_out(h, 3, 2, 1), conv_out(w, 3, 2, 1)
        return h, w

    @property
    def num_patches(self) -> int:
        return math.prod(self.grid_size)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens in front of the patch tokens: the class token (pool="cls"), the distillation token."""
        return int(self.pool == "cls") + int(self.distilled)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for checkpoints and model cards); `SmallDataViTConfig(**d)` rebuilds it."""
        return plain_dict(self)


class ResNetTokens(nn.Module):
    """ViT's hybrid tokenizer (§3.1): the first stages of the course's ResNet, flattened to tokens.

    "Patches" of size 1x1 on the feature map, embedded by a 1x1 convolution (a Linear per
    position). The ResNet is `vitcourse.models.cnn.ResNet` itself, built with only the stages kept;
    its classifier is replaced by an identity.

    Args:
        image_size: (H, W) of the input images.
        in_channels: C of the input images.
        dim: D, the width of each token.
        widths, depths, stem_stride: the kept stages, as `ResNetConfig`'s fields.
        grid_size: (H', W') of the last kept stage's feature map.
    """

    def __init__(self, image_size: tuple[int, int], in_channels: int, dim: int, widths: tuple[int, ...],
                 depths: tuple[int, ...], stem_stride: int, grid_size: tuple[int, int]) -> None:
        super().__init__()
        self.backbone = ResNet(ResNetConfig(image_size=image_size[0], in_channels=in_channels, num_classes=1,
                                            widths=widths, depths=depths, stem_stride=stem_stride))
        self.backbone.head = nn.Identity()  # only the feature map is used
        self.proj = nn.Conv2d(widths[-1], dim, 1)
        self.image_size, self.in_channels = image_size, in_channels
        self.grid_size = grid_size
        self.num_patches = grid_size[0] * grid_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D)."""
        x = self.proj(self.backbone.forward_features(x))  # (B, C_last, H', W') -> (B, D, H', W')
        return rearrange(x, "b d h w -> b (h w) d")  # (B, N, D)


def make_stem(c: SmallDataViTConfig) -> nn.Module:
    """The tokenizer `c` asks for; each has `.grid_size` and `.num_patches` and maps (B, C, H, W) -> (B, N, D)."""
    size = _pair("image_size", c.image_size)
    if c.stem == "patch" and c.spt:
        return ShiftedPatchTokenization(size, c.patch_size, c.in_channels, c.dim, norm_eps=c.norm_eps)
    if c.stem == "patch":
        return PatchEmbed(size, c.patch_size, c.in_channels, c.dim)
    if c.stem == "conv":
        return ConvStem(size, c.in_channels, c.dim, c.conv_channels, c.conv_strides)
    return ResNetTokens(size, c.in_channels, c.dim, c.resnet_widths, c.resnet_depths, c.resnet_stem_stride,
                        c.grid_size)


class SmallDataViT(AttentionSwitch, nn.Module):
    """A ViT with the small-data switches of `SmallDataViTConfig` (see the module docstring).

    Output contract of `forward` (a training loop relies on it):
        - distilled=False: logits (B, num_classes), in train and eval mode alike.
        - distilled=True, in train mode (`model.train()`): a tuple (cls_logits, dist_logits), each
          (B, num_classes): the class head (on the class token, or the mean / sequence pool of the
          patch tokens) and the distillation head (on the distillation token). DeiT trains the first
          on the labels and the second on the teacher's predictions.
        - distilled=True, in eval mode (`model.eval()`): one tensor (B, num_classes), the mean of the
          two heads' logits, (cls_logits + dist_logits) / 2.

    Attributes follow `ViT` (`patch_embed`, `cls_token`, `pos_embed`, `blocks`, `norm`, `head`),
    plus `dist_token` and `head_dist` (distilled) and `seq_pool` (pool="seq"). Attention maps:
    attn_impl "explicit" (the CPU default) and hook `model.blocks[i].attn.probe` (LSA too).
    """

    def __init__(self, config: SmallDataViTConfig | None = None) -> None:
        super().__init__()
        config = config_or_default(config, SmallDataViTConfig)
        self.config = c = config
        self.image_size = _pair("image_size", c.image_size)
        self.patch_embed = make_stem(c)
        self.grid_size = self.patch_embed.grid_size
        self.num_prefix_tokens = c.num_prefix_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim)) if c.pool == "cls" else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, c.dim)) if c.distilled else None
        num_tokens = c.num_prefix_tokens + c.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, c.dim)) if c.pos_embed == "learned" else None
        self.pos_drop = Dropout(c.dropout)
        fused = c.attn_impl != "explicit"
        self.blocks = nn.ModuleList([
            EncoderBlock(c.dim, c.heads, c.mlp_dim, dropout=c.dropout, attn_dropout=c.attn_dropout,
                         qkv_bias=c.qkv_bias, norm_eps=c.norm_eps, fused=fused, lsa=c.lsa, drop_path=rate)
            for rate in drop_path_rates(c.depth, c.drop_path_rate)])
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.seq_pool = SeqPool(c.dim) if c.pool == "seq" else None
        self.head = nn.Linear(c.dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.head_dist = nn.Linear(c.dim, c.num_classes) if c.distilled else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As `ViT`: truncated normal (std 0.02) Linear weights and position embedding, zero biases,
        LayerNorms at 1 and 0, a tiny class token; the distillation token truncated normal (std
        0.02, as DeiT). Convolutions (stems) keep their own init, LSA's temperature its √d."""
        init_linear_and_norm_(self)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.dist_token is not None:
            nn.init.trunc_normal_(self.dist_token, std=0.02)

    def _check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, self.config.in_channels, self.image_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, prefix + N, D) tokens after the final LayerNorm; the prefix is
        [class token][distillation token], whichever the config has, in that order (DeiT's)."""
        self._check_input(x)
        x = self.patch_embed(x)  # (B, N, D)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.dist_token) if t is not None]
        if prefix:
            x = torch.cat(prefix + [x], dim=1)  # (B, prefix + N, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.pos_drop(x)
        # "auto": SDPA on CUDA, the explicit path elsewhere (faster to train on a CPU, see ViT)
        fused = x.device.type == "cuda" if self.config.attn_impl == "auto" else None
        for block in self.blocks:
            x = block(x, fused=fused)
        return self.norm(x)  # (B, prefix + N, D)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, prefix + N, D) -> logits, with `forward`'s contract (a tuple only when distilled and
        training). pre_logits: the pooled (B, D) features instead (distilled: the mean of the class
        and distillation features, as timm's DeiT)."""
        patches = tokens[:, self.num_prefix_tokens:]  # (B, N, D)
        if self.config.pool == "cls":
            pooled = tokens[:, 0]  # (B, D)
        elif self.config.pool == "mean":
            pooled = patches.mean(dim=1)  # (B, D)
        else:
            pooled = self.seq_pool(patches)  # (B, D)
        if self.head_dist is None:
            return pooled if pre_logits else self.head(pooled)
        dist = tokens[:, self.num_prefix_tokens - 1]  # (B, D): the distillation token, last of the prefix
        if pre_logits:
            return (pooled + dist) / 2
        logits, dist_logits = self.head(pooled), self.head_dist(dist)  # (B, classes) each
        if self.training:
            return logits, dist_logits
        return (logits + dist_logits) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> (B, num_classes) logits; distilled and in train mode, the tuple
        (cls_logits, dist_logits) instead, in eval mode their mean (see the class docstring)."""
        return self.forward_head(self.forward_features(x))


# -------------------------------------------------------------------------------------------------
# Presets. Each builder takes **overrides of SmallDataViTConfig fields, e.g. vit_spt_lsa_fmnist(lsa=False).

def _builder(name: str, doc: str, **defaults: Any) -> Callable[..., SmallDataViT]:
    return preset_builder(SmallDataViT, SmallDataViTConfig, name, doc, **defaults)


# Fashion-MNIST (28x28x1, 10 classes) at vit_fmnist's width and depth (D=128, 6 blocks, 2 heads,
# MLP 256), every one with a 7x7 = 49-token grid, as vit_fmnist_p4: one change of tokenizer or
# attention each, so the chapter can compare them at equal sequence length. Stochastic depth 0.1
# in all four, the rate DeiT, CCT and Lee et al. use on small data.
_FMNIST = dict(image_size=28, in_channels=1, num_classes=10, dim=128, depth=6, heads=2, mlp_dim=256,
               pool="mean", drop_path_rate=0.1)
vit_convstem_fmnist = _builder("vit_convstem_fmnist", "Conv-stem ViT (Xiao et al.): 3x3 convs 64, 128 at "
                               "stride 2 (28 -> 7x7 tokens), 1x1 to D=128; 6 blocks, mean pooling.",
                               stem="conv", conv_channels=(64, 128), conv_strides=(2, 2), **_FMNIST)
vit_convstem_s_fmnist = _builder("vit_convstem_s_fmnist", "A cheaper conv-stem ViT for short CPU budgets: "
                                 "3x3 convs 32 (stride 1), 64, 128 (stride 2) -> 7x7 tokens, 1x1 to D=128; "
                                 "4 blocks, mean pooling, no stochastic depth (it slows a few-epoch run).",
                                 stem="conv", conv_channels=(32, 64, 128), conv_strides=(1, 2, 2),
                                 **{**_FMNIST, "depth": 4, "drop_path_rate": 0.0})
vit_hybrid_fmnist = _builder("vit_hybrid_fmnist", "Hybrid ViT (ViT §3.1): tokens from the course ResNet's "
                             "stem + stages 32, 64 (7x7 map), 1x1 to D=128; 6 blocks, mean pooling.",
                             stem="resnet", resnet_widths=(32, 64), resnet_depths=(1, 1), resnet_stem_stride=2,
                             **_FMNIST)
vit_spt_lsa_fmnist = _builder("vit_spt_lsa_fmnist", "ViT with shifted patch tokenization and locality "
                              "self-attention (Lee et al.): patch 4 (49 tokens), D=128, 6 blocks.",
                              stem="patch", patch_size=4, spt=True, lsa=True, **_FMNIST)
deit_convstem_fmnist = _builder("deit_convstem_fmnist", "vit_convstem_fmnist with DeiT's class and "
                                "distillation tokens: forward gives (cls, dist) logits in train mode, "
                                "their mean in eval.",
                                stem="conv", conv_channels=(64, 128), conv_strides=(2, 2), distilled=True,
                                **{**_FMNIST, "pool": "cls"})

PRESETS: dict[str, Callable[..., SmallDataViT]] = {
    b.__name__: b for b in (vit_convstem_fmnist, vit_convstem_s_fmnist, vit_hybrid_fmnist, vit_spt_lsa_fmnist,
                            deit_convstem_fmnist)
}
