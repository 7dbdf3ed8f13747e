"""Mean attention distance (the ViT paper's Figure 7, right): how far, in pixels, each head looks."""
from __future__ import annotations

import torch
import torch.nn as nn

from .capture import capture_attention
from .tokens import AttentionList, check_attentions, check_grid


def patch_distances(grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """(N, N) Euclidean distances in pixels between the centres of the patches of a row-major grid."""
    gh, gw = check_grid(grid)
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=-1).float() * patch_size  # (N, 2)
    return torch.cdist(centres, centres)  # (N, N)


def mean_attention_distance(attentions: AttentionList, grid: tuple[int, int], patch_size: int,
                            num_prefix_tokens: int = 0) -> torch.Tensor:
    """Mean attention distance in pixels per layer and head: (L, heads).

    For each query patch q the distance is sum_k a[q, k] * d(q, k), with d the distance in pixels
    between patch centres; it is averaged over query patches and over the images in the batch
    (pass many images for a stable estimate). This is the ViT paper's "attention distance",
    analogous to a CNN's receptive field size.

    Class token: it has no position, so its row (as a query) and its column (as a key) are dropped.
    The remaining patch-to-patch weights of each row are renormalised to sum to 1, so the value
    says where among the patches a query looks, not how much it looks at the class token. (Without
    renormalising, a head that mostly attends to the class token would look "local".)

    Args:
        attentions: per layer (B, heads, N, N), N = num_prefix_tokens + gh * gw.
        grid: (gh, gw) patch grid, row-major as in `patchify`.
        patch_size: pixels per patch side (the grid step).
        num_prefix_tokens: 1 for a class token, 0 for mean pooling.
    """
    stacked = check_attentions(attentions)  # (L, B, H, N, N)
    gh, gw = check_grid(grid)
    if not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be a non-negative int, got {num_prefix_tokens!r}")
    n = stacked.shape[-1]
    if n != num_prefix_tokens + gh * gw:
        raise ValueError(f"attention maps cover N={n} tokens, but grid {(gh, gw)} with "
                         f"num_prefix_tokens={num_prefix_tokens} means {num_prefix_tokens + gh * gw}")
    dist = patch_distances((gh, gw), patch_size)  # (P, P), P = gh * gw
    a = stacked[..., num_prefix_tokens:, num_prefix_tokens:]  # (L, B, H, P, P): patches only
    a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    per_query = (a * dist).sum(dim=-1)  # (L, B, H, P)
    return per_query.mean(dim=(1, 3))  # (L, H)


def token_pitch(model: nn.Module) -> int:
    """Pixels between the centres of neighbouring tokens of `model`'s grid: the patch size of a
    patchify stem, the product of the strides of a convolutional one (28 px over a 7 x 7 grid: 4).

    Read from `config.image_size` and `.grid_size`, not from `config.patch_size`: a convolutional
    stem keeps that field unused, and a stem with other strides would make it wrong."""
    grid = tuple(getattr(model, "grid_size", ()))
    size = getattr(getattr(model, "config", None), "image_size", None)
    size = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(grid) != 2 or len(size) != 2:
        raise ValueError("model must have `.grid_size` and `.config.image_size` (a vitcourse ViT), "
                         f"got a {type(model).__name__}")
    pitches = {s // g for s, g in zip(size, grid)}
    if len(pitches) != 1 or any(s % g for s, g in zip(size, grid)):
        raise ValueError(f"model's grid {grid} does not tile its image {size} in square steps")
    return pitches.pop()


def model_attention_distance(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """`mean_attention_distance` of `model` over many `images`, captured batch by batch: (L, heads).

    Distances are in the model's input pixels (the grid step `token_pitch(model)`); each batch
    counts in proportion to its number of images.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    grid = tuple(getattr(model, "grid_size", ()))
    patch = token_pitch(model)
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    total, count = None, 0
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        d = mean_attention_distance(capture_attention(model, batch), grid, patch, prefix) * len(batch)
        total = d if total is None else total + d
        count += len(batch)
    if total is None:
        raise ValueError("images must hold at least one image, got none")
    return total / count
