"""Token mixers: the one sub-layer of a MetaFormer block that lets tokens exchange information.

MetaFormer (Yu et al., CVPR 2022) writes a ViT block as x + TokenMixer(Norm(x)), then
x + MLP(Norm(x)), and asks how much of the ViT's success is attention itself. Every mixer here
maps (B, N, D) tokens that came from an (H, W) grid (N = H·W, row-major) to (B, N, D):

    "attention"  multi-head self-attention (`MultiHeadSelfAttention`, fused or explicit path)
    "pooling"    PoolFormer: AvgPool3x3(x) - x on the grid; no parameters
    "mlp"        MLP-Mixer's token-mixing MLP (Tolstikhin et al. 2021): an MLP along the token
                 axis, shared by all channels; its weights are tied to N, so to the image size
    "identity"   no mixing: each token sees only itself (IdentityFormer, the floor)
    "dwconv"     a depthwise 3x3 convolution on the grid (ConvMixer-like, Trockman & Kolter 2022)

Only attention's weights depend on the input; pooling and dwconv are local and fixed-pattern,
the token MLP is global but the same for every image.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .attention import MultiHeadSelfAttention
from .blocks import MLP

MIXERS = ("attention", "pooling", "mlp", "identity", "dwconv")


def _grid(grid_size: tuple[int, int]) -> tuple[int, int]:
    if (not isinstance(grid_size, (tuple, list)) or len(grid_size) != 2
            or any(isinstance(g, bool) or not isinstance(g, int) or g <= 0 for g in grid_size)):
        raise ValueError(f"grid_size must be a pair of positive ints (H, W), got {grid_size!r}")
    return int(grid_size[0]), int(grid_size[1])


def _check_odd(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 2 == 0:
        raise ValueError(f"{name} must be a positive odd int (so the grid keeps its size), got {value!r}")


def check_tokens(x: torch.Tensor, grid_size: tuple[int, int], who: str) -> tuple[int, int]:
    """Raise a ValueError naming `who` unless `x` is (B, H·W, D) tokens of the (H, W) grid; returns (H, W)."""
    h, w = grid_size
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} expects tokens (B, N, D), got {shape}")
    if x.shape[1] != h * w:
        raise ValueError(f"{who} was built for grid_size=({h}, {w}), i.e. N={h * w} tokens, "
                         f"got N={x.shape[1]} (tokens of shape {tuple(x.shape)})")
    return h, w


class GridMixer(nn.Module):
    """Base class of the mixers that need the tokens' (H, W) grid."""

    def __init__(self, grid_size: tuple[int, int]) -> None:
        super().__init__()
        self.grid_size = _grid(grid_size)

    def check(self, x: torch.Tensor) -> tuple[int, int]:
        return check_tokens(x, self.grid_size, type(self).__name__)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}"


class PoolingMixer(GridMixer):
    """PoolFormer's token mixer: AvgPool(x) - x, average pooling with stride 1 on the grid.

    `count_include_pad=False`: a border token averages only its real neighbours (4 at a corner
    of a 3x3 window, 6 on an edge), not zero padding, so borders are not pulled towards 0.
    Subtracting x because the block adds x back through its residual: the sub-layer's output is
    the neighbourhood's average minus the token itself.
    """

    def __init__(self, grid_size: tuple[int, int], pool_size: int = 3) -> None:
        super().__init__(grid_size)
        _check_odd("pool_size", pool_size)
        self.pool_size = pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.check(x)
        grid = rearrange(x, "b (h w) d -> b d h w", h=h, w=w)  # (B, D, H, W)
        pooled = F.avg_pool2d(grid, self.pool_size, stride=1, padding=self.pool_size // 2,
                              count_include_pad=False)  # (B, D, H, W)
        return rearrange(pooled - grid, "b d h w -> b (h w) d")  # (B, N, D)


class TokenMLP(MLP):
    """MLP-Mixer's token mixing: the same MLP(N -> hidden -> N) applied to every channel's column of
    N values; Linear layers named `fc1`, `fc2` as in `MLP` (timm: `mlp_tokens`)."""

    def __init__(self, grid_size: tuple[int, int], hidden: int, dropout: float = 0.0) -> None:
        h, w = _grid(grid_size)
        super().__init__(h * w, hidden, dropout)
        self.grid_size = (h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tokens(x, self.grid_size, "TokenMLP")
        x = x.transpose(1, 2)  # (B, D, N): mix along the tokens
        return super().forward(x).transpose(1, 2)  # (B, D, N) -> (B, N, D)


class IdentityMixer(GridMixer):
    """No mixing: token i's output is token i. With it, a model sees its patches as a bag whose only
    link is the final average; what it still learns measures the rest of the block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return x


class DepthwiseConvMixer(GridMixer):
    """A depthwise k x k convolution on the grid: one k x k filter per channel (D·k² + D parameters)."""

    def __init__(self, grid_size: tuple[int, int], dim: int, kernel_size: int = 3) -> None:
        super().__init__(grid_size)
        _check_odd("kernel_size", kernel_size)
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.check(x)
        grid = rearrange(x, "b (h w) d -> b d h w", h=h, w=w)  # (B, D, H, W)
        return rearrange(self.conv(grid), "b d h w -> b (h w) d")  # (B, N, D)


def make_mixer(name: str, dim: int, grid_size: tuple[int, int], *, heads: int = 1,
               qkv_bias: bool = True, attn_dropout: float = 0.0, dropout: float = 0.0,
               fused: bool = True, token_mlp_ratio: float = 0.5, pool_size: int = 3) -> nn.Module:
    """The token mixer `name` (one of MIXERS) for D=`dim` tokens on a `grid_size` grid.

    Args:
        heads, qkv_bias, attn_dropout, fused: for "attention" (see `MultiHeadSelfAttention`).
        dropout: after the attention projection, inside the token MLP.
        token_mlp_ratio: "mlp": hidden width = int(ratio * dim) (Mixer: 0.5, so 256 for D=512).
        pool_size: "pooling" window and "dwconv" kernel size.
    """
    if name not in MIXERS:
        raise ValueError(f"mixer must be one of {MIXERS}, got {name!r}")
    if name == "attention":
        return MultiHeadSelfAttention(dim, heads, qkv_bias=qkv_bias, attn_dropout=attn_dropout,
                                      proj_dropout=dropout, fused=fused)
    if name == "pooling":
        return PoolingMixer(grid_size, pool_size)
    if name == "mlp":
        return TokenMLP(grid_size, int(token_mlp_ratio * dim), dropout)
    if name == "dwconv":
        return DepthwiseConvMixer(grid_size, dim, pool_size)
    return IdentityMixer(grid_size)
