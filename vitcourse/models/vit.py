"""The Vision Transformer (Dosovitskiy et al., ICLR 2021): patches -> tokens -> encoder -> class.

    z0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos          (eq. 1)
    z_l = MSA(LN(z_{l-1})) + z_{l-1};  z_l = MLP(LN(z_l)) + z_l   (eqs. 2-3)
    y = LN(z_L^0) -> head                                  (eq. 4)

A typed `ViTConfig` (validated in `__post_init__`), the `ViT` module, and `PRESETS`: lowercase
builders for the paper's models (Table 1, plus DeiT's Ti/S), D2L's chapter 11.8 model and small
Fashion-MNIST models. Parameter names follow timm, so its state dicts load with few changes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
import torch.nn as nn

from ..layers.attention import ATTN_IMPLS, AttentionSwitch
from ..layers.blocks import EncoderBlock
from ..layers.dropout import Dropout
from ..layers.init import init_linear_and_norm_
from ..layers.patches import PatchEmbed, _pair
from ..layers.pos_embed import resample_pos_embed, sincos_2d
from ..layers.validate import check_choice, config_or_default, plain_dict
from .preset import preset_builder

POOLS = ("cls", "mean")
POS_EMBEDS = ("learned", "sincos", "none")


@dataclass
class ViTConfig:
    """Every hyper-parameter of a ViT. Defaults are ViT-B/16 on 224x224 ImageNet."""

    image_size: Union[int, tuple[int, int]] = 224  # input H (square) or (H, W); fixed once built
    patch_size: int = 16           # P: side of each square patch; must divide the image size
    in_channels: int = 3           # C: 3 for RGB, 1 for Fashion-MNIST
    num_classes: int = 1000        # width of the head; 0 = no head (forward returns pooled features)
    dim: int = 768                 # D: token width ("hidden size" in the paper's Table 1)
    depth: int = 12                # L: number of encoder blocks
    heads: int = 12                # attention heads; must divide dim
    mlp_dim: int = 3072            # hidden width of each block's MLP (4D in the paper)
    dropout: float = 0.0           # after position embedding, attention projection and MLP layers
    attn_dropout: float = 0.0      # on the attention weights
    pool: str = "cls"              # "cls": read the class token (paper); "mean": average patch tokens
    pos_embed: str = "learned"     # "learned" 1D (paper), "sincos" fixed 2D, "none" (to see it fail)
    qkv_bias: bool = True          # bias in the q, k, v projection (paper, timm, torchvision: yes)
    norm_eps: float = 1e-6         # LayerNorm epsilon (paper's JAX code, timm, torchvision: 1e-6)
    attn_impl: str = "auto"        # "fused" SDPA, "explicit" softmax (hookable), "auto": fused on CUDA
    proj_bias: bool = True         # bias in the attention output projection (D2L's attention has none)

    def __post_init__(self) -> None:
        h, w = _pair("image_size", self.image_size)
        for name in ("patch_size", "in_channels", "dim", "depth", "heads", "mlp_dim"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {self.num_classes!r}")
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image_size={self.image_size!r} must be divisible by "
                             f"patch_size={self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads} "
                             f"(each head gets dim/heads channels)")
        for name in ("dropout", "attn_dropout"):
            val = getattr(self, name)
            if not isinstance(val, (int, float)) or not 0.0 <= val < 1.0:
                raise ValueError(f"{name} must be a float in [0, 1), got {val!r}")
        for name, allowed in (("pool", POOLS), ("pos_embed", POS_EMBEDS), ("attn_impl", ATTN_IMPLS)):
            check_choice(name, getattr(self, name), allowed)
        if self.pos_embed == "sincos" and self.dim % 4:
            raise ValueError(f"pos_embed='sincos' needs dim divisible by 4, got dim={self.dim}")
        if not isinstance(self.norm_eps, (int, float)) or self.norm_eps <= 0:
            raise ValueError(f"norm_eps must be a positive float, got {self.norm_eps!r}")
        if not isinstance(self.image_size, int):
            self.image_size = (h, w)

    @property
    def grid_size(self) -> tuple[int, int]:
        h, w = _pair("image_size", self.image_size)
        return h // self.patch_size, w // self.patch_size

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid_size
        return gh * gw

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for checkpoints and model cards); `ViTConfig(**d)` rebuilds it."""
        return plain_dict(self)


class ViT(AttentionSwitch, nn.Module):
    """Vision Transformer built from a `ViTConfig`.

    Attributes follow timm's names (`patch_embed`, `cls_token`, `pos_embed`, `blocks`, `norm`,
    `head`). Attention maps: use attn_impl "explicit" (the CPU default) and hook
    `model.blocks[i].attn.probe`.
    """

    def __init__(self, config: ViTConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config_or_default(config, ViTConfig)
        if overrides:
            config = _replace(config, overrides)
        self.config = config
        c = config
        self.patch_embed = PatchEmbed(c.image_size, c.patch_size, c.in_channels, c.dim)
        self.grid_size = self.patch_embed.grid_size
        self.num_prefix_tokens = 1 if c.pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim)) if c.pool == "cls" else None
        num_tokens = self.num_prefix_tokens + self.patch_embed.num_patches
        if c.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, c.dim))
        elif c.pos_embed == "sincos":
            # A buffer, not a parameter: fixed, but saved in the state dict and moved with .to().
            self.register_buffer("pos_embed", sincos_2d(self.grid_size, c.dim,
                                                        num_prefix_tokens=self.num_prefix_tokens))
        else:
            self.pos_embed = None
        self.pos_drop = Dropout(c.dropout)
        fused = c.attn_impl != "explicit"
        self.blocks = nn.ModuleList([
            EncoderBlock(c.dim, c.heads, c.mlp_dim, dropout=c.dropout, attn_dropout=c.attn_dropout,
                         qkv_bias=c.qkv_bias, norm_eps=c.norm_eps, fused=fused, proj_bias=c.proj_bias)
            for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.head = nn.Linear(c.dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's default init: truncated normal (std 0.02) for Linear weights and the learned
        position embedding, zero biases, a tiny class token; the patch conv keeps PyTorch's init."""
        init_linear_and_norm_(self)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    # ----------------------------------------------------------------------------------------
    @property
    def attn_impl(self) -> str:
        return self.config.attn_impl

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a tensor of shape (B, C, H, W), got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"x must be a 4D tensor (B, C, H, W), got shape {tuple(x.shape)}"
                             + (" (add a batch dimension: x[None])" if x.ndim == 3 else ""))
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype} "
                             "(convert images with x.float() / 255 and normalise them)")
        if x.shape[1] != c.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels, but this model was built for "
                             f"in_channels={c.in_channels} (input shape {tuple(x.shape)})")
        if tuple(x.shape[-2:]) != self.patch_embed.image_size:
            raise ValueError(f"x has image size {tuple(x.shape[-2:])}, but this model was built for "
                             f"image_size={self.patch_embed.image_size}; resize the input or call "
                             "set_image_size()")

    def _fused_for(self, x: torch.Tensor) -> bool | None:
        """None keeps each block's own setting; "auto" decides from the device (measured on a
        2-core CPU: SDPA's backward was 2.6x slower there than the explicit path, 375 vs 965
        img/s for a 6-block, 128-wide, patch-4 model in bf16; on CUDA SDPA is the fast one)."""
        if self.config.attn_impl == "auto":
            return x.device.type == "cuda"
        return None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, prefix + N, D) tokens after the final LayerNorm."""
        self._check_input(x)
        x = self.patch_embed(x)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.pos_drop(x)
        fused = self._fused_for(x)
        for block in self.blocks:
            x = block(x, fused=fused)
        return self.norm(x)  # (B, prefix + N, D)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, prefix + N, D) -> (B, num_classes): pool (class token or mean of patches), then head."""
        if self.config.pool == "cls":
            pooled = tokens[:, 0]  # (B, D)
        else:
            pooled = tokens[:, self.num_prefix_tokens:].mean(dim=1)  # (B, D)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_classes) logits."""
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def set_image_size(self, image_size: int | tuple[int, int]) -> "ViT":
        """Adapt the model to a new input resolution (fine-tuning at higher resolution, paper §3.2).

        The patch size stays; the grid changes, so a learned position embedding is resampled
        (bicubic), a sin-cos one recomputed. Returns self.
        """
        c = dataclasses.replace(self.config, image_size=image_size)  # validates divisibility
        old_grid = self.grid_size
        proj = self.patch_embed.proj
        self.patch_embed = PatchEmbed(c.image_size, c.patch_size, c.in_channels, c.dim)
        self.patch_embed.proj = proj
        self.grid_size = self.patch_embed.grid_size
        if isinstance(self.pos_embed, nn.Parameter):
            self.pos_embed = nn.Parameter(resample_pos_embed(
                self.pos_embed.data, self.grid_size, self.num_prefix_tokens, old_grid=old_grid))
        elif self.pos_embed is not None:
            self.pos_embed = sincos_2d(self.grid_size, c.dim, num_prefix_tokens=self.num_prefix_tokens
                                       ).to(self.pos_embed)
        self.config = c
        return self


def _replace(config: ViTConfig, overrides: dict[str, Any]) -> ViTConfig:
    fields = [f.name for f in dataclasses.fields(ViTConfig)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown ViTConfig field(s) {unknown}; known fields: {', '.join(fields)}")
    return dataclasses.replace(config, **overrides)


# -------------------------------------------------------------------------------------------------
# Presets. Each builder takes **overrides of ViTConfig fields, e.g. vit_b_16(num_classes=10).

def _builder(name: str, doc: str, **defaults: Any) -> Callable[..., ViT]:
    return preset_builder(ViT, ViTConfig, name, doc, **defaults)


# Paper Table 1 (Base/Large/Huge) and DeiT (Touvron et al. 2021) Tiny/Small; 224x224 RGB ImageNet.
vit_ti_16 = _builder("vit_ti_16", "ViT-Ti/16 (DeiT-Tiny): D=192, 12 blocks, 3 heads, MLP 768; 5.7M params.",
                     patch_size=16, dim=192, depth=12, heads=3, mlp_dim=768)
vit_s_16 = _builder("vit_s_16", "ViT-S/16 (DeiT-Small): D=384, 12 blocks, 6 heads, MLP 1536; 22M params.",
                    patch_size=16, dim=384, depth=12, heads=6, mlp_dim=1536)
vit_b_16 = _builder("vit_b_16", "ViT-B/16 (paper Table 1): D=768, 12 blocks, 12 heads, MLP 3072; 86M params.",
                    patch_size=16, dim=768, depth=12, heads=12, mlp_dim=3072)
vit_l_16 = _builder("vit_l_16", "ViT-L/16 (paper Table 1): D=1024, 24 blocks, 16 heads, MLP 4096; 304M params.",
                    patch_size=16, dim=1024, depth=24, heads=16, mlp_dim=4096)
vit_h_14 = _builder("vit_h_14", "ViT-H/14 (paper Table 1): D=1280, 32 blocks, 16 heads, MLP 5120; 632M params.",
                    patch_size=14, dim=1280, depth=32, heads=16, mlp_dim=5120)
# D2L chapter 11.8: 96x96 grayscale Fashion-MNIST, patch 16, D=512, 2 blocks, 8 heads, MLP 2048,
# dropout 0.1 on embeddings, attention weights and MLP. D2L's attention Linears have no biases and
# its LayerNorms use PyTorch's default eps 1e-5, so the preset is D2L's model (6,457,866 parameters,
# logits equal in tests/test_vit.py); the one difference is a dropout after the attention
# projection, which D2L leaves out (training only).
d2l_vit = _builder("d2l_vit", "D2L 11.8's ViT: 96x96x1 input, patch 16, D=512, 2 blocks, 8 heads, MLP 2048, dropout 0.1.",
                   image_size=96, patch_size=16, in_channels=1, num_classes=10, dim=512, depth=2,
                   heads=8, mlp_dim=2048, dropout=0.1, attn_dropout=0.1, qkv_bias=False, proj_bias=False,
                   norm_eps=1e-5)
# Fashion-MNIST on a CPU: the best of the recipes tried within a few minutes of training on a 2-core
# CPU (patch 7 ran ~3x faster than patch 4 at equal width; a 1.8M-parameter model did worse in
# 10 minutes because it got fewer epochs). Chapter 05 and `make checkpoint` train it.
vit_fmnist = _builder("vit_fmnist", "Small ViT for 28x28 Fashion-MNIST on a CPU: patch 7 (16 tokens), D=128, "
                      "6 blocks, 2 heads, MLP 256, mean pooling; 0.8M params.",
                      image_size=28, patch_size=7, in_channels=1, num_classes=10, dim=128, depth=6,
                      heads=2, mlp_dim=256, pool="mean", pos_embed="learned")
vit_fmnist_p4 = _builder("vit_fmnist_p4", "vit_fmnist with patch 4 (49 tokens): slower (~3x), more detail.",
                         image_size=28, patch_size=4, in_channels=1, num_classes=10, dim=128, depth=6,
                         heads=2, mlp_dim=256, pool="mean", pos_embed="learned")
# The paper's read-out on vit_fmnist_p4's grid: a class token in front of 7x7 = 49 patch tokens, so
# attention maps (what the class token looks at), rollout and attention distances have a grid fine
# enough to read, as in the ViT paper's Figures 6-7. Chapter 06 looks inside it.
vit_fmnist_p4_cls = _builder("vit_fmnist_p4_cls", "vit_fmnist_p4 read out through a class token (49 + 1 tokens), "
                             "as the paper: for attention maps and rollout.",
                             image_size=28, patch_size=4, in_channels=1, num_classes=10, dim=128, depth=6,
                             heads=2, mlp_dim=256, pool="cls", pos_embed="learned")

PRESETS: dict[str, Callable[..., ViT]] = {
    b.__name__: b for b in (vit_ti_16, vit_s_16, vit_b_16, vit_l_16, vit_h_14, d2l_vit,
                            vit_fmnist, vit_fmnist_p4, vit_fmnist_p4_cls)
}
