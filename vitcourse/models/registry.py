"""`create_model(name, **overrides)`: one entry point for every model family in the course.

Each family module (vit, t2t, swin, cnn, metaformer, cct, small_data_vit) holds a dict `PRESETS` of
lowercase builder functions; names are matched after normalising case, '-' and '/' to '_' ("ViT-B/16" -> "vit_b_16").
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

import torch.nn as nn

# Family modules, in the order their presets are listed. Add a family here when its module lands.
FAMILIES: tuple[str, ...] = ("vitcourse.models.vit", "vitcourse.models.t2t", "vitcourse.models.swin",
                             "vitcourse.models.cnn", "vitcourse.models.metaformer", "vitcourse.models.cct",
                             "vitcourse.models.small_data_vit")


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace("/", "_")


def list_models() -> list[str]:
    """Every preset name, in family order."""
    return [n for fam in FAMILIES for n in importlib.import_module(fam).PRESETS]


def get_builder(name: str) -> Callable[..., nn.Module]:
    if not isinstance(name, str):
        raise ValueError(f"name must be a preset name (str), got {type(name).__name__}")
    key = _normalise(name)
    for fam in FAMILIES:
        presets = importlib.import_module(fam).PRESETS
        if key in presets:
            return presets[key]
    raise ValueError(f"unknown model name {name!r}; known presets: {', '.join(list_models())}")


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the preset `name`, with config fields overridden by keyword (e.g. num_classes=10)."""
    return get_builder(name)(**overrides)
