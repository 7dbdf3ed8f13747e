"""Convolutional tokenizers: a few convolutions instead of ViT's single patchify layer.

- `ConvStem` (Xiao et al. 2021, "Early Convolutions Help Transformers See Better"): a stack of 3x3
  convolutions (stride 2 where it downsamples) with BatchNorm and ReLU, then a 1x1 convolution to
  D. ViT's patchify is one large-kernel, large-stride convolution, hard to optimise; replacing it
  by a small stem of the same total stride made ViTs converge faster, less sensitive to the
  learning rate and optimiser, and better, at about the cost of one transformer block.
- `CCTTokenizer` (Hassani et al. 2021, "Escaping the Big Data Paradigm with Compact Transformers",
  §3): n layers of conv(k, s, padding) -> ReLU -> maxpool(3, 2, 1), then flatten to tokens. Its
  overlapping windows and pooling give the tokens the locality small datasets cannot teach.

Both return (B, N, D) tokens in row-major order, like `PatchEmbed`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from einops import rearrange

from .patches import Size2, _pair


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Length of one side after a convolution or max-pool: floor((size + 2·padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def cct_conv_defaults(kernel_size: int) -> tuple[int, int]:
    """CCT's (stride, padding) for a k x k tokenizer convolution: (max(1, k // 2 - 1), max(1, k // 2)),
    so k = 3 keeps the side (stride 1, padding 1) and k = 7 halves it (stride 2, padding 3)."""
    return max(1, kernel_size // 2 - 1), max(1, kernel_size // 2)


def cct_grid_size(image_size: Size2, n_conv_layers: int, conv: tuple[int, int, int],
                  pool: tuple[int, int, int] = (3, 2, 1)) -> tuple[int, int]:
    """(H', W') after `n_conv_layers` of conv (kernel, stride, padding) then max-pool (kernel, stride, padding)."""
    grid = _pair("image_size", image_size)
    for _ in range(n_conv_layers):
        for kernel, stride, padding in (conv, pool):
            grid = tuple(conv_out(s, kernel, stride, padding) for s in grid)  # type: ignore[assignment]
            if min(grid) < 1:
                raise ValueError(f"image_size={image_size!r} is too small for {n_conv_layers} conv-pool "
                                 f"layers (conv {conv}, pool {pool}): the token grid would vanish")
    return grid


def _positive(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def _int_list(name: str, value: Sequence[int]) -> tuple[int, ...]:
    if (not isinstance(value, (tuple, list)) or not value
            or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value)):
        raise ValueError(f"{name} must be a non-empty list of positive ints, got {value!r}")
    return tuple(value)


class ConvStem(nn.Module):
    """[3x3 conv (stride s_i) -> BatchNorm -> ReLU] x len(channels) -> 1x1 conv to D -> tokens.

    The convolutions have no bias (BatchNorm follows); the 1x1 projection has one, as a patch
    embedding does. With strides (2, 2, 2, 2) it replaces a 16x16 patchify (Xiao et al.'s stems
    for ViT-B/16); (2, 2) replaces a patch size of 4.

    Args:
        image_size: H (square) or (H, W) of the input images.
        in_channels: C of the input images.
        dim: D, the width of each token.
        channels: output channels of each 3x3 convolution (Xiao et al.'s smallest: 24, 48, 96, 192).
        strides: stride of each 3x3 convolution (1 or 2; padding 1 keeps the side at stride 1).
    Attributes:
        grid_size: (H', W') of the token grid, N = H'·W'.
    """

    def __init__(self, image_size: Size2, in_channels: int, dim: int,
                 channels: Sequence[int] = (24, 48, 96, 192), strides: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        h, w = _pair("image_size", image_size)
        _positive("in_channels", in_channels)
        _positive("dim", dim)
        channels, strides = _int_list("channels", channels), _int_list("strides", strides)
        if len(channels) != len(strides):
            raise ValueError(f"channels and strides need one entry per convolution, got channels={channels} "
                             f"({len(channels)}) and strides={strides} ({len(strides)})")
        layers: list[nn.Module] = []
        c_in, grid = in_channels, (h, w)
        for c, s in zip(channels, strides):
            layers += [nn.Conv2d(c_in, c, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True)]
            c_in, grid = c, (conv_out(grid[0], 3, s, 1), conv_out(grid[1], 3, s, 1))
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, dim, 1)
        self.image_size = (h, w)
        self.in_channels = in_channels
        self.grid_size = grid
        self.num_patches = grid[0] * grid[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.image_size):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"ConvStem was built for images (B, {self.in_channels}, {self.image_size[0]}, "
                             f"{self.image_size[1]}), got {shape}")
        x = self.proj(self.convs(x))  # (B, D, H', W')
        return rearrange(x, "b d h w -> b (h w) d")  # (B, N, D)


class CCTTokenizer(nn.Module):
    """CCT's convolutional tokenizer: [conv(k, s, p) -> ReLU -> maxpool] x n_conv_layers -> tokens.

    Channels go C -> hidden_channels -> ... -> D (the last layer outputs D directly). Module
    names follow the paper's code (`conv_layers.i.0` is layer i's convolution).

    Args:
        in_channels: C of the input images.
        dim: D, the width of each token (the last convolution's channels).
        n_conv_layers: number of conv-ReLU-pool layers.
        kernel_size: k of every convolution.
        stride: stride of every convolution; None = CCT's rule max(1, k // 2 - 1).
        padding: padding of every convolution; None = CCT's rule max(1, k // 2).
        pooling_kernel_size, pooling_stride, pooling_padding: the max-pool after each convolution.
        hidden_channels: channels between convolutions (CCT: 64).
        conv_bias: bias in the convolutions (CCT: none).
    """

    def __init__(self, in_channels: int, dim: int, n_conv_layers: int = 1, kernel_size: int = 3,
                 stride: int | None = None, padding: int | None = None, pooling_kernel_size: int = 3,
                 pooling_stride: int = 2, pooling_padding: int = 1, hidden_channels: int = 64,
                 conv_bias: bool = False) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("dim", dim), ("n_conv_layers", n_conv_layers),
                        ("kernel_size", kernel_size), ("pooling_kernel_size", pooling_kernel_size),
                        ("pooling_stride", pooling_stride), ("hidden_channels", hidden_channels)):
            _positive(name, v)
        default_stride, default_padding = cct_conv_defaults(kernel_size)
        stride = default_stride if stride is None else _positive("stride", stride)
        padding = default_padding if padding is None else _positive("padding", padding, 0)
        _positive("pooling_padding", pooling_padding, 0)
        if 2 * pooling_padding > pooling_kernel_size:
            raise ValueError(f"pooling_padding must be at most half of pooling_kernel_size="
                             f"{pooling_kernel_size}, got {pooling_padding}")
        self.in_channels = in_channels
        self.conv = (kernel_size, stride, padding)
        self.pool = (pooling_kernel_size, pooling_stride, pooling_padding)
        widths = [in_channels] + [hidden_channels] * (n_conv_layers - 1) + [dim]
        self.conv_layers = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], kernel_size, stride=stride, padding=padding,
                                    bias=conv_bias),
                          nn.ReLU(inplace=True),
                          nn.MaxPool2d(pooling_kernel_size, stride=pooling_stride, padding=pooling_padding))
            for i in range(n_conv_layers)])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)  # the paper's code

    def grid_size(self, image_size: Size2) -> tuple[int, int]:
        """(H', W') of the token grid for input images of `image_size`."""
        return cct_grid_size(image_size, len(self.conv_layers), self.conv, self.pool)

    def num_tokens(self, image_size: Size2) -> int:
        """N, the number of tokens for input images of `image_size`."""
        gh, gw = self.grid_size(image_size)
        return gh * gw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D), N = num_tokens((H, W))."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"CCTTokenizer expects images (B, {self.in_channels}, H, W), got {shape}")
        return rearrange(self.conv_layers(x), "b d h w -> b (h w) d")  # (B, D, H', W') -> (B, N, D)
