"""Tokens-to-Token ViT (Yuan et al., ICCV 2021): tokenise progressively with overlapping soft splits.

ViT's hard split cuts the image into disjoint patches, so edges and lines that cross a patch
border are seen by no single token. T2T instead repeats two steps a few times:

1. **soft split**: cut the image (or the re-structured token map) into k x k windows that
   *overlap* by s pixels (the paper's letters: kernel k, overlap s, padding p), so the step from
   one window to the next, the stride `F.unfold` takes, is k - s; each window's pixels,
   concatenated, become one token, so neighbouring tokens share pixels and the sequence gets
   shorter by about (k - s)² each time;
2. **re-structurisation**: a small transformer mixes the tokens, and they are reshaped back into
   an image-like (C, h, w) map for the next soft split.

A final projection gives D-dimensional tokens for a *deep-narrow* ViT backbone (e.g. 14 blocks of
width 384 for T2T-ViT-14, versus ViT-B's 12 blocks of 768): the paper found deep and narrow better
than shallow and wide at the same budget.

The 224x224 presets follow the paper's code (performer token layers, no q/k/v bias in the
backbone, fixed 1D sinusoidal position table) and match its parameter counts and MACs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..layers.attention import AttentionProbe
from ..layers.blocks import MLP, EncoderBlock
from ..layers.dropout import Dropout
from .preset import preset_builder

ATTN_IMPLS = ("auto", "fused", "explicit")
TOKEN_TYPES = ("transformer", "performer")


def soft_split_length(size: int, kernel: int, stride: int, padding: int) -> int:
    """Windows along one side: floor((size + 2·padding - kernel) / stride) + 1 (as `nn.Unfold`)."""
    for name, v, lo in (("size", size, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                        ("padding", padding, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if kernel > size + 2 * padding:
        raise ValueError(f"kernel={kernel} is larger than the padded size {size} + 2*{padding}")
    return (size + 2 * padding - kernel) // stride + 1


def soft_split(images: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Overlapping k x k windows as tokens: (B, C, H, W) -> (B, L, C*k*k).

    L = soft_split_length(H, ...) * soft_split_length(W, ...); windows in row-major order, each
    flattened channel-first (c, ki, kj) as `F.unfold` does. With stride < kernel, neighbouring
    windows overlap by kernel - stride pixels: the paper's s, so stride = k - s.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a 4D tensor (B, C, H, W), got {shape}")
    h, w = images.shape[-2:]
    lh, lw = soft_split_length(h, kernel, stride, padding), soft_split_length(w, kernel, stride, padding)
    out = F.unfold(images, kernel_size=kernel, stride=stride, padding=padding)  # (B, C*k*k, L)
    if out.shape[-1] != lh * lw:  # the formula is the contract the rest of the model relies on
        raise RuntimeError(f"unfold gave {out.shape[-1]} windows, the formula {lh}x{lw}")
    return out.transpose(1, 2)  # (B, L, C*k*k)


def restructurize(tokens: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """Tokens back to an image-like map: (B, h*w, C) -> (B, C, h, w) (the paper's 'reshape')."""
    width = height if width is None else width
    if tokens.ndim != 3 or tokens.shape[1] != height * width:
        raise ValueError(f"tokens must be (B, {height}*{width}={height * width}, C), got {tuple(tokens.shape)}")
    return rearrange(tokens, "b (h w) c -> b c h w", h=height, w=width)


class TokenAttention(nn.Module):
    """Single-head attention whose output width (`out_dim`) differs from its input width (`in_dim`).

    As in the paper's code, the residual connection adds the *values* (already `out_dim` wide)
    because the input has a different width, and the scores are scaled by in_dim**-0.5. Always
    explicit (sequences are short after the first split); the weights pass through `.probe`.
    """

    def __init__(self, in_dim: int, out_dim: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.scale = in_dim ** -0.5
        self.qkv = nn.Linear(in_dim, 3 * out_dim, bias=qkv_bias)
        self.probe = AttentionProbe()
        self.proj = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, in_dim) -> (B, L, out_dim)."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # each (B, L, out_dim)
        weights = self.probe(((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1))  # (B, L, L)
        return v + self.proj(weights @ v)  # skip through v: x is in_dim wide


class TokenTransformer(nn.Module):
    """The T2T module's small transformer layer: LN -> TokenAttention (width change), LN -> MLP."""

    def __init__(self, in_dim: int, out_dim: int, mlp_ratio: float = 1.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(in_dim)
        self.attn = TokenAttention(in_dim, out_dim)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = MLP(out_dim, max(1, int(out_dim * mlp_ratio)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x))  # (B, L, out_dim)
        return x + self.mlp(self.norm2(x))


class TokenPerformer(nn.Module):
    """Performer (Choromanski et al. 2021) version of `TokenTransformer`, used by the paper's presets.

    softmax(q kᵀ) is approximated with positive random features φ(x) = exp(wᵀx - |x|²/2)/√m, so
    attention costs O(L m d) instead of O(L² d): affordable on the 3,136 tokens of a 224 image.
    The random projection `w` is fixed (a frozen parameter).
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_ratio: float = 0.5, dropout: float = 0.1) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.m = int(out_dim * kernel_ratio)
        self.norm1 = nn.LayerNorm(in_dim)
        self.kqv = nn.Linear(in_dim, 3 * out_dim)
        self.proj = nn.Linear(out_dim, out_dim)
        self.drop = Dropout(dropout)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = MLP(out_dim, out_dim, dropout)
        w = nn.init.orthogonal_(torch.empty(self.m, out_dim)) * math.sqrt(self.m)
        # Fixed, but a (frozen) Parameter as in the paper's code, whose parameter counts include it.
        self.w = nn.Parameter(w, requires_grad=False)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x): (B, L, d) -> (B, L, m)."""
        wtx = torch.einsum("bld,md->blm", x, self.w)
        return torch.exp(wtx - (x * x).sum(dim=-1, keepdim=True) / 2) / math.sqrt(self.m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, in_dim) -> (B, L, out_dim)."""
        k, q, v = self.kqv(self.norm1(x)).split(self.out_dim, dim=-1)  # each (B, L, out_dim)
        kp, qp = self._features(k), self._features(q)  # (B, L, m)
        norm = torch.einsum("blm,bm->bl", qp, kp.sum(dim=1))[..., None]  # (B, L, 1)
        kv = torch.einsum("bld,blm->bdm", v, kp)  # (B, out_dim, m)
        y = torch.einsum("blm,bdm->bld", qp, kv) / (norm + 1e-8)  # (B, L, out_dim)
        x = v + self.drop(self.proj(y))  # skip through v, as in TokenAttention
        return x + self.mlp(self.norm2(x))


class T2TModule(nn.Module):
    """Soft split -> token layer -> re-structurise, repeated; a last soft split; a linear projection.

    Args:
        image_size: square input side.
        in_channels: image channels.
        token_dim: width of the token layers' outputs (paper: 64).
        embed_dim: width D of the output tokens.
        kernels, strides, paddings: the soft splits, each stride k - s for the paper's overlap s
            (paper: k = (7, 3, 3), s = (3, 1, 1), p = (2, 1, 1), so strides (4, 2, 2)).
        tokens_type: "transformer" or "performer" token layers.
    """

    def __init__(self, image_size: int, in_channels: int, token_dim: int, embed_dim: int,
                 kernels: tuple[int, ...] = (7, 3, 3), strides: tuple[int, ...] = (4, 2, 2),
                 paddings: tuple[int, ...] = (2, 1, 1), tokens_type: str = "performer") -> None:
        super().__init__()
        if not (len(kernels) == len(strides) == len(paddings) >= 1):
            raise ValueError(f"kernels, strides and paddings must have the same length >= 1, got "
                             f"{kernels}, {strides}, {paddings}")
        if tokens_type not in TOKEN_TYPES:
            raise ValueError(f"tokens_type must be one of {TOKEN_TYPES}, got {tokens_type!r}")
        self.splits = list(zip(kernels, strides, paddings))
        sizes, side = [image_size], image_size
        for k, st, p in self.splits:  # st: the stride, k - s for the paper's overlap s
            side = soft_split_length(side, k, st, p)
            sizes.append(side)
        self.sizes = sizes  # map side before each split, and the final grid side
        layers = []
        channels = in_channels
        for k, _, _ in self.splits[:-1]:
            in_dim = channels * k * k
            layers.append(TokenTransformer(in_dim, token_dim) if tokens_type == "transformer"
                          else TokenPerformer(in_dim, token_dim))
            channels = token_dim
        self.token_layers = nn.ModuleList(layers)
        self.project = nn.Linear(channels * self.splits[-1][0] ** 2, embed_dim)
        self.grid_size = (sizes[-1], sizes[-1])
        self.num_patches = sizes[-1] ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D)."""
        for (k, st, p), layer, side in zip(self.splits, self.token_layers, self.sizes[1:]):
            x = layer(soft_split(x, k, st, p))  # (B, side*side, token_dim)
            x = restructurize(x, side)  # (B, token_dim, side, side)
        k, st, p = self.splits[-1]
        return self.project(soft_split(x, k, st, p))  # (B, N, D)


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """(1, n_position, dim): the 1D sin/cos table of Vaswani et al., which T2T-ViT keeps fixed."""
    pos = torch.arange(n_position, dtype=torch.float64)[:, None]
    i = torch.arange(dim)[None]
    angle = pos / torch.pow(10000.0, (2 * (i // 2)).double() / dim)  # (n, dim)
    table = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()[None]


@dataclass
class T2TViTConfig:
    """T2T-ViT's shape: the T2T module, then a deep-narrow ViT backbone."""
    image_size: int = 224          # square input side
    in_channels: int = 3           # image channels
    num_classes: int = 1000        # classifier outputs
    dim: int = 384                 # backbone width D (narrow)
    depth: int = 14                # backbone blocks (deep)
    heads: int = 6                 # backbone attention heads
    mlp_dim: int = 1152            # backbone MLP hidden width (paper: 3 D)
    token_dim: int = 64            # width of the T2T module's token layers
    tokens_type: str = "performer"  # "performer" (paper's presets) or "transformer"
    kernels: tuple[int, ...] = (7, 3, 3)   # soft split kernel sizes
    strides: tuple[int, ...] = (4, 2, 2)   # soft split strides k - s (paper's overlap s: 3, 1, 1); product = downsampling
    paddings: tuple[int, ...] = (2, 1, 1)  # soft split paddings
    pool: str = "cls"              # "cls" token or "mean" of the patch tokens
    pos_embed: str = "sincos"      # "sincos" (fixed 1D table, as the paper) or "learned"
    qkv_bias: bool = False         # the paper's backbone has no q, k, v bias
    dropout: float = 0.0           # dropout in the backbone (after attention projection, MLP)
    attn_dropout: float = 0.0      # dropout on the backbone's attention weights
    norm_eps: float = 1e-5         # LayerNorm epsilon (the paper's code: PyTorch default)
    attn_impl: str = "auto"        # backbone attention: "auto" (fused on CUDA), "fused", "explicit"

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "num_classes", "dim", "depth", "heads", "mlp_dim",
                     "token_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")
        self.kernels, self.strides, self.paddings = tuple(self.kernels), tuple(self.strides), tuple(self.paddings)
        if not (len(self.kernels) == len(self.strides) == len(self.paddings) >= 1):
            raise ValueError(f"kernels, strides and paddings must have equal length >= 1, got "
                             f"{self.kernels}, {self.strides}, {self.paddings}")
        _ = self.grid  # checks every soft split fits
        for name, value, allowed in (("tokens_type", self.tokens_type, TOKEN_TYPES),
                                     ("pool", self.pool, ("cls", "mean")),
                                     ("pos_embed", self.pos_embed, ("sincos", "learned")),
                                     ("attn_impl", self.attn_impl, ATTN_IMPLS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        for name in ("dropout", "attn_dropout"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p!r}")

    @property
    def grid(self) -> int:
        """Side of the token grid after the T2T module."""
        side = self.image_size
        for k, stride, p in zip(self.kernels, self.strides, self.paddings):
            side = soft_split_length(side, k, stride, p)
        return side


class T2TViT(nn.Module):
    """T2T module -> [CLS] + position table -> deep-narrow encoder -> norm -> head."""

    def __init__(self, config: T2TViTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.tokens_to_token = T2TModule(cfg.image_size, cfg.in_channels, cfg.token_dim, cfg.dim,
                                         cfg.kernels, cfg.strides, cfg.paddings, cfg.tokens_type)
        self.grid_size = self.tokens_to_token.grid_size
        n = self.tokens_to_token.num_patches
        self.num_prefix_tokens = 1 if cfg.pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.pool == "cls" else None
        table = sinusoid_table(n + self.num_prefix_tokens, cfg.dim)
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(table.clone().normal_(std=0.02))
        else:
            # Fixed, yet a frozen Parameter as in the paper's code: its parameter counts
            # (21.5M / 39.2M / 64.1M) include this table.
            self.pos_embed = nn.Parameter(table, requires_grad=False)
        self.pos_drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([
            EncoderBlock(cfg.dim, cfg.heads, cfg.mlp_dim, cfg.dropout, cfg.attn_dropout,
                         qkv_bias=cfg.qkv_bias, norm_eps=cfg.norm_eps, fused=cfg.attn_impl == "fused")
            for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def set_attn_impl(self, impl: str) -> None:
        """Backbone attention path: "auto", "fused" or "explicit" (explicit feeds the probes)."""
        if impl not in ATTN_IMPLS:
            raise ValueError(f"impl must be one of {ATTN_IMPLS}, got {impl!r}")
        self.config.attn_impl = impl
        for block in self.blocks:
            block.attn.fused = impl == "fused"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, prefix + N, D), after the final norm."""
        impl = self.config.attn_impl
        fused = x.device.type == "cuda" if impl == "auto" else impl == "fused"
        x = self.tokens_to_token(x)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, D)
        x = self.pos_drop(x + self.pos_embed)
        for block in self.blocks:
            x = block(x, fused=fused)
        return self.norm(x)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, prefix + N, D) -> (B, classes)."""
        pooled = tokens[:, 0] if self.cls_token is not None else tokens.mean(dim=1)
        return self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _builder(name: str, **defaults: Any) -> Callable[..., T2TViT]:
    return preset_builder(T2TViT, T2TViTConfig, name, f"T2T-ViT preset {name!r}: {defaults}.", **defaults)


# The paper's Table 1 (MLP ratio 3, token_dim 64, performer token layers).
t2t_vit_14 = _builder("t2t_vit_14", dim=384, depth=14, heads=6, mlp_dim=1152)
t2t_vit_19 = _builder("t2t_vit_19", dim=448, depth=19, heads=7, mlp_dim=1344)
t2t_vit_24 = _builder("t2t_vit_24", dim=512, depth=24, heads=8, mlp_dim=1536)
# 28x28 Fashion-MNIST: soft splits 7/2/3 -> 14x14, 3/2/1 -> 7x7, 3/2/1 -> 4x4 = 16 tokens (as ViT
# with patch 7), transformer token layers, and the backbone of `vit_fmnist` (128 wide, 6 deep, mean
# pooling, learned positions) so a comparison isolates the tokeniser.
t2t_vit_fmnist = _builder("t2t_vit_fmnist", image_size=28, in_channels=1, num_classes=10, dim=128,
                          depth=6, heads=2, mlp_dim=256, token_dim=32, tokens_type="transformer",
                          kernels=(7, 3, 3), strides=(2, 2, 2), paddings=(3, 1, 1), pool="mean",
                          pos_embed="learned", qkv_bias=True, norm_eps=1e-6)

PRESETS: dict[str, Callable[..., T2TViT]] = {
    "t2t_vit_14": t2t_vit_14, "t2t_vit_19": t2t_vit_19, "t2t_vit_24": t2t_vit_24,
    "t2t_vit_fmnist": t2t_vit_fmnist,
}
