"""An exponential moving average of the weights (Polyak averaging), as DeiT and timm's `ModelEmaV2`
train with: after every optimiser step ``ema = decay * ema + (1 - decay) * weights``. The average
is what `fit` evaluates and returns when ``TrainConfig.ema_decay > 0``: it smooths the last steps'
noise; DeiT and timm report it testing a little better than the raw weights (not yet measured in
this course's ablation).

We use torch's own `AveragedModel` with its EMA rule (`get_ema_multi_avg_fn`, one foreach lerp per
step) rather than a hand-written copy; ``use_buffers=True`` averages BatchNorm's running statistics
too, so a CNN's averaged model has statistics that match its averaged weights.
"""
from __future__ import annotations

import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An averaged copy of `model` (on its device), or None when ``decay == 0`` (EMA off).

    Args:
        model: the (unwrapped) model being trained.
        decay: weight of the old average per step, in [0, 1); 0.999 averages over ~1,000 steps.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"ema_decay must be in [0, 1), got {decay!r}")
    if decay == 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
