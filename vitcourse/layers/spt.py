"""Shifted Patch Tokenization (Lee, Lee & Song 2021, "Vision Transformer for Small-Size Datasets", §3.2).

A ViT patch sees only its own P x P pixels, so the linear embedding cannot relate a patch to its
neighbours: that has to be learned by attention, from data a small dataset does not have. SPT
widens what one token sees, for free in compute: the image is concatenated with four copies of
itself moved diagonally by half a patch, so every patch also holds the pixels half a patch beyond
its corners. Then patchify, LayerNorm over each flattened patch, and a Linear to D:

    S(x) = [x, x↖, x↗, x↙, x↘]                 (B, 5C, H, W), shifts of s = P // 2
    tokens = Linear(LN(patchify(S(x), P)))      (B, N, D), N = (H/P)(W/P)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .patches import Size2, _pair, _patch_size
from .validate import check_patch_geometry


def shifted_images(x: torch.Tensor, shift: int, fill: float = 0.0) -> torch.Tensor:
    """The image and its four diagonal shifts by `shift` pixels, stacked on the channels.

    Copies are named by where the picture moves, and the pixels that come in at the edge are `fill`
    (0, as in the paper; pass the normalised background value to pad with background instead):

        left-up     out[i, j] = x[i + s, j + s]        right-up    out[i, j] = x[i + s, j - s]
        left-down   out[i, j] = x[i - s, j + s]        right-down  out[i, j] = x[i - s, j - s]

    (The paper's code names its slices the other way round, by where each pixel reads from, so its
    channel order is [x, x_rb, x_lb, x_ru, x_lu] in its names: the same five images.)

    Args:
        x: (B, C, H, W) images.
        shift: s, a positive int (SPT uses half the patch size).
        fill: value of the pixels shifted in from outside the image.
    Returns:
        (B, 5C, H, W): [x, left-up, right-up, left-down, right-down] along the channels.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a 4D tensor (B, C, H, W), got {shape}")
    if isinstance(shift, bool) or not isinstance(shift, int) or shift <= 0:
        raise ValueError(f"shift must be a positive int, got {shift!r}")
    h, w = x.shape[-2:]
    s = shift
    padded = F.pad(x, (s, s, s, s), value=float(fill))  # (B, C, H + 2s, W + 2s)
    left_up = padded[..., 2 * s:, 2 * s:]     # window moved right-down: the picture moves left-up
    right_up = padded[..., 2 * s:, :w]
    left_down = padded[..., :h, 2 * s:]
    right_down = padded[..., :h, :w]
    return torch.cat([x, left_up, right_up, left_down, right_down], dim=1)  # (B, 5C, H, W)


class ShiftedPatchTokenization(nn.Module):
    """Images to tokens through shifted copies: (B, C, H, W) -> (B, N, D).

    Args:
        image_size: H (square) or (H, W) of the input images.
        patch_size: side P of each patch (at least 2, so the shift P // 2 is at least 1).
        in_channels: C of the input images.
        dim: D, the width of each token.
        norm_eps: epsilon of the LayerNorm over each (5·P·P·C)-dim patch.
        fill: value shifted in at the borders (see `shifted_images`).
    """

    def __init__(self, image_size: Size2, patch_size: int, in_channels: int, dim: int,
                 norm_eps: float = 1e-5, fill: float = 0.0) -> None:
        super().__init__()
        h, w = _pair("image_size", image_size)
        p = _patch_size(patch_size)
        if p < 2:
            raise ValueError(f"patch_size must be at least 2 for a shift of patch_size // 2 >= 1, got {p}")
        check_patch_geometry((h, w), p, in_channels, dim)
        self.image_size = (h, w)
        self.patch_size = p
        self.shift = p // 2
        self.fill = float(fill)
        self.in_channels = in_channels
        self.grid_size = (h // p, w // p)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        patch_dim = 5 * in_channels * p * p
        self.norm = nn.LayerNorm(patch_dim, eps=norm_eps)
        self.proj = nn.Linear(patch_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D), patches in row-major order."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.image_size):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"ShiftedPatchTokenization was built for images (B, {self.in_channels}, "
                             f"{self.image_size[0]}, {self.image_size[1]}), got {shape}")
        x = shifted_images(x, self.shift, self.fill)  # (B, 5C, H, W)
        p = self.patch_size
        x = rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)  # (B, N, P*P*5C)
        return self.proj(self.norm(x))  # (B, N, D)
