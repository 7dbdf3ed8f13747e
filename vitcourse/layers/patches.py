"""Images as sequences of patches ("an image is worth 16x16 words", Dosovitskiy et al. 2021, §3.1).

`patchify` / `unpatchify` are pure functions between (B, C, H, W) images and (B, N, P*P*C) token
sequences; `PatchEmbed` is the same cut followed by a linear map, written as a strided convolution
(one kernel application per patch, so the two are the same computation).
"""
from __future__ import annotations

from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .validate import check_patch_geometry

Size2 = Union[int, tuple[int, int]]


def _pair(name: str, value: Size2) -> tuple[int, int]:
    """`value` as (h, w); a single int means a square."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    if isinstance(value, int):
        value = (value, value)
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")


def _patch_size(patch_size: int) -> int:
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size <= 0:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    return patch_size


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping square patches, in row-major order (left to right, top to bottom).

    Args:
        images: (B, C, H, W), with H and W divisible by `patch_size`.
        patch_size: side P of each square patch.
    Returns:
        (B, N, P*P*C) with N = (H/P)(W/P); each patch is flattened in (row, column, channel) order.
    """
    p = _patch_size(patch_size)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a 4D tensor (B, C, H, W), got {shape}")
    h, w = images.shape[-2:]
    if h % p or w % p:
        raise ValueError(f"image size (H, W)=({h}, {w}) must be divisible by patch_size={p}")
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)


def unpatchify(tokens: torch.Tensor, patch_size: int, image_size: Size2,
               channels: int | None = None) -> torch.Tensor:
    """Inverse of `patchify`: put (B, N, P*P*C) patches back into (B, C, H, W) images.

    Args:
        tokens: (B, N, P*P*C) in the order `patchify` makes.
        patch_size: side P of each patch.
        image_size: H (square) or (H, W) of the image to rebuild.
        channels: C; inferred from the token width when None.
    """
    p = _patch_size(patch_size)
    h, w = _pair("image_size", image_size)
    if h % p or w % p:
        raise ValueError(f"image_size=({h}, {w}) must be divisible by patch_size={p}")
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a 3D tensor (B, N, P*P*C), got {shape}")
    gh, gw = h // p, w // p
    n, d = tokens.shape[1:]
    if n != gh * gw:
        raise ValueError(f"tokens has N={n} patches, but image_size=({h}, {w}) with patch_size={p} "
                         f"needs {gh}x{gw}={gh * gw}")
    if d % (p * p):
        raise ValueError(f"token width {d} is not a multiple of patch_size**2={p * p}")
    c = d // (p * p)
    if channels is not None and channels != c:
        raise ValueError(f"channels={channels!r} does not match the token width {d} = {p}*{p}*{c}")
    # (B, N, P*P*C) -> (B, H/P, W/P, P, P, C) -> (B, C, H, W): patchify's steps, undone in reverse
    return rearrange(tokens, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=gh, w=gw, p1=p, p2=p, c=c)


class PatchEmbed(nn.Module):
    """Patches to D-dimensional tokens: a Conv2d with kernel = stride = P, then flatten.

    Equal to `patchify` followed by `nn.Linear(P*P*C, D)` whose weight is the conv kernel permuted
    to (D, P, P, C) and flattened (see `linear_weight`). The weight is stored as the conv's (the
    layout of timm's and torchvision's checkpoints); on a CPU, `forward` computes the same map as a
    matrix product, whose backward is much faster there than the convolution's.

    Args:
        image_size: H (square) or (H, W) of the input images.
        patch_size: side P of each square patch; must divide H and W.
        in_channels: C of the input images.
        dim: D, the width of each token.
    """

    def __init__(self, image_size: Size2, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        h, w = _pair("image_size", image_size)
        p = _patch_size(patch_size)
        check_patch_geometry((h, w), p, in_channels, dim)
        self.image_size = (h, w)
        self.patch_size = p
        self.in_channels = in_channels
        self.grid_size = (h // p, w // p)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=p, stride=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D). The input must be the size and channels built for: the
        convolution would silently drop a ragged edge, and a bigger image has more patches than
        the position embedding that follows."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"PatchEmbed expects images (B, C, H, W), got {shape}")
        b, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"PatchEmbed was built for in_channels={self.in_channels}, got images "
                             f"with {c} channels (shape {tuple(x.shape)})")
        if (h, w) != self.image_size:
            raise ValueError(f"PatchEmbed was built for image_size={self.image_size}, got images of "
                             f"{h}x{w} (shape {tuple(x.shape)})")
        p = self.patch_size
        if x.device.type == "cpu":
            # The same numbers as the convolution, computed as patchify + one matrix product: on a
            # CPU the matmul's backward was 9x faster than the convolution's (5 vs 45 ms for D2L's
            # 128 x 1 x 96 x 96 batch in bf16). Patches are flattened in (c, p1, p2) order here, the
            # conv kernel's own layout, so its weight is used as it is.
            patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
            patches = patches.reshape(b, (h // p) * (w // p), c * p * p)  # (B, N, C*P*P)
            return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)  # (B, N, D)
        x = self.proj(x)  # (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D), patches in row-major order

    def linear_weight(self) -> torch.Tensor:
        """The conv kernel as the (D, P*P*C) weight of the equivalent linear layer on `patchify`'s output."""
        return rearrange(self.proj.weight, "d c p1 p2 -> d (p1 p2 c)")
