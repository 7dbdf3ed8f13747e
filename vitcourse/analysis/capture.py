"""Capturing attention maps from a model's forward pass, through hooks on its probes.

How attention maps are captured: every `MultiHeadSelfAttention` owns an `AttentionProbe`, an
identity module that its *explicit* path calls with the softmax weights (B, heads, N, N). A
forward hook on each probe records them. The fused kernel (`F.scaled_dot_product_attention`) never
materialises the weights, so `capture_attention` switches every attention to the explicit path for
one forward pass and switches it back afterwards. Public rollout code that monkey-patched timm's
attention broke silently when timm moved to the fused kernel; here a probe that was not called is
an error, not an empty map.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The model's attention modules that carry a probe, in forward order (one per layer).

    Duck-typed on the contract of `vitcourse.attention.MultiHeadSelfAttention`: a module with a
    `.probe` submodule and a boolean `.fused` switch.
    """
    return [m for m in model.modules()
            if isinstance(getattr(m, "probe", None), nn.Module) and isinstance(getattr(m, "fused", None), bool)]


def _model_impl(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    impl = getattr(config, "attn_impl", None)
    return impl if isinstance(impl, str) else None


@contextlib.contextmanager
def explicit_attention(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Within the block, every attention in `model` runs the explicit path (which calls its probe);
    the previous settings come back afterwards, also when the block raises."""
    modules = attention_modules(model)
    saved_fused = [m.fused for m in modules]
    saved_impl = _model_impl(model)
    has_switch = callable(getattr(model, "set_attn_impl", None)) and saved_impl is not None
    try:
        if has_switch:
            model.set_attn_impl("explicit")  # so "auto" cannot pick the fused kernel at forward time
        for m in modules:
            m.fused = False
        yield modules
    finally:
        if has_switch:
            model.set_attn_impl(saved_impl)
        for m, fused in zip(modules, saved_fused):
            m.fused = fused


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def prepare_images(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Model input from `images`: uint8 pixels (B, H, W) / (B, 1, H, W) are normalised (and resized
    to the model's `config.image_size`) like the training data; float (B, C, H, W) passes as is."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        from ..data import normalize

        if images.dim() not in (3, 4):
            raise ValueError(f"images (uint8) must be (B, H, W) or (B, 1, H, W), got shape {tuple(images.shape)}")
        size = getattr(getattr(model, "config", None), "image_size", None)
        size = size if isinstance(size, int) and size != images.shape[-1] else None
        images = normalize(images, size)  # (B, 1, S, S)
    elif images.dim() != 4:
        raise ValueError(f"images (float) must be (B, C, H, W), got shape {tuple(images.shape)}")
    return images.to(_model_device(model))


@torch.no_grad()
def capture_attention(model: nn.Module, images: torch.Tensor, return_logits: bool = False
                      ) -> list[torch.Tensor] | tuple[list[torch.Tensor], torch.Tensor]:
    """Attention weights of every layer from ONE forward pass, via hooks on the attention probes.

    The model runs in eval mode (no dropout) on the explicit attention path; its mode and attention
    settings are restored afterwards, even on error.

    Args:
        model: a ViT (any model whose attentions follow the `AttentionProbe` contract).
        images: uint8 pixels (B, H, W) / (B, 1, H, W), normalised here, or model-ready float (B, C, H, W).
        return_logits: also return the model's output from the same pass.

    Returns:
        One float32 CPU tensor (B, heads, N, N) per layer, rows = queries, columns = keys, each row
        summing to 1; with `return_logits`, the pair (attentions, logits (B, classes) on the CPU).
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError("model has no attention modules with a `.probe` (AttentionProbe) and a `.fused` "
                         f"switch; got a {type(model).__name__}")
    x = prepare_images(model, images)
    captured: list[list[torch.Tensor]] = [[] for _ in modules]

    def make_hook(i: int):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            captured[i].append(output.detach().float().cpu())
        return hook

    was_training = model.training
    handles = [m.probe.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)]
    try:
        model.eval()
        with explicit_attention(model):
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for i, maps in enumerate(captured):
        if len(maps) != 1:
            raise RuntimeError(f"the probe of attention layer {i} was called {len(maps)} times in one "
                               "forward pass (expected once): does this attention still take the "
                               "fused path, or is it shared between layers?")
    attentions = [maps[0] for maps in captured]
    return (attentions, logits.detach().float().cpu()) if return_logits else attentions
