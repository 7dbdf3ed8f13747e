"""What a model costs: parameters and FLOPs per image, counted by `torch.utils.flop_counter`.

FLOPs here are floating-point operations as PyTorch's counter reports them: a multiply-add is 2.
Papers often quote multiply-adds (MACs) under the name "FLOPs" (DeiT's 17.6 G for ViT-B/16 is
MACs; `count_flops` gives ~35.1 G for it), so halve these numbers before comparing with such tables.
Only matrix products and convolutions are counted; LayerNorm, softmax, GELU and additions are
memory-bound and a few percent of the total.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Union

import torch
import torch.nn as nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from .layers.patches import _pair

# PyTorch's counter knows SDPA's CUDA kernels but not the CPU flash kernel that
# F.scaled_dot_product_attention dispatches to on a CPU; count it with the same formula.
def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                            out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_CUSTOM: dict = {}
_aten = torch.ops.aten
if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM[_aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flop
if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
    _CUSTOM[_aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward_flop


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _input_shape(model: nn.Module, image_size: Union[int, tuple[int, int], None]) -> tuple[int, int, int, int]:
    config = getattr(model, "config", None)
    channels = getattr(config, "in_channels", None)
    if channels is None:
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is None:
            raise ValueError("model has no .config.in_channels and no Conv2d to read the input channels from")
        channels = conv.in_channels
    if image_size is None:
        image_size = getattr(config, "image_size", None)
        if image_size is None:
            raise ValueError("image_size is None and the model has no .config.image_size; pass image_size")
    h, w = _pair("image_size", image_size)
    return 1, channels, h, w


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def flop_counts(model: nn.Module, image_size: Union[int, tuple[int, int], None] = None) -> dict[str, int]:
    """FLOPs of one forward pass on one image, by operator ("aten.addmm": ..., "aten.bmm": ...).

    Args:
        model: an image classifier taking (B, C, H, W); C is read from `model.config.in_channels`
            (or the first Conv2d).
        image_size: H or (H, W); None uses `model.config.image_size`.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    shape = _input_shape(model, image_size)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(shape, device=device, dtype=dtype)
    counter = FlopCounterMode(display=False, custom_mapping=_CUSTOM)
    with _eval_mode(model), torch.no_grad(), counter:
        model(x)
    return {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}


def count_flops(model: nn.Module, image_size: Union[int, tuple[int, int], None] = None) -> int:
    """Total FLOPs (multiply-add = 2) of one forward pass on one image, in eval mode.

    The same number on the fused and the explicit attention path. See `flop_counts` for arguments.
    """
    return sum(flop_counts(model, image_size).values())
