"""Position-embedding similarity (the ViT paper's Figure 7, centre) and patch-embedding filters
(Figure 7, left): plain functions of the trained weights."""
from __future__ import annotations

import math

import torch

from .tokens import check_grid


def position_similarity(pos_embed: torch.Tensor, grid: tuple[int, int],
                        num_prefix_tokens: int = 0) -> torch.Tensor:
    """Cosine similarity of every patch's position embedding with every other: (gh, gw, gh, gw).

    `sim[i, j]` is the (gh, gw) map of patch (i, j)'s similarity with all patches, i.e. one tile
    of the paper's Figure 7 (centre). The class token's embedding (the first `num_prefix_tokens`
    rows) is excluded.

    Args:
        pos_embed: (1, prefix + gh * gw, D) or (prefix + gh * gw, D).
        grid: (gh, gw) patch grid.
        num_prefix_tokens: leading tokens without a grid position (1 for a class token).
    """
    if not isinstance(pos_embed, torch.Tensor):
        raise ValueError(f"pos_embed must be a tensor (1, N, D) or (N, D), got {type(pos_embed).__name__}")
    gh, gw = check_grid(grid)
    e = pos_embed.detach().float().cpu()
    if e.dim() == 3 and e.shape[0] == 1:
        e = e[0]  # (N, D)
    if e.dim() != 2:
        raise ValueError(f"pos_embed must be (1, N, D) or (N, D), got shape {tuple(pos_embed.shape)}")
    if not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be a non-negative int, got {num_prefix_tokens!r}")
    if e.shape[0] != num_prefix_tokens + gh * gw:
        raise ValueError(f"pos_embed has {e.shape[0]} tokens, but grid {(gh, gw)} with "
                         f"num_prefix_tokens={num_prefix_tokens} needs {num_prefix_tokens + gh * gw}")
    e = e[num_prefix_tokens:]  # (P, D): patches only
    e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (e @ e.T).reshape(gh, gw, gh, gw)  # (P, P) -> (gh, gw, gh, gw)


def embedding_filters(patch_embed_weight: torch.Tensor, n: int = 28, channels: int | None = None,
                      return_variance: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The top `n` principal components of the patch-embedding filters, as patch images (n, C, P, P).

    Each of the D output units of the patch embedding is a filter over a P x P x C patch. We treat
    the D filters as samples, subtract their mean, and take the right singular vectors: the
    directions in pixel space the embedding is most sensitive to (the paper's Figure 7, left).
    Signs are arbitrary in PCA; we flip each component so its largest-magnitude pixel is positive.

    Args:
        patch_embed_weight: the conv weight (D, C, P, P) of `PatchEmbed.proj`, or a linear weight
            (D, P * P * C) in `patchify`'s (p1, p2, c) order (then give `channels`, default 1).
        n: number of components, at most min(D, C * P * P).
        return_variance: also return the fraction of variance each component explains (n,).
    """
    w = patch_embed_weight.detach().float().cpu()
    if w.dim() == 4:
        d, c, p, q = w.shape
        if p != q:
            raise ValueError(f"patch_embed_weight must have square patches, got shape {tuple(w.shape)}")
        flat = w.reshape(d, c * p * p)  # (D, C*P*P) in (c, p1, p2) order
    elif w.dim() == 2:
        c = channels or 1
        d, k = w.shape
        p = math.isqrt(k // c) if k % c == 0 else 0
        if p * p * c != k:
            raise ValueError(f"a linear patch_embed_weight (D, P*P*C) needs P*P*C columns with "
                             f"channels={c}; got {k} columns")
        flat = w.reshape(d, p, p, c).permute(0, 3, 1, 2).reshape(d, c * p * p)  # (p1 p2 c) -> (c p1 p2)
    else:
        raise ValueError(f"patch_embed_weight must be (D, C, P, P) or (D, P*P*C), got shape {tuple(w.shape)}")
    limit = min(flat.shape)
    if not isinstance(n, int) or not 1 <= n <= limit:
        raise ValueError(f"n must be an int between 1 and {limit} (min of D and C*P*P), got {n!r}")
    centred = flat - flat.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min, C*P*P)
    comps = vh[:n]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    filters = comps.reshape(n, c, p, p)  # (n, C, P, P)
    if return_variance:
        var = s ** 2
        return filters, (var / var.sum().clamp_min(1e-12))[:n]
    return filters
