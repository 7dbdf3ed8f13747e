"""Learning-rate schedule: linear warm-up, then cosine decay to zero, stepped once per batch.

Warm-up matters for transformers: AdamW's first updates are large (its second-moment estimate
starts at zero), and LayerNorm-ed attention is easily knocked into a bad region early on.
"""
from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """The multiplier of the base learning rate at optimiser step `step` (0-based).

    Rises linearly from 1/warmup_steps to 1 over `warmup_steps` steps, then follows half a cosine
    from 1 down to 0 at `total_steps`.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be between 0 and total_steps={total_steps}, got {warmup_steps}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def warmup_steps_for(total_steps: int, warmup_frac: float) -> int:
    """Number of warm-up steps: `warmup_frac` of the run, rounded (at least 1 when frac > 0)."""
    if not 0.0 <= warmup_frac < 1.0:
        raise ValueError(f"warmup_frac must be in [0, 1), got {warmup_frac}")
    return max(1, round(warmup_frac * total_steps)) if warmup_frac > 0 else 0


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                   warmup_frac: float = 0.05) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step `LambdaLR` following `warmup_cosine`; call `.step()` after every optimiser step."""
    warmup = warmup_steps_for(total_steps, warmup_frac)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total_steps, warmup))


def lr_curve(base_lr: float, total_steps: int, warmup_frac: float = 0.05) -> list[float]:
    """The learning rate at every step of a run (what the chapter plots)."""
    warmup = warmup_steps_for(total_steps, warmup_frac)
    return [base_lr * warmup_cosine(s, total_steps, warmup) for s in range(total_steps)]
