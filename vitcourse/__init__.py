"""vitcourse: the code that the Vision Transformer course's chapters share.

Importing this package changes no global state (no seeding, no plotting style, no warnings filters).
"""
from .data import CLASS_NAMES, FashionMNISTData, TensorLoader, load_data, load_fashion_mnist
from .settings import fast_or, get_device, in_colab, is_fast, seed_everything
from .convert import from_timm, from_torchvision
from .models import create_model, list_models
from .patches import patchify, unpatchify
from .vit import (ViT, ViTConfig, d2l_vit, vit_b_16, vit_fmnist, vit_fmnist_p4, vit_h_14, vit_l_16,
                  vit_s_16, vit_ti_16)

__version__ = "0.1.0"
