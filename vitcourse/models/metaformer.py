"""MetaFormer (Yu et al., CVPR 2022): what a ViT really needs is the block's shape, not attention.

One model, `MetaFormer`, built from a typed `MetaFormerConfig`: a stem that cuts the image into
tokens, stages of `MetaFormerBlock`s (norm -> token mixer -> residual, norm -> MLP -> residual)
with a strided convolution between stages, a final norm, mean pooling and a linear head. The token
mixer and the norm are arguments, so the families below are one class:

    ViT (isotropic, attention)            metaformer_fmnist_attention (= vit_fmnist, same parameters)
    PoolFormer v1 (4 stages, pooling)     poolformer_s12 / s24 / s36   (= timm's, same parameters)
    MLP-Mixer (isotropic, token MLP)      mixer_s16 / mixer_b16        (= timm's mixer_s16_224 / b16)
    IdentityFormer (no mixing at all)     metaformer_fmnist_identity
    a hybrid (pooling first, attention last: PoolFormer's Table 6)   metaformer_fmnist_hybrid

Tokens stay (B, N, D) throughout, also in PoolFormer (timm keeps its maps (B, C, H, W)): a 1x1
convolution is a Linear on tokens and GroupNorm's statistics do not depend on the layout, so the
numbers are the same and every block reads like the ViT's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
import torch.nn as nn
from einops import rearrange

from ..layers.attention import ATTN_IMPLS, AttentionSwitch
from ..layers.dropout import Dropout
from ..layers.init import init_linear_and_norm_
from ..layers.metaformer import MetaFormerBlock
from ..layers.mixers import MIXERS
from ..layers.norms import NORMS, make_norm
from ..layers.patches import PatchEmbed, _pair
from ..layers.validate import check_choice, check_image_batch, check_int, check_rate, config_or_default, int_tuple, plain_dict
from .preset import preset_builder

POS_EMBEDS = ("learned", "none")
# PoolFormer's downsampling between stages: a 3x3 convolution, stride 2, padding 1 (halves the grid).
DOWNSAMPLE = (3, 2, 1)


def conv_output_size(size: tuple[int, int], kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """(H, W) after a convolution: floor((H + 2·padding - kernel) / stride) + 1 per side."""
    return tuple((s + 2 * padding - kernel) // stride + 1 for s in size)  # type: ignore[return-value]


def hybrid(depth: int, first: str = "pooling", last: str = "attention",
           split: int | None = None) -> tuple[str, ...]:
    """Per-block mixers: `first` in blocks [0, split), `last` after (split None = depth // 2).
    PoolFormer's finding: cheap local mixing early, global attention late, loses little."""
    split = depth // 2 if split is None else split
    if not 0 <= split <= depth:
        raise ValueError(f"split must be in [0, depth={depth}], got {split!r}")
    return (first,) * split + (last,) * (depth - split)


@dataclass
class MetaFormerConfig:
    """Every hyper-parameter of a MetaFormer. Defaults are `metaformer_fmnist_attention`, i.e.
    `vit_fmnist` (28x28 Fashion-MNIST, patch 7, 6 blocks of width 128) written as a MetaFormer."""

    image_size: Union[int, tuple[int, int]] = 28  # input H (square) or (H, W); fixed once built
    in_channels: int = 1           # C: 1 for Fashion-MNIST, 3 for RGB
    num_classes: int = 10          # width of the head; 0 = no head (forward returns pooled features)
    patch_size: int = 7            # the stem's kernel: patch side (ViT, Mixer) or 7 (PoolFormer)
    patch_stride: Optional[int] = None  # None = patch_size: non-overlapping patches; PoolFormer: 4
    patch_padding: int = 0         # zero padding of the stem; PoolFormer: 2 (224 -> a 56x56 grid)
    depths: tuple[int, ...] = (6,)     # blocks per stage; one stage = isotropic (ViT, Mixer)
    dims: tuple[int, ...] = (128,)     # token width D per stage; a 3x3 stride-2 conv between stages
    mixer: Union[str, tuple[str, ...]] = "attention"  # one of MIXERS for all blocks, or one per block
    norm: str = "layernorm"        # one of NORMS, in every block (see vitcourse.layers.norms)
    head_norm: Optional[str] = None  # the final norm; None = the same as `norm` (PoolFormer: layernorm)
    norm_eps: Optional[float] = None  # None: each norm's default (LayerNorm 1e-6, Group/BatchNorm 1e-5)
    norm_before_pool: bool = True  # True: norm tokens, then average (ViT, Mixer); False: the reverse (PoolFormer)
    heads: int = 2                 # attention heads; must divide the width of stages that attend
    mlp_ratio: float = 2.0         # MLP hidden width = int(mlp_ratio * D) (ViT 4, vit_fmnist 2)
    token_mlp_ratio: float = 0.5   # "mlp" mixer: token-MLP hidden width = int(ratio * D) (Mixer: 0.5)
    pool_size: int = 3             # "pooling" window / "dwconv" kernel (odd, so the grid keeps its size)
    layer_scale_init: Optional[float] = None  # start value of layer scale; None = none (PoolFormer: 1e-5)
    pos_embed: str = "learned"     # "learned" 1D (ViT) or "none" (PoolFormer, Mixer: the mixer knows positions)
    qkv_bias: bool = True          # bias in the attention's q, k, v projection
    dropout: float = 0.0           # after the position embedding, the mixers' projections and in the MLPs
    attn_dropout: float = 0.0      # on the attention weights
    attn_impl: str = "auto"        # "fused" SDPA, "explicit" softmax (hookable), "auto": fused on CUDA

    def __post_init__(self) -> None:
        h, w = _pair("image_size", self.image_size)
        for name in ("in_channels", "patch_size", "heads", "pool_size"):
            check_int(name, getattr(self, name))
        check_int("num_classes", self.num_classes, minimum=0)
        check_int("patch_padding", self.patch_padding, minimum=0)
        if self.patch_stride is not None:
            check_int("patch_stride", self.patch_stride)
        self.depths, self.dims = int_tuple("depths", self.depths, "stage"), int_tuple("dims", self.dims, "stage")
        if len(self.depths) != len(self.dims):
            raise ValueError(f"depths and dims need one entry per stage, got depths={self.depths} "
                             f"({len(self.depths)} stages) and dims={self.dims} ({len(self.dims)})")
        total = sum(self.depths)
        single = isinstance(self.mixer, str)
        if (single and self.mixer not in MIXERS) or not (single or isinstance(self.mixer, (tuple, list))):
            raise ValueError(f"mixer must be one of {MIXERS} or a list of one per block, got {self.mixer!r}")
        if not single:
            self.mixer = tuple(self.mixer)
            if len(self.mixer) != total:
                raise ValueError(f"mixer as a list needs one entry per block: expected {total} "
                                 f"(sum of depths={self.depths}), got {len(self.mixer)}: {self.mixer!r}")
            bad = [m for m in self.mixer if m not in MIXERS]
            if bad:
                raise ValueError(f"every mixer must be one of {MIXERS}, got {bad[0]!r} in {self.mixer!r}")
        for name in ("norm", "head_norm"):
            value = getattr(self, name)
            if not (value in NORMS or (name == "head_norm" and value is None)):
                raise ValueError(f"{name} must be one of {NORMS}{' or None' if name == 'head_norm' else ''}, "
                                 f"got {value!r}")
        for name in ("norm_eps", "layer_scale_init"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or value <= 0):
                raise ValueError(f"{name} must be None or a positive float, got {value!r}")
        for name in ("mlp_ratio", "token_mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value * min(self.dims)) < 1:
                raise ValueError(f"{name} must be a float with int({name} * dim) >= 1 for dims={self.dims}, "
                                 f"got {value!r}")
        for name in ("dropout", "attn_dropout"):
            check_rate(name, getattr(self, name))
        for name, allowed in (("pos_embed", POS_EMBEDS), ("attn_impl", ATTN_IMPLS)):
            check_choice(name, getattr(self, name), allowed)
        if self.pool_size % 2 == 0:
            raise ValueError(f"pool_size must be odd (so the grid keeps its size), got {self.pool_size}")
        mixers = self.mixers
        start = 0
        for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
            if "attention" in mixers[start:start + depth] and dim % self.heads:
                raise ValueError(f"stage {i} has width dims[{i}]={dim}, which must be divisible by "
                                 f"heads={self.heads} for its attention mixers")
            start += depth
        if not self.overlapping_stem and (h % self.patch_size or w % self.patch_size):
            raise ValueError(f"image_size={self.image_size!r} must be divisible by "
                             f"patch_size={self.patch_size} (or give patch_stride / patch_padding for an "
                             "overlapping stem)")
        for i, grid in enumerate(self.grid_sizes):
            if min(grid) < 1:
                raise ValueError(f"image_size={self.image_size!r} is too small: stage {i}'s grid would "
                                 f"be {grid}")
        if not isinstance(self.image_size, int):
            self.image_size = (h, w)

    @property
    def overlapping_stem(self) -> bool:
        """False when the stem cuts non-overlapping patches (kernel = stride, no padding), as in ViT."""
        return self.patch_stride not in (None, self.patch_size) or self.patch_padding != 0

    @property
    def mixers(self) -> tuple[str, ...]:
        """The token mixer of every block, in order."""
        return (self.mixer,) * sum(self.depths) if isinstance(self.mixer, str) else tuple(self.mixer)

    @property
    def grid_sizes(self) -> tuple[tuple[int, int], ...]:
        """(H, W) of the token grid in each stage."""
        size = _pair("image_size", self.image_size)
        grid = conv_output_size(size, self.patch_size, self.patch_stride or self.patch_size, self.patch_padding)
        grids = [grid]
        for _ in self.depths[1:]:
            grids.append(conv_output_size(grids[-1], *DOWNSAMPLE))
        return tuple(grids)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for checkpoints and model cards); `MetaFormerConfig(**d)` rebuilds it."""
        return plain_dict(self)


class StridedConv(nn.Module):
    """A strided convolution from a (B, C, H, W) map to (B, N, D) tokens: PoolFormer's stem
    (7x7, stride 4, padding 2 on the image) and its downsampling between stages (3x3, stride 2,
    padding 1 on the previous stage's grid). Overlapping windows, unlike ViT's patches."""

    def __init__(self, in_channels: int, dim: int, in_size: tuple[int, int], kernel_size: int,
                 stride: int, padding: int) -> None:
        super().__init__()
        self.in_channels, self.in_size = in_channels, tuple(in_size)
        self.grid_size = conv_output_size(self.in_size, kernel_size, stride, padding)
        self.proj = nn.Conv2d(in_channels, dim, kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D) with N = the output grid's H·W, row-major."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.in_size):
            raise ValueError(f"StridedConv was built for (B, {self.in_channels}, {self.in_size[0]}, "
                             f"{self.in_size[1]}) inputs, got {tuple(x.shape)}")
        return rearrange(self.proj(x), "b d h w -> b (h w) d")  # (B, N, D)


class MetaFormerStage(nn.Module):
    """[Downsample the previous stage's grid] -> `depth` MetaFormer blocks at one width and grid."""

    def __init__(self, blocks: list[MetaFormerBlock], downsample: StridedConv | None = None) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        """(B, N_in, D_in) -> (B, N, D)."""
        if self.downsample is not None:
            h, w = self.downsample.in_size
            x = self.downsample(rearrange(x, "b (h w) d -> b d h w", h=h, w=w))  # (B, N/4, D')
        for block in self.blocks:
            x = block(x, fused=fused)
        return x


class MetaFormer(AttentionSwitch, nn.Module):
    """stem -> [+ position embedding] -> stages of MetaFormer blocks -> norm -> mean pool -> head.

    Attributes: `patch_embed` (`.proj` is the stem's convolution), `pos_embed`, `stages` (each with
    `downsample` and `blocks`), `norm`, `head`; `blocks` lists every block in order. Attention
    maps: attn_impl "explicit" (the CPU default) and hook `model.blocks[i].attn.probe`.
    """

    def __init__(self, config: MetaFormerConfig | None = None) -> None:
        super().__init__()
        config = config_or_default(config, MetaFormerConfig)
        self.config = c = config
        grids = c.grid_sizes
        if c.overlapping_stem:
            self.patch_embed = StridedConv(c.in_channels, c.dims[0], _pair("image_size", c.image_size),
                                           c.patch_size, c.patch_stride or c.patch_size, c.patch_padding)
        else:
            self.patch_embed = PatchEmbed(c.image_size, c.patch_size, c.in_channels, c.dims[0])
        self.grid_size = grids[0]
        num_tokens = grids[0][0] * grids[0][1]
        learned = c.pos_embed == "learned"
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, c.dims[0])) if learned else None
        self.pos_drop = Dropout(c.dropout)
        mixers, start = c.mixers, 0
        self.stages = nn.ModuleList()
        for i, (depth, dim) in enumerate(zip(c.depths, c.dims)):
            blocks = [MetaFormerBlock(dim, grids[i], mixers[start + j], c.norm, heads=c.heads,
                                      mlp_ratio=c.mlp_ratio, token_mlp_ratio=c.token_mlp_ratio,
                                      pool_size=c.pool_size, qkv_bias=c.qkv_bias, norm_eps=c.norm_eps,
                                      layer_scale_init=c.layer_scale_init, dropout=c.dropout,
                                      attn_dropout=c.attn_dropout, fused=c.attn_impl != "explicit")
                      for j in range(depth)]
            down = StridedConv(c.dims[i - 1], dim, grids[i - 1], *DOWNSAMPLE) if i else None
            self.stages.append(MetaFormerStage(blocks, down))
            start += depth
        self.norm = make_norm(c.head_norm or c.norm, c.dims[-1], c.norm_eps)
        self.head = nn.Linear(c.dims[-1], c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As the ViT: truncated normal (std 0.02) Linear weights and position embedding, zero
        biases; convolutions keep PyTorch's init, norms start at weight 1 and bias 0."""
        init_linear_and_norm_(self)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @property
    def blocks(self) -> list[MetaFormerBlock]:
        """Every block, stage after stage."""
        return [block for stage in self.stages for block in stage.blocks]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, N, D) tokens of the last stage (after the final norm if
        config.norm_before_pool)."""
        check_image_batch(x)
        x = self.patch_embed(x)  # (B, N, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.pos_drop(x)
        # "auto": SDPA on CUDA, the explicit path elsewhere (faster to train on a CPU, see ViT)
        fused = x.device.type == "cuda" if self.config.attn_impl == "auto" else None
        for stage in self.stages:
            x = stage(x, fused=fused)  # (B, N_i, D_i): N quartered, D grown at each new stage
        return self.norm(x) if self.config.norm_before_pool else x

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, N, D) -> (B, num_classes): average the tokens, [norm], head."""
        pooled = tokens.mean(dim=1)  # (B, D)
        if not self.config.norm_before_pool:
            pooled = self.norm(pooled)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_classes) logits."""
        return self.forward_head(self.forward_features(x))


# -------------------------------------------------------------------------------------------------
# Presets. Each builder takes **overrides of MetaFormerConfig fields, e.g. poolformer_s12(num_classes=10).

def _builder(name: str, doc: str, **defaults: Any) -> Callable[..., MetaFormer]:
    return preset_builder(MetaFormer, MetaFormerConfig, name, doc, **defaults)


# PoolFormer v1 (Yu et al. 2022, Table 1) as timm's poolformer_s12/s24/s36 builds it: a 7x7 stride-4
# stem (224 -> a 56x56 grid), four stages of widths 64/128/320/512 on 56/28/14/7 grids with 3x3
# stride-2 convs between them, GroupNorm(1 group) in the blocks, MLP ratio 4, layer scale, then mean
# pool -> LayerNorm -> Linear. No norm in the stem or the downsampling, no position embedding.
_POOLFORMER = dict(image_size=224, in_channels=3, num_classes=1000, patch_size=7, patch_stride=4,
                   patch_padding=2, dims=(64, 128, 320, 512), mixer="pooling", norm="groupnorm",
                   head_norm="layernorm", norm_before_pool=False, mlp_ratio=4.0, pos_embed="none")
poolformer_s12 = _builder("poolformer_s12", "PoolFormer-S12: depths 2/2/6/2; 11.9M params (as timm's).",
                          depths=(2, 2, 6, 2), layer_scale_init=1e-5, **_POOLFORMER)
poolformer_s24 = _builder("poolformer_s24", "PoolFormer-S24: depths 4/4/12/4; 21.4M params (as timm's).",
                          depths=(4, 4, 12, 4), layer_scale_init=1e-5, **_POOLFORMER)
poolformer_s36 = _builder("poolformer_s36", "PoolFormer-S36: depths 6/6/18/6, layer scale 1e-6; 30.9M params.",
                          depths=(6, 6, 18, 6), layer_scale_init=1e-6, **_POOLFORMER)
# MLP-Mixer (Tolstikhin et al. 2021, Table 1) as timm's mixer_s16_224 / mixer_b16_224: patch 16 on
# 224x224 (196 tokens), token MLP 0.5 D wide, channel MLP 4 D, LayerNorm eps 1e-6, no position
# embedding (the token MLP's weights are per position), norm -> mean pool -> head.
_MIXER = dict(image_size=224, in_channels=3, num_classes=1000, patch_size=16, mixer="mlp",
              token_mlp_ratio=0.5, mlp_ratio=4.0, pos_embed="none")
mixer_s16 = _builder("mixer_s16", "Mixer-S/16: D=512, 8 blocks; 18.5M params (timm's mixer_s16_224).",
                     depths=(8,), dims=(512,), **_MIXER)
mixer_b16 = _builder("mixer_b16", "Mixer-B/16: D=768, 12 blocks; 59.9M params (timm's mixer_b16_224).",
                     depths=(12,), dims=(768,), **_MIXER)

# Fashion-MNIST, one argument apart: vit_fmnist's stem (patch 7 -> 16 tokens, learned position
# embedding), width 128, 6 blocks, mean pooling and head, with a different token mixer. Matched
# parameter counts: attention costs 4·D² + 4·D = 66,048 parameters per block; the parameter-free
# mixers (pooling, identity) get that back in a wider channel MLP, which costs 2·D + 1 = 257 per
# hidden unit: 256 more units (mlp_ratio 2 -> 4) is 65,792, within 256 of attention. The token MLP
# (16 -> 64 -> 16, 2,128 parameters) is too small to matter, so "mlp" uses ratio 4 too; the hybrid
# (half pooling, half attention) splits the difference at ratio 3. Every preset is within 1.5% of
# vit_fmnist's 804,874 (tests/test_metaformer.py); pass mlp_ratio=2.0 for equal widths instead.
_FMNIST = dict(image_size=28, in_channels=1, num_classes=10, patch_size=7, depths=(6,), dims=(128,),
               heads=2, pos_embed="learned")


def _fmnist(name: str, doc: str, mlp_ratio: float, mixer: Union[str, tuple[str, ...], None] = None
            ) -> Callable[..., MetaFormer]:
    """The preset `metaformer_fmnist_<name>`: `_FMNIST` with token mixer `mixer` (default: `name`)."""
    return _builder(f"metaformer_fmnist_{name}", doc, mixer=mixer or name, mlp_ratio=mlp_ratio, **_FMNIST)


metaformer_fmnist_attention = _fmnist("attention", "vit_fmnist as a MetaFormer (attention, MLP 256): the same "
                                      "804,874 parameters, the same function.", 2.0)
metaformer_fmnist_pooling = _fmnist("pooling", "PoolFormer-style: 3x3 average pooling on the 4x4 grid, "
                                    "MLP 512.", 4.0)
metaformer_fmnist_mlp = _fmnist("mlp", "Mixer-style: token MLP 16 -> 64 -> 16, MLP 512.", 4.0)
metaformer_fmnist_identity = _fmnist("identity", "No token mixing at all (the floor), MLP 512.", 4.0)
metaformer_fmnist_dwconv = _fmnist("dwconv", "Depthwise 3x3 convolution as the mixer (ConvMixer-like), "
                                   "MLP 512.", 4.0)
metaformer_fmnist_hybrid = _fmnist("hybrid", "Pooling in blocks 1-3, attention in blocks 4-6, MLP 384.", 3.0,
                                   hybrid(6))

PRESETS: dict[str, Callable[..., MetaFormer]] = {
    b.__name__: b for b in (poolformer_s12, poolformer_s24, poolformer_s36, mixer_s16, mixer_b16,
                            metaformer_fmnist_attention, metaformer_fmnist_pooling, metaformer_fmnist_mlp,
                            metaformer_fmnist_identity, metaformer_fmnist_dwconv, metaformer_fmnist_hybrid)
}
