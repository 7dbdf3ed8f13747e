"""Fine-tuning a pre-trained ViT on another task, as the ViT paper does it (Dosovitskiy et al. 2021,
§3.2): "we remove the pre-trained prediction head and attach a zero-initialized D x K feedforward
layer, where K is the number of downstream classes", and at another resolution "we perform 2D
interpolation of the pre-trained position embeddings, according to their location in the original
image". Grey images meet RGB filters by summing each patch filter over its three colour channels:
a grey image copied into R, G and B gives exactly the same patch embeddings.

    timm_model = load_timm_vit("vit_tiny_patch16_224.augreg_in21k_ft_in1k")   # needs internet
    model = adapt_for_fine_tuning(from_timm(timm_model), image_size=112, in_channels=1, num_classes=10)
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from .vit import ViT

TIMM_VIT_TI = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # ViT-Ti/16: ImageNet-21k, fine-tuned on 1k


@torch.no_grad()
def adapt_for_fine_tuning(model: ViT, image_size: int | tuple[int, int], in_channels: int = 1,
                          num_classes: int = 10) -> ViT:
    """A pre-trained `model` made ready for another task: a zero-initialised head of
    `num_classes`, position embeddings resampled to `image_size`'s grid, and, for
    `in_channels=1`, patch filters summed over the colour channels. Changes `model` in place."""
    if not isinstance(model, ViT):
        raise ValueError(f"model must be a vitcourse ViT (from_timm converts timm's), got {type(model).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    old_channels = model.config.in_channels
    if in_channels not in (old_channels, 1):
        raise ValueError(f"in_channels must be {old_channels} (the checkpoint's) or 1 (grey images, filters "
                         f"summed over colours), got {in_channels!r}")
    model.set_image_size(image_size)  # 2-D (bicubic) interpolation of the position embeddings
    if in_channels != old_channels:
        proj = model.patch_embed.proj  # Conv2d(C, D, P, stride=P)
        grey = nn.Conv2d(1, proj.out_channels, proj.kernel_size, proj.stride, bias=proj.bias is not None)
        grey.weight.copy_(proj.weight.sum(dim=1, keepdim=True))  # (D, 1, P, P)
        if proj.bias is not None:
            grey.bias.copy_(proj.bias)
        model.patch_embed.proj = grey
        model.patch_embed.in_channels = 1
    model.head = nn.Linear(model.config.dim, num_classes)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    model.config = dataclasses.replace(model.config, in_channels=in_channels, num_classes=num_classes)
    return model


def load_timm_vit(name: str = TIMM_VIT_TI, pretrained: bool = True) -> nn.Module:
    """timm's ViT `name` with its pre-trained weights from the Hugging Face hub (needs internet and
    timm). Raises RuntimeError saying what is missing when either is not there."""
    try:
        import timm
    except ImportError as exc:
        raise RuntimeError("loading pre-trained ImageNet weights needs timm: pip install timm") from exc
    try:
        return timm.create_model(name, pretrained=pretrained)
    except Exception as exc:  # offline, a firewall, a hub outage: all read the same to a student
        raise RuntimeError(f"could not download {name!r} from the Hugging Face hub ({type(exc).__name__}); "
                           "this needs internet (Colab has it)") from exc
