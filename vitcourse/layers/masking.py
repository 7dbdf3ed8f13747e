"""Per-sample random masking of a token sequence (MAE, He et al. 2022, §3 "Masking").

"We randomly sample a subset of patches without replacement, following a uniform distribution,
and mask (i.e., remove) the remaining ones." Each sample draws its own subset: one uniform noise
value per token, sorted; the first `len_keep` tokens of the sort are kept. The contract is that of
the MAE reference code (`random_masking(x, mask_ratio) -> (kept, mask, ids_restore)`), written
here from the paper's description:

    kept         (B, len_keep, D)  the visible tokens, in shuffled order
    mask         (B, N)            1 = removed, 0 = kept, in the tokens' original order
    ids_restore  (B, N)            gathering [kept, mask tokens] with it restores the original order
"""
from __future__ import annotations

import torch


def num_kept(num_tokens: int, mask_ratio: float) -> int:
    """How many of `num_tokens` stay visible: int(N * (1 - mask_ratio)), as MAE (49 at 0.75 -> 12)."""
    return int(num_tokens * (1 - mask_ratio))


def random_masking(x: torch.Tensor, mask_ratio: float = 0.75,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random subset of each sample's tokens.

    Args:
        x: (B, N, D) tokens (patch tokens only: no class token).
        mask_ratio: fraction of tokens removed, in [0, 1); MAE's default 0.75.
        generator: for reproducible masks (None: torch's global generator).
    Returns:
        kept (B, len_keep, D), mask (B, N) with 1 = removed, ids_restore (B, N); see the module.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a 3D tensor of tokens (B, N, D), got {shape}")
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be a float in [0, 1), got {mask_ratio!r}")
    b, n, d = x.shape
    keep = num_kept(n, mask_ratio)
    if keep < 1:
        raise ValueError(f"mask_ratio={mask_ratio} keeps no token of N={n}; use a smaller ratio")
    noise = torch.rand(b, n, device=x.device, generator=generator)  # (B, N) uniform in [0, 1)
    ids_shuffle = noise.argsort(dim=1)        # (B, N): token indices, lowest noise first
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, N): the inverse permutation
    ids_keep = ids_shuffle[:, :keep]          # (B, len_keep)
    kept = x.gather(1, ids_keep[..., None].expand(-1, -1, d))  # (B, len_keep, D)
    mask = torch.ones(b, n, device=x.device)
    mask[:, :keep] = 0                        # in shuffled order: the first len_keep are kept
    mask = mask.gather(1, ids_restore)        # (B, N) back in the original order
    return kept, mask, ids_restore


def restore_order(tokens: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """(B, N, D) tokens in shuffled order ([kept, then mask tokens]) -> the original order."""
    return tokens.gather(1, ids_restore[..., None].expand(-1, -1, tokens.shape[-1]))
