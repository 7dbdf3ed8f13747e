"""Swin Transformer (Liu et al., ICCV 2021): attention inside local windows, shifted every other block,
and patch merging between stages so the tokens form a hierarchy like a CNN's feature pyramid.

Global self-attention over N tokens costs O(N²); attention inside M x M windows costs O(N M²),
linear in the number of tokens. Windows alone never exchange information, so every second block
shifts the window grid by M/2 (a cyclic `torch.roll` plus a mask keeping tokens that were not
neighbours in the image apart). Everything is channel-last, (B, H, W, C), as in the paper's code.

The layers match torchvision's `swin_t/s/b` (parameter for parameter; see `convert_swin.py`), but
are written to read like the paper: partition -> attend -> reverse, shift inside the block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..layers.attention import AttentionProbe, scaled_dot_product_attention
from ..layers.blocks import MLP
from ..layers.dropout import Dropout
from ..layers.patches import PatchEmbed
from .preset import preset_builder

# torchvision and the paper's code fill masked scores with -100, not -inf: exp(-100) ~ 4e-44 is zero
# in practice, and a row can never be all -inf (which would give NaN).
MASK_VALUE: float = -100.0
ATTN_IMPLS = ("auto", "fused", "explicit")


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a (B, H, W, C) feature map into non-overlapping M x M windows.

    Returns:
        (B * nW, M*M, C), windows in row-major order per image, tokens row-major inside a window.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, H, W, C), got shape {tuple(x.shape)}")
    _, h, w, _ = x.shape
    if h % window_size or w % window_size:
        raise ValueError(f"window_size={window_size} must divide the feature map size (H, W)=({h}, {w})")
    return rearrange(x, "b (nh m1) (nw m2) c -> (b nh nw) (m1 m2) c", m1=window_size, m2=window_size)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `window_partition`: (B * nW, M*M, C) -> (B, H, W, C)."""
    if height % window_size or width % window_size:
        raise ValueError(f"window_size={window_size} must divide (height, width)=({height}, {width})")
    nh, nw = height // window_size, width // window_size
    return rearrange(windows, "(b nh nw) (m1 m2) c -> b (nh m1) (nw m2) c",
                     nh=nh, nw=nw, m1=window_size, m2=window_size)


def relative_position_index(window_size: int) -> torch.Tensor:
    """(M*M, M*M) long: for tokens i, j of a window, the row of the bias table holding bias(i - j).

    Offsets (dy, dx) range over [-(M-1), M-1]², i.e. (2M-1)² distinct values, numbered row-major.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                        indexing="ij")).flatten(1)  # (2, M*M)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, M*M, M*M): offset of token i from token j
    rel = rel + (window_size - 1)  # shift to [0, 2M-2]
    return rel[0] * (2 * window_size - 1) + rel[1]  # (M*M, M*M)


def shift_region_ids(height: int, width: int, window_size: int, shift: int) -> torch.Tensor:
    """(H, W) long: after rolling the map by -`shift`, which of the 9 regions each position came from.

    Tokens in the same window but from different regions were not neighbours in the image (the roll
    wrapped them around), so they must not attend to each other.
    """
    ids = torch.zeros(height, width, dtype=torch.long)
    if shift == 0:
        return ids
    cuts = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    count = 0
    for hs in cuts:
        for ws in cuts:
            ids[hs, ws] = count
            count += 1
    return ids


def shifted_window_mask(height: int, width: int, window_size: int, shift: int) -> torch.Tensor:
    """(nW, M*M, M*M) float additive mask for shifted windows: 0 where tokens may attend, -100 else."""
    if shift == 0:
        nw = (height // window_size) * (width // window_size)
        return torch.zeros(nw, window_size ** 2, window_size ** 2)
    ids = shift_region_ids(height, width, window_size, shift)
    win = window_partition(ids[None, :, :, None], window_size)[..., 0]  # (nW, M*M)
    same = win[:, :, None] == win[:, None, :]  # (nW, M*M, M*M)
    return torch.zeros(same.shape).masked_fill(~same, MASK_VALUE)


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability p, in training only."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability p must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep  # rescale so the expected output equals the input

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each M x M window, with a learned relative position bias.

    The bias is one scalar per head for each of the (2M-1)² relative offsets, shared by every window.

    Args:
        dim: channels C; divisible by `heads`.
        heads: attention heads.
        window_size: M.
        qkv_bias: bias in the q, k, v projection.
        attn_dropout, proj_dropout: dropout on the weights and after the output projection.
        fused: True uses `F.scaled_dot_product_attention`; False materialises the weights and calls `.probe`.
    """

    def __init__(self, dim: int, heads: int, window_size: int, qkv_bias: bool = True,
                 attn_dropout: float = 0.0, proj_dropout: float = 0.0, fused: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.dim, self.heads, self.window_size = dim, heads, window_size
        self.attn_dropout = attn_dropout
        self.fused = bool(fused)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size).flatten(),
                             persistent=False)
        self.attn_drop = Dropout(attn_dropout)
        self.probe = AttentionProbe()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = Dropout(proj_dropout)

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, M*M, M*M): the bias added to every window's attention scores."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index]  # (M*M*M*M, heads)
        return bias.view(n, n, self.heads).permute(2, 0, 1)  # (heads, M*M, M*M)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None = None,
                fused: bool | None = None) -> torch.Tensor:
        """(B*nW, M*M, C) -> (B*nW, M*M, C). `mask`: (nW, M*M, M*M) additive, for shifted windows."""
        use_fused = self.fused if fused is None else fused
        bw, n, c = windows.shape
        q, k, v = rearrange(self.qkv(windows), "b n (three h d) -> three b h n d",
                            three=3, h=self.heads)  # each (B*nW, h, N, C/h)
        bias = self.relative_position_bias()[None]  # (1, h, N, N)
        if mask is not None:
            nw = mask.shape[0]
            bias = bias + mask[:, None]  # (nW, h, N, N)
            # windows are ordered (image, window): repeat the per-window mask for every image
            bias = bias.repeat(bw // nw, 1, 1, 1)  # (B*nW, h, N, N)
        if use_fused:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias.to(q.dtype),
                dropout_p=self.attn_dropout if self.training else 0.0)
        else:
            _, weights = scaled_dot_product_attention(q, k, v, mask=bias.to(q.dtype))  # (B*nW, h, N, N)
            weights = self.attn_drop(self.probe(weights))
            out = weights @ v
        out = rearrange(out, "b h n d -> b n (h d)")  # (B*nW, N, C)
        return self.proj_drop(self.proj(out))


class SwinBlock(nn.Module):
    """Pre-norm block: [shift] -> window attention -> [unshift], then an MLP; both residual.

    Args:
        dim, heads, window_size: as in `WindowAttention`.
        grid_size: (H, W) of the feature map this block sees; M must divide both.
        shift: how far the windows are shifted (0 = W-MSA, M//2 = SW-MSA).
        mlp_ratio: MLP hidden width / dim.
        dropout, attn_dropout, drop_path: regularisation (all off in eval mode).
        norm_eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, heads: int, window_size: int, grid_size: tuple[int, int],
                 shift: int = 0, mlp_ratio: float = 4.0, qkv_bias: bool = True, dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, norm_eps: float = 1e-5,
                 fused: bool = True) -> None:
        super().__init__()
        h, w = grid_size
        if h % window_size or w % window_size:
            raise ValueError(f"window_size={window_size} must divide the grid (H, W)=({h}, {w})")
        if not 0 <= shift < window_size:
            raise ValueError(f"shift must be in [0, window_size={window_size}), got {shift}")
        self.grid_size, self.window_size, self.shift = (h, w), window_size, shift
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = WindowAttention(dim, heads, window_size, qkv_bias, attn_dropout, dropout, fused)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)
        # The mask depends only on the grid and the shift: compute it once.
        mask = shifted_window_mask(h, w, window_size, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        _, h, w, _ = x.shape
        if (h, w) != self.grid_size:
            raise ValueError(f"this block was built for a {self.grid_size} grid, got ({h}, {w})")
        y = self.norm1(x)
        if self.shift:
            # cyclic shift up-left: the windows now straddle the previous windows' borders
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(y, self.window_size)  # (B*nW, M*M, C)
        windows = self.attn(windows, self.attn_mask, fused=fused)
        y = window_reverse(windows, self.window_size, h, w)  # (B, H, W, C)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Halve H and W, double C: concatenate each 2 x 2 neighbourhood (4C), normalise, Linear(4C, 2C)."""

    def __init__(self, dim: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H/2, W/2, 2C)."""
        h, w = x.shape[1:3]
        if h % 2 or w % 2:
            raise ValueError(f"patch merging needs an even grid, got (H, W)=({h}, {w})")
        # concatenation order (0,0), (1,0), (0,1), (1,1) as in the paper's code (and torchvision)
        x = rearrange(x, "b (h p1) (w p2) c -> b h w (p2 p1 c)", p1=2, p2=2)  # (B, H/2, W/2, 4C)
        return self.reduction(self.norm(x))  # (B, H/2, W/2, 2C)


class SwinStage(nn.Module):
    """`depth` Swin blocks alternating plain and shifted windows, then (optionally) patch merging."""

    def __init__(self, dim: int, depth: int, heads: int, window_size: int, grid_size: tuple[int, int],
                 mlp_ratio: float, qkv_bias: bool, dropout: float, attn_dropout: float,
                 drop_path: Sequence[float], downsample: bool, norm_eps: float, fused: bool) -> None:
        super().__init__()
        # When one window covers the whole map, shifting would only wrap it around itself: skip it.
        shift = 0 if window_size >= max(grid_size) else window_size // 2
        self.blocks = nn.ModuleList([
            SwinBlock(dim, heads, window_size, grid_size, shift=0 if i % 2 == 0 else shift,
                      mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, dropout=dropout,
                      attn_dropout=attn_dropout, drop_path=drop_path[i], norm_eps=norm_eps, fused=fused)
            for i in range(depth)])
        self.downsample = PatchMerging(dim, norm_eps) if downsample else None

    def forward(self, x: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, fused=fused)
        return self.downsample(x) if self.downsample is not None else x


@dataclass
class SwinConfig:
    """A Swin Transformer's shape. Stage i has width embed_dim * 2**i on a grid of (H/P) / 2**i."""
    image_size: int = 224          # square input side
    patch_size: int = 4            # patch partition: P x P pixels per token
    in_channels: int = 3           # image channels
    num_classes: int = 1000        # classifier outputs
    embed_dim: int = 96            # C of stage 1
    depths: tuple[int, ...] = (2, 2, 6, 2)   # blocks per stage
    heads: tuple[int, ...] = (3, 6, 12, 24)  # attention heads per stage
    window_size: Union[int, tuple[int, ...]] = 7  # M, one for all stages or one per stage
    mlp_ratio: float = 4.0         # MLP hidden width / stage width
    qkv_bias: bool = True          # bias in the q, k, v projections
    dropout: float = 0.0           # dropout after attention projection, in the MLP and on tokens
    attn_dropout: float = 0.0      # dropout on attention weights
    drop_path: float = 0.1         # stochastic depth, rising linearly from 0 to this over the blocks
    norm_eps: float = 1e-5         # LayerNorm epsilon (torchvision: 1e-5)
    attn_impl: str = "auto"        # "auto" (fused on CUDA, explicit on CPU), "fused" or "explicit"

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "in_channels", "num_classes", "embed_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.depths, self.heads = tuple(self.depths), tuple(self.heads)
        if not self.depths or len(self.depths) != len(self.heads):
            raise ValueError(f"depths and heads must be non-empty and of equal length, got "
                             f"depths={self.depths} and heads={self.heads}")
        if any(d <= 0 for d in self.depths) or any(h <= 0 for h in self.heads):
            raise ValueError(f"depths and heads must be positive, got {self.depths} and {self.heads}")
        stages = len(self.depths)
        ws = self.window_size
        if not isinstance(ws, int):
            ws = self.window_size = tuple(ws)
        ws = (ws,) * stages if isinstance(ws, int) else ws
        if len(ws) != stages or any(not isinstance(m, int) or m <= 0 for m in ws):
            raise ValueError(f"window_size must be a positive int or one per stage ({stages}), got "
                             f"{self.window_size!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} must divide image_size={self.image_size}")
        g = self.image_size // self.patch_size
        for i in range(stages):
            dim = self.embed_dim * 2 ** i
            if dim % self.heads[i]:
                raise ValueError(f"stage {i + 1} width {dim} must be divisible by heads[{i}]={self.heads[i]}")
            if g % ws[i]:
                ok = [m for m in range(2, g + 1) if g % m == 0]
                raise ValueError(
                    f"window_size={ws[i]} of stage {i + 1} must divide its {g}x{g} token grid "
                    f"(image_size={self.image_size} / patch_size={self.patch_size} / 2**{i}); "
                    f"window sizes that fit: {ok}")
            if i < stages - 1:
                if g % 2:
                    raise ValueError(f"patch merging after stage {i + 1} needs an even grid, got {g}x{g} "
                                     f"(image_size={self.image_size}, patch_size={self.patch_size})")
                g //= 2
        for name in ("dropout", "attn_dropout", "drop_path"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p!r}")
        if self.attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {self.attn_impl!r}")

    @property
    def window_sizes(self) -> tuple[int, ...]:
        """M per stage."""
        ws = self.window_size
        return (ws,) * len(self.depths) if isinstance(ws, int) else tuple(ws)

    @property
    def grid_sizes(self) -> tuple[int, ...]:
        """Side of the token grid in each stage: image_size / patch_size / 2**i."""
        g = self.image_size // self.patch_size
        return tuple(g // 2 ** i for i in range(len(self.depths)))

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


class SwinTransformer(nn.Module):
    """Patch partition -> stages of (shifted) window attention with patch merging -> norm -> mean pool -> head."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = cfg = config
        fused = cfg.attn_impl == "fused"
        self.patch_embed = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.in_channels, cfg.embed_dim)
        self.patch_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.pos_drop = Dropout(cfg.dropout)
        total = sum(cfg.depths)
        rates = [cfg.drop_path * i / max(total - 1, 1) for i in range(total)]  # linear 0 -> drop_path
        self.stages = nn.ModuleList()
        start = 0
        for i, depth in enumerate(cfg.depths):
            g = cfg.grid_sizes[i]
            self.stages.append(SwinStage(
                cfg.embed_dim * 2 ** i, depth, cfg.heads[i], cfg.window_sizes[i], (g, g), cfg.mlp_ratio,
                cfg.qkv_bias, cfg.dropout, cfg.attn_dropout, rates[start:start + depth],
                downsample=i < len(cfg.depths) - 1, norm_eps=cfg.norm_eps, fused=fused))
            start += depth
        self.norm = nn.LayerNorm(cfg.num_features, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.num_features, cfg.num_classes)
        self.grid_size = (cfg.grid_sizes[0], cfg.grid_sizes[0])
        self.apply(_init_weights)

    def _fused(self, x: torch.Tensor) -> bool:
        impl = self.config.attn_impl
        return x.device.type == "cuda" if impl == "auto" else impl == "fused"

    def set_attn_impl(self, impl: str) -> None:
        """Switch every window attention to "auto", "fused" or "explicit" (explicit feeds the probes)."""
        if impl not in ATTN_IMPLS:
            raise ValueError(f"impl must be one of {ATTN_IMPLS}, got {impl!r}")
        self.config.attn_impl = impl
        for m in self.modules():
            if isinstance(m, WindowAttention):
                m.fused = impl == "fused"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, H/(P 2^(S-1)), W/(P 2^(S-1)), C_last), after the final norm."""
        fused = self._fused(x)
        g = self.grid_size
        x = self.patch_embed(x).view(x.shape[0], g[0], g[1], -1)  # (B, H/P, W/P, C)
        x = self.pos_drop(self.patch_norm(x))
        for stage in self.stages:
            x = stage(x, fused=fused)  # (B, H', W', C') halved / doubled after each stage but the last
        return self.norm(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, classes): global average pool over the map, then a linear layer."""
        return self.head(features.mean(dim=(1, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    # As torchvision and the paper's code: truncated normal(0.02) Linear weights, zero biases.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def window_attention_macs(tokens_side: int, dim: int, window_size: int | None) -> int:
    """Multiply-accumulates of one attention layer on a side x side map (q kᵀ and weights · v plus
    the four C x C projections); window_size=None means global attention. Paper eq. (1)-(2)."""
    n = tokens_side ** 2
    m2 = n if window_size is None else window_size ** 2
    return 4 * n * dim * dim + 2 * n * m2 * dim


def _builder(name: str, **defaults: Any) -> Callable[..., SwinTransformer]:
    return preset_builder(SwinTransformer, SwinConfig, name, f"Swin preset {name!r}: {defaults}.", **defaults)


# torchvision's presets (stochastic depth 0.2 / 0.3 / 0.5 as there), and a small one for 28x28 images:
# patch 2 -> a 14x14 grid of 7x7 windows (2x2 windows, shifted), then 7x7 (one window: global).
swin_t = _builder("swin_t", embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), drop_path=0.2)
swin_s = _builder("swin_s", embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24), drop_path=0.3)
swin_b = _builder("swin_b", embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), drop_path=0.5)
swin_fmnist = _builder("swin_fmnist", image_size=28, patch_size=2, in_channels=1, num_classes=10,
                       embed_dim=64, depths=(2, 4), heads=(2, 4), window_size=7, drop_path=0.0)

PRESETS: dict[str, Callable[..., SwinTransformer]] = {
    "swin_t": swin_t, "swin_s": swin_s, "swin_b": swin_b, "swin_fmnist": swin_fmnist,
}
