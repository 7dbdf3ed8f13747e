"""vitcourse: the code that the Vision Transformer course's chapters share.

Importing this package changes no global state (no seeding, no plotting style, no warnings filters).
"""
from .data import CLASS_NAMES, FashionMNISTData, TensorLoader, load_data, load_fashion_mnist
from .settings import fast_or, get_device, in_colab, is_fast, seed_everything
from .convert import from_timm, from_torchvision
from .models import create_model, list_models
from .patches import patchify, unpatchify
from .vit import ViT, ViTConfig

__version__ = "0.1.0"
