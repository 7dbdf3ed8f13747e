"""Per-layer representations of a model, through forward hooks: the inputs of CKA (`analysis.cka`).

`iter_layer_outputs` runs the model over many images batch by batch and yields, per batch, one
(B, features) tensor per chosen layer, so `MinibatchCKA` can accumulate over 10k images without
keeping them; `layer_outputs` concatenates them for a small set. The hooks are registered around
each batch's forward pass only and removed afterwards, also when the model raises, and the model's
train/eval mode is restored before each batch is yielded: between two batches the model is exactly
as the caller left it.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence, Union

import torch
import torch.nn as nn

from .capture import prepare_images

REDUCTIONS = ("flatten", "mean")
Layer = Union[nn.Module, str]  # a submodule, or its dotted name in `model.named_modules()`


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode within the block (no dropout, batch norm on its running statistics); the model's
    previous mode afterwards, also when the block raises."""
    was_training = model.training
    try:
        model.eval()
        yield
    finally:
        model.train(was_training)


def default_layers(model: nn.Module) -> list[nn.Module]:
    """The layers Raghu et al. compare: every encoder block of a ViT, every residual block of a ResNet.

    A vitcourse ViT or T2T-ViT (any model with a `.blocks` ModuleList) gives each block's output
    tokens (B, N, D). The course's ResNet gives each `BasicBlock` of each stage, (B, C, H, W); the
    last block of a stage is that stage's output, so the stage outputs are a subset of these.
    """
    from ..models.cnn import ResNet

    if isinstance(model, ResNet):
        return [block for stage in model.stages for block in stage]
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
        return list(blocks)
    raise ValueError("model must be a vitcourse ViT / T2T-ViT (a `.blocks` ModuleList) or a vitcourse "
                     f"ResNet for default layers, got a {type(model).__name__}; pass layers explicitly")


def _resolve(model: nn.Module, layers: Sequence[Layer] | None) -> list[nn.Module]:
    if layers is None:
        return default_layers(model)
    if isinstance(layers, (nn.Module, str)) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers must be a non-empty list of submodules or their names, got {layers!r}")
    owned = {id(m) for m in model.modules()}
    out = []
    for i, layer in enumerate(layers):
        if isinstance(layer, str):
            try:
                layer = model.get_submodule(layer)
            except AttributeError:
                raise ValueError(f"layers[{i}] names no submodule of the model: {layer!r}") from None
        if not isinstance(layer, nn.Module) or id(layer) not in owned:
            raise ValueError(f"layers[{i}] must be a submodule of the model (or its name), got "
                             f"{type(layer).__name__}")
        out.append(layer)
    return out


def _reduce(output: torch.Tensor, reduce: str, num_prefix_tokens: int) -> torch.Tensor:
    """One layer's output -> (B, features) float32."""
    if not isinstance(output, torch.Tensor) or output.dim() < 2:
        raise RuntimeError(f"a hooked layer returned {type(output).__name__} "
                           f"{tuple(getattr(output, 'shape', ()))}; expected a tensor (B, ...)")
    output = output.detach().float()
    if reduce == "flatten":
        # clone: a later in-place op (ReLU(inplace=True) in a parent) must not change what we keep
        return output.flatten(1).clone()  # (B, N * D) or (B, C * H * W)
    if output.dim() == 3:
        # tokens (B, N, D): mean over the patches; a class token is not a spatial position
        return output[:, num_prefix_tokens:].mean(dim=1)  # (B, D)
    if output.dim() == 4:
        return output.mean(dim=(2, 3))  # feature maps (B, C, H, W) -> (B, C)
    return output.flatten(1).clone()  # already (B, features)


@torch.no_grad()
def _batch_outputs(model: nn.Module, x: torch.Tensor, modules: list[nn.Module], reduce: str
                   ) -> list[torch.Tensor]:
    """One forward pass of the model-ready batch x with a hook on each module: per module (B, F)."""
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    captured: list[list[torch.Tensor]] = [[] for _ in modules]

    def make_hook(i: int):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            captured[i].append(_reduce(output, reduce, prefix))
        return hook

    handles = [m.register_forward_hook(make_hook(i)) for i, m in enumerate(modules)]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    for i, outs in enumerate(captured):
        if len(outs) != 1:
            raise RuntimeError(f"layer {i} ({type(modules[i]).__name__}) ran {len(outs)} times in one "
                               "forward pass (expected once): is it unused, or shared between places?")
    return [outs[0] for outs in captured]


def iter_layer_outputs(model: nn.Module, images: torch.Tensor, layers: Sequence[Layer] | None = None,
                       reduce: str = "flatten", batch_size: int = 256) -> Iterator[list[torch.Tensor]]:
    """Per batch of `images`, the outputs of `layers`: one float32 (B, features) tensor per layer.

    The model runs in eval mode under no_grad; outputs stay on the model's device (so a GPU can
    also compute the CKA).

    Args:
        model: any nn.Module; `layers=None` needs a vitcourse ViT / T2T-ViT / ResNet (`default_layers`).
        images: uint8 pixels (N, H, W) / (N, 1, H, W), normalised per batch like the training data
            (`prepare_images`), or model-ready float (N, C, H, W).
        layers: submodules of `model`, or their names ("blocks.3"); None: `default_layers(model)`.
        reduce: "flatten" keeps every value (B, N * D) / (B, C * H * W), as Raghu et al.;
            "mean" averages over the patch tokens (class token left out) / spatial positions,
            giving (B, D) / (B, C).
        batch_size: images per forward pass.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(images, torch.Tensor) or images.dim() < 3 or len(images) == 0:
        raise ValueError("images must be a non-empty tensor (N, H, W), (N, 1, H, W) or (N, C, H, W), "
                         f"got {tuple(getattr(images, 'shape', ())) or type(images).__name__}")
    modules = _resolve(model, layers)

    # A generator inside, so the checks above raise at the call, not at the first next().
    def batches() -> Iterator[list[torch.Tensor]]:
        for start in range(0, len(images), batch_size):
            x = prepare_images(model, images[start:start + batch_size])  # (B, C, S, S), model's device
            yield _batch_outputs(model, x, modules, reduce)
    return batches()


def layer_outputs(model: nn.Module, images: torch.Tensor, layers: Sequence[Layer] | None = None,
                  reduce: str = "flatten", batch_size: int = 256) -> list[torch.Tensor]:
    """Outputs of `layers` over all `images`: one float32 CPU tensor (N, features) per layer.

    Arguments as in `iter_layer_outputs`; for many images prefer that generator with `MinibatchCKA`,
    which never holds all N at once.
    """
    per_batch = [[o.cpu() for o in outs]
                 for outs in iter_layer_outputs(model, images, layers, reduce, batch_size)]
    return [torch.cat(layer) for layer in zip(*per_batch)]
