"""Position embeddings: what tells a permutation-equivariant Transformer where each patch was.

- learned 1D (the paper's choice): a (1, prefix + N, D) parameter, one vector per position;
- fixed 2D sin-cos (MoCo v3, MAE): half the channels encode the row, half the column;
- `resample_pos_embed`: fine-tuning at another resolution changes the patch grid, so the learned
  grid of vectors is interpolated (bicubic, as timm and the paper's code do) to the new grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .patches import Size2, _pair


def sincos_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformer sin-cos features of `positions` (M,) -> (M, dim): [sin(p w_k) | cos(p w_k)]."""
    if dim % 2:
        raise ValueError(f"dim must be even for sin-cos embeddings, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / temperature ** omega  # (dim/2,) frequencies from 1 down to 1/temperature
    angles = positions.to(torch.float64)[:, None] * omega[None, :]  # (M, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()  # (M, dim)


def sincos_2d(grid_size: Size2, dim: int, temperature: float = 10000.0,
              num_prefix_tokens: int = 0) -> torch.Tensor:
    """Fixed 2D sin-cos position embeddings for a row-major grid of patches.

    Args:
        grid_size: (rows, cols) of the patch grid (an int for a square grid).
        dim: embedding width D, divisible by 4 (sin and cos for rows and for columns).
        temperature: the longest wavelength, 10000 as in the Transformer.
        num_prefix_tokens: zero rows put in front for the class token(s) (MAE's convention).
    Returns:
        (1, num_prefix_tokens + rows*cols, dim): first half encodes the row, second half the column.
    """
    gh, gw = _pair("grid_size", grid_size)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0 or dim % 4:
        raise ValueError(f"dim must be a positive multiple of 4 for 2D sin-cos embeddings, got {dim!r}")
    if num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")  # (gh, gw) each
    emb = torch.cat([sincos_1d(rows.flatten(), dim // 2, temperature),
                     sincos_1d(cols.flatten(), dim // 2, temperature)], dim=1)  # (gh*gw, dim)
    emb = torch.cat([torch.zeros(num_prefix_tokens, dim), emb], dim=0)
    return emb[None]  # (1, prefix + N, dim)


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: Size2, num_prefix_tokens: int = 1,
                       old_grid: Size2 | None = None, mode: str = "bicubic",
                       antialias: bool = True) -> torch.Tensor:
    """Interpolate a (1, prefix + N, D) position embedding to a new patch grid.

    The prefix (class token) rows are kept as they are; the N grid rows are viewed as a D-channel
    image of shape `old_grid` (square when None) and resized to `new_grid`. When the grid does not
    change the input is returned unchanged.

    Args:
        pos_embed: (1, prefix + N, D).
        new_grid: (rows, cols) of the new patch grid (an int for square).
        num_prefix_tokens: rows at the front that are not grid positions (1 for a class token).
        old_grid: the current grid; None means square, sqrt(N) x sqrt(N).
        mode: `F.interpolate` mode ("bicubic" like timm, or "bilinear", "nearest").
        antialias: anti-alias when shrinking (timm's default).
    Returns:
        (1, prefix + rows*cols, D) in the input's dtype.
    """
    if not isinstance(pos_embed, torch.Tensor) or pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        shape = tuple(pos_embed.shape) if isinstance(pos_embed, torch.Tensor) else type(pos_embed).__name__
        raise ValueError(f"pos_embed must be a tensor of shape (1, prefix + N, D), got {shape}")
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) \
            or not 0 <= num_prefix_tokens <= pos_embed.shape[1]:
        raise ValueError(f"num_prefix_tokens must be an int in [0, {pos_embed.shape[1]}], got {num_prefix_tokens!r}")
    new_h, new_w = _pair("new_grid", new_grid)
    n = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"pos_embed has N={n} grid positions, not a square; pass old_grid=(rows, cols)")
        old_h, old_w = side, side
    else:
        old_h, old_w = _pair("old_grid", old_grid)
        if old_h * old_w != n:
            raise ValueError(f"old_grid=({old_h}, {old_w}) has {old_h * old_w} positions, "
                             f"but pos_embed has N={n} after {num_prefix_tokens} prefix tokens")
    if (old_h, old_w) == (new_h, new_w):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    d = grid.shape[-1]
    grid = grid.float().reshape(1, old_h, old_w, d).permute(0, 3, 1, 2)  # (1, D, old_h, old_w)
    aa = antialias and mode in ("bilinear", "bicubic")
    grid = F.interpolate(grid, size=(new_h, new_w), mode=mode, antialias=aa,
                         **({} if mode == "nearest" else {"align_corners": False}))
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, d).to(pos_embed.dtype)  # (1, N', D)
    return torch.cat([prefix, grid], dim=1)
