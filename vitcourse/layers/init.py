"""The weight initialisation the course's transformers share (timm's default for ViTs)."""
from __future__ import annotations

import torch.nn as nn


def init_linear_and_norm_(module: nn.Module, std: float = 0.02) -> None:
    """In place, over every submodule: Linear weights truncated normal (std 0.02), their biases
    zero, LayerNorms at weight 1 and bias 0. Convolutions, embeddings and tokens are left to the
    model (each family inits those its own way)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
