"""vitcourse: the code that the Vision Transformer course's chapters share.

Folders: `layers/` (building blocks), `models/` (families, registry, weight converters),
`training/` (the loop and its helpers), `analysis/` (attention maps, rollout, similarity, widgets),
`experiments/` (bench, sweep, comparisons), `checks/` and `exercises/` (the exercises).

Importing this package changes no global state (no seeding, no plotting style, no warnings filters).
"""
from .data import CLASS_NAMES, FashionMNISTData, TensorLoader, load_data, load_fashion_mnist
from .layers.patches import patchify, unpatchify
from .models import create_model, from_timm, from_torchvision, list_models
from .models.vit import (ViT, ViTConfig, d2l_vit, vit_b_16, vit_fmnist, vit_fmnist_p4, vit_h_14, vit_l_16,
                         vit_s_16, vit_ti_16)
from .settings import fast_or, get_device, in_colab, is_fast, seed_everything
from .training import TrainConfig, evaluate, fit, load_pretrained, predict

__version__ = "0.2.0"
