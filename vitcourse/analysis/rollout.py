"""Attention rollout (Abnar & Zuidema, 2020): how much each input token reaches the output,
multiplying the layers' attention maps with the residual stream added back."""
from __future__ import annotations

import torch

from .tokens import AttentionList, check_attentions, check_grid, infer_prefix_tokens

HEAD_FUSIONS = ("mean", "max", "min")


def rollout_matrix(attentions: AttentionList, head_fusion: str = "mean",
                   discard_ratio: float = 0.0) -> torch.Tensor:
    """The rolled-out attention (B, N, N): how much each output token draws on each input token.

    Per layer: fuse the heads, optionally zero the weakest weights, add the identity (the residual
    connection), renormalise each row to sum to 1, then multiply the layers: R = A_L ... A_2 A_1.

    Args:
        attentions: per layer (B, heads, N, N), as from `capture_attention`.
        head_fusion: "mean" (as in the paper), "max" or "min" over heads.
        discard_ratio: fraction of each layer's fused weights (per image) set to zero before the
            identity is added, weakest first; 0 keeps all (the paper's method).
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if not isinstance(discard_ratio, (int, float)) or not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}")
    stacked = check_attentions(attentions)  # (L, B, H, N, N)
    _, b, _, n, _ = stacked.shape
    eye = torch.eye(n)
    result = eye.expand(b, n, n).clone()  # (B, N, N)
    for layer in stacked:  # (B, H, N, N), first layer first
        if head_fusion == "mean":
            a = layer.mean(dim=1)  # (B, N, N)
        elif head_fusion == "max":
            a = layer.amax(dim=1)
        else:
            a = layer.amin(dim=1)
        if discard_ratio > 0:
            flat = a.reshape(b, -1).clone()  # (B, N*N)
            k = int(flat.shape[1] * discard_ratio)
            if k > 0:
                weakest = flat.topk(k, dim=-1, largest=False).indices
                flat.scatter_(1, weakest, 0.0)
            a = flat.reshape(b, n, n)
        a = a + eye  # the residual path carries each token's own value through the layer
        # keepdim=True: divide each ROW by its own sum. Without it, (B, N) broadcasts against the
        # last axis and divides column j by row j's sum, a bug in widely copied rollout code.
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result  # later layers act on what earlier layers produced
    return result


def attention_rollout(attentions: AttentionList, head_fusion: str = "mean", discard_ratio: float = 0.0,
                      num_prefix_tokens: int | None = None,
                      grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Attention rollout over the patches: (B, num_patches), or (B, gh, gw) when `grid` is given.

    With a class token (`num_prefix_tokens=1`) this is the class token's row of the rolled-out
    matrix, over the patch columns (the class-token column is dropped, so the values sum to less
    than 1). A mean-pooled model has no class token: its output is the mean of all final tokens,
    so we return the MEAN OVER QUERY ROWS of the rolled-out matrix, i.e. how much the pooled
    representation draws on each input patch (these sum to 1).

    Args:
        attentions, head_fusion, discard_ratio: as in `rollout_matrix`.
        num_prefix_tokens: 1 (class token) or 0 (mean pooling); None infers it from N for square
            grids (see `infer_prefix_tokens`).
        grid: (gh, gw) to reshape the result to the patch grid.
    """
    rollout = rollout_matrix(attentions, head_fusion, discard_ratio)  # (B, N, N)
    n = rollout.shape[-1]
    prefix = infer_prefix_tokens(n) if num_prefix_tokens is None else num_prefix_tokens
    if prefix not in (0, 1):
        raise ValueError(f"num_prefix_tokens must be 0 (mean pooling) or 1 (class token), got {prefix!r}")
    if prefix == 1:
        out = rollout[:, 0, 1:]  # (B, N-1): what the class token draws from each patch
    else:
        out = rollout.mean(dim=1)  # (B, N): what the mean-pooled output draws from each patch
    if grid is not None:
        gh, gw = check_grid(grid)
        if gh * gw != out.shape[-1]:
            raise ValueError(f"grid {grid} has {gh * gw} patches but the attention covers {out.shape[-1]}")
        out = out.reshape(-1, gh, gw)  # (B, gh, gw)
    return out
