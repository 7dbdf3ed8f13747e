"""Load torchvision's Swin Transformer (v1) weights into `vitcourse.models.swin.SwinTransformer`.

No download happens here: pass a torchvision model (e.g. `torchvision.models.swin_t()`, randomly
initialised, or one whose weights you loaded yourself). The architecture is read off the model,
the state dict is renamed key by key, and the result is checked to be complete.

torchvision's layout: `features[0]` = (conv, permute, norm); `features[1], [3], [5], [7]` = the
stages' blocks; `features[2], [4], [6]` = patch merging; then `norm` and `head`. The MLP is a
Sequential (Linear, GELU, Dropout, Linear, Dropout), so its Linear layers are `mlp.0` and `mlp.3`.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn

from .swin import SwinConfig, SwinTransformer


def swin_config_from_torchvision(tv_model: nn.Module) -> SwinConfig:
    """The `SwinConfig` (at 224x224) of a torchvision `SwinTransformer` v1."""
    feats = getattr(tv_model, "features", None)
    if feats is None or not hasattr(tv_model, "head"):
        raise ValueError(f"tv_model must be a torchvision SwinTransformer, got {type(tv_model).__name__}")
    conv = feats[0][0]
    stages = [feats[i] for i in range(1, len(feats), 2)]
    first = stages[0][0].attn
    if hasattr(first, "logit_scale"):
        raise ValueError("tv_model is a Swin V2 (cosine attention, continuous position bias); "
                         "only Swin V1 (swin_t, swin_s, swin_b) maps onto vitcourse.models.swin")
    mlp_hidden = stages[0][0].mlp[0].out_features
    return SwinConfig(
        image_size=224, patch_size=conv.kernel_size[0], in_channels=conv.in_channels,
        num_classes=tv_model.head.out_features, embed_dim=conv.out_channels,
        depths=tuple(len(s) for s in stages), heads=tuple(s[0].attn.num_heads for s in stages),
        window_size=first.window_size[0], mlp_ratio=mlp_hidden / conv.out_channels,
        qkv_bias=first.qkv.bias is not None, drop_path=0.0, norm_eps=feats[0][2].eps)


def _rename(key: str) -> str | None:
    """torchvision state-dict key -> vitcourse key (None: a buffer we recompute)."""
    if key.endswith("relative_position_index"):
        return None
    if key.startswith("features.0.0."):
        return "patch_embed.proj." + key[len("features.0.0."):]
    if key.startswith("features.0.2."):
        return "patch_norm." + key[len("features.0.2."):]
    m = re.match(r"features\.(\d+)\.(.*)", key)
    if m is None:
        return key  # norm.*, head.*
    idx, rest = int(m.group(1)), m.group(2)
    if idx % 2 == 1:  # a stage's blocks
        stage = (idx - 1) // 2
        rest = rest.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.3.", ".mlp.fc2.")
        return f"stages.{stage}.blocks.{rest}"
    return f"stages.{idx // 2 - 1}.downsample.{rest}"  # patch merging after stage idx/2


def swin_from_torchvision(tv_model: nn.Module, **overrides) -> SwinTransformer:
    """A `SwinTransformer` with `tv_model`'s weights (torchvision `swin_t/s/b`), in eval mode.

    Args:
        tv_model: a torchvision Swin V1 model.
        overrides: SwinConfig fields to change (e.g. attn_impl="explicit").
    """
    config = swin_config_from_torchvision(tv_model)
    for name, value in overrides.items():
        setattr(config, name, value)
    config.__post_init__()
    model = SwinTransformer(config)
    state = {}
    for key, value in tv_model.state_dict().items():
        new = _rename(key)
        if new is not None:
            state[new] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"state dict mapping is incomplete: missing {missing}, unexpected {unexpected}")
    return model.eval()


@torch.no_grad()
def compare_with_torchvision(tv_model: nn.Module, images: torch.Tensor) -> float:
    """Largest absolute logit difference between `tv_model` and its converted copy on `images`."""
    ours = swin_from_torchvision(tv_model)
    tv_model.eval()
    return (ours(images) - tv_model(images)).abs().max().item()
