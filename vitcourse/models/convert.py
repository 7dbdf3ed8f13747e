"""`from_torchvision(model)`: one entry point for torchvision's ViT and Swin.

The mapping for each family lives next to it (`vit_weights.py`, `swin_weights.py`); this module
only dispatches on the type of the model it is given, so a user needs to know one name.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch.nn as nn

from .swin import SwinTransformer
from .swin_weights import swin_from_torchvision
from .vit import ViT
from .vit_weights import vit_from_torchvision


def from_torchvision(tv_model: nn.Module, **overrides: Any) -> ViT | SwinTransformer:
    """The vitcourse model with the architecture and weights of a torchvision ViT or Swin (v1).

    Args:
        tv_model: `torchvision.models.vit_b_16()`, `swin_t()` or a sibling (no download happens).
        overrides: config fields that do not change the weights' shapes (e.g. attn_impl="explicit").
    """
    # Imported here: torchvision is only needed by whoever converts one of its models.
    from torchvision.models.swin_transformer import SwinTransformer as TVSwin
    from torchvision.models.vision_transformer import VisionTransformer as TVViT

    if isinstance(tv_model, TVViT):
        return vit_from_torchvision(tv_model, **overrides)
    if isinstance(tv_model, TVSwin):
        return swin_from_torchvision(tv_model, **overrides)
    raise ValueError("tv_model must be a torchvision VisionTransformer or SwinTransformer (v1), "
                     f"got {type(tv_model).__module__}.{type(tv_model).__qualname__}")


def from_torchvision_swin(tv_model: nn.Module, **overrides: Any) -> SwinTransformer:
    """Deprecated name (vitcourse 0.1) for `from_torchvision` on a Swin; removed in 0.3."""
    warnings.warn("from_torchvision_swin is deprecated; use vitcourse.from_torchvision, which "
                  "accepts a torchvision ViT or Swin", DeprecationWarning, stacklevel=2)
    return swin_from_torchvision(tv_model, **overrides)
