"""Load weights from two independent ViT implementations into a vitcourse `ViT`.

`from_timm(model)` and `vit_from_torchvision(model)` read the architecture from the given model, build
the same `ViT` and copy every tensor by name (a state-dict mapping: nothing is downloaded). With
equal weights the logits agree to float32 round-off (tests/test_convert.py): the course's proof that
`vitcourse.models.vit` is the paper's model. Features these mappings do not cover (layer scale, register
tokens, fc-norm pooling, a conv stem, a pre-logits layer, ...) raise a ValueError that names them,
never a silently different model.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
import torch.nn as nn

from .vit import ViT, ViTConfig


def _unsupported(source: str, what: str, target: str = "vitcourse.ViT") -> ValueError:
    return ValueError(f"{source} model uses {what}, which {target} does not implement")


def _require_vit(model: nn.Module, arg: str, source: str, attributes: tuple[str, ...]) -> nn.Module:
    """`model` itself if it is `source`'s VisionTransformer (told apart by its submodules' names)."""
    if type(model).__name__ != "VisionTransformer" or not all(hasattr(model, a) for a in attributes):
        raise ValueError(f"{arg} must be a {source} VisionTransformer, got {type(model).__name__}")
    return model


def _check_gelu(source: str, act: nn.Module, target: str = "vitcourse.ViT") -> None:
    if not (isinstance(act, nn.GELU) and act.approximate == "none"):
        raise _unsupported(source, f"activation {act!r} (vitcourse uses exact GELU)", target)


def _empty(config: ViTConfig) -> ViT:
    with torch.device("meta"):
        return ViT(config)


def _copy(t: torch.Tensor) -> torch.Tensor:
    """A float32 CPU copy that shares no memory with the source model."""
    return t.detach().to(device="cpu", dtype=torch.float32, copy=True)


def _load(model: nn.Module, mapped: "OrderedDict[str, torch.Tensor]", leftover: list[str], source: str) -> nn.Module:
    """Copy `mapped` into `model` (a ViT or any vitcourse model), failing loudly on anything
    missing, extra or mis-shaped."""
    if leftover:
        raise _unsupported(source, f"tensors with no vitcourse counterpart: {leftover[:8]}"
                           + (" ..." if len(leftover) > 8 else ""), f"vitcourse.{type(model).__name__}")
    own = model.state_dict()
    missing = sorted(set(own) - set(mapped))
    if missing:
        raise ValueError(f"{source} model has no tensors for vitcourse's {missing[:8]}")
    for key, value in mapped.items():
        if own[key].shape != value.shape:
            raise ValueError(f"{source} tensor for {key!r} has shape {tuple(value.shape)}, "
                             f"vitcourse expects {tuple(own[key].shape)}")
    # assign=True adopts the copied tensors, so the model can be built on the meta device (no
    # random init of 86M+ parameters just to overwrite them).
    model.load_state_dict(mapped, strict=True, assign=True)
    return model


def from_timm(timm_model: nn.Module) -> ViT:
    """A vitcourse `ViT` with the architecture and weights of a timm `VisionTransformer`.

    Works for timm's plain ViTs with a class token (`vit_tiny_patch16_224`, `vit_small_patch16_224`,
    `vit_base_patch16_224`, ..., any `num_classes`, `pretrained=False` or loaded weights).
    Returns the model in the same train/eval mode as `timm_model`, on the CPU in float32.
    """
    src = "timm"
    m = _require_vit(timm_model, "timm_model", src, ("patch_embed", "blocks"))
    if getattr(m, "global_pool", "token") != "token" or not getattr(m, "has_class_token", True):
        raise _unsupported(src, f"global_pool={m.global_pool!r} (vitcourse maps the class-token ViT)")
    if getattr(m, "num_prefix_tokens", 1) != 1 or getattr(m, "no_embed_class", False):
        raise _unsupported(src, "register tokens or a class token without a position embedding")
    if getattr(m, "attn_pool", None) is not None:
        raise _unsupported(src, "attention pooling")
    if getattr(m, "pos_embed", None) is None:
        raise _unsupported(src, "no position embedding")
    proj = m.patch_embed.proj
    if not isinstance(proj, nn.Conv2d) or proj.kernel_size != proj.stride or proj.padding != (0, 0) \
            or proj.kernel_size[0] != proj.kernel_size[1]:
        raise _unsupported(src, f"patch embedding {proj!r}")
    block0 = m.blocks[0]
    _check_gelu(src, block0.mlp.act)
    if not isinstance(m.norm, nn.LayerNorm):
        raise _unsupported(src, f"final norm {m.norm!r}")
    h, w = m.patch_embed.img_size
    num_classes = m.head.out_features if isinstance(m.head, nn.Linear) else 0
    config = ViTConfig(
        image_size=h if h == w else (h, w), patch_size=proj.kernel_size[0],
        in_channels=proj.in_channels, num_classes=num_classes, dim=proj.out_channels,
        depth=len(m.blocks), heads=block0.attn.num_heads, mlp_dim=block0.mlp.fc1.out_features,
        dropout=float(block0.mlp.drop1.p) if isinstance(block0.mlp.drop1, nn.Dropout) else 0.0,
        attn_dropout=float(block0.attn.attn_drop.p) if isinstance(block0.attn.attn_drop, nn.Dropout) else 0.0,
        pool="cls", pos_embed="learned", qkv_bias=block0.attn.qkv.bias is not None,
        proj_bias=block0.attn.proj.bias is not None, norm_eps=float(m.norm.eps))
    # Parameter names were chosen to be timm's, so the mapping is the identity on every key we own;
    # anything else in timm's state dict (layer scale, q/k norm, fc_norm, ...) is a feature we lack.
    theirs = m.state_dict()
    model = _empty(config)
    own = set(model.state_dict())
    mapped = OrderedDict((k, _copy(v)) for k, v in theirs.items() if k in own)
    leftover = [k for k in theirs if k not in own]
    return _load(model, mapped, leftover, src).train(m.training)


def vit_from_torchvision(tv_model: nn.Module, **overrides) -> ViT:
    """A vitcourse `ViT` with the architecture and weights of a torchvision `VisionTransformer`
    (`torchvision.models.vit_b_16(weights=None)` and its siblings); `overrides` change ViTConfig
    fields that do not touch the weights' shapes (e.g. attn_impl="explicit").

    Returns the model in the same train/eval mode as `tv_model`, on the CPU in float32.
    """
    src = "torchvision"
    m = _require_vit(tv_model, "tv_model", src, ("encoder", "conv_proj"))
    if not isinstance(m.conv_proj, nn.Conv2d):
        raise _unsupported(src, "a convolutional stem (conv_stem_configs)")
    if getattr(m, "representation_size", None) is not None or "pre_logits" in dict(m.heads.named_children()):
        raise _unsupported(src, "a pre-logits layer (representation_size)")
    layers = list(m.encoder.layers)
    layer0 = layers[0]
    _check_gelu(src, layer0.mlp[1])
    conv = m.conv_proj
    config = ViTConfig(
        image_size=m.image_size, patch_size=m.patch_size, in_channels=conv.in_channels,
        num_classes=m.heads.head.out_features, dim=m.hidden_dim, depth=len(layers),
        heads=layer0.num_heads, mlp_dim=m.mlp_dim, dropout=float(m.dropout),
        attn_dropout=float(m.attention_dropout), pool="cls", pos_embed="learned",
        qkv_bias=layer0.self_attention.in_proj_bias is not None, norm_eps=float(layer0.ln_1.eps))
    config = dataclasses.replace(config, **overrides)

    theirs = {k: _copy(v) for k, v in m.state_dict().items()}
    names = {  # vitcourse name <- torchvision name
        "cls_token": "class_token",
        "pos_embed": "encoder.pos_embedding",
        "patch_embed.proj.weight": "conv_proj.weight",
        "patch_embed.proj.bias": "conv_proj.bias",
        "norm.weight": "encoder.ln.weight",
        "norm.bias": "encoder.ln.bias",
        "head.weight": "heads.head.weight",
        "head.bias": "heads.head.bias",
    }
    per_block = {
        "norm1": "ln_1", "norm2": "ln_2",
        # nn.MultiheadAttention packs q, k, v as [q | k | v] rows, the same layout as our qkv Linear
        "attn.qkv.weight": "self_attention.in_proj_weight", "attn.qkv.bias": "self_attention.in_proj_bias",
        "attn.proj": "self_attention.out_proj", "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3",
    }
    for i in range(len(layers)):
        for ours, tv in per_block.items():
            prefix_ours, prefix_tv = f"blocks.{i}.{ours}", f"encoder.layers.encoder_layer_{i}.{tv}"
            if ours.endswith((".weight", ".bias")):
                names[prefix_ours] = prefix_tv
            else:
                names[f"{prefix_ours}.weight"] = f"{prefix_tv}.weight"
                names[f"{prefix_ours}.bias"] = f"{prefix_tv}.bias"
    model = _empty(config)
    own = model.state_dict()
    mapped = OrderedDict((k, theirs[v]) for k, v in names.items() if k in own and v in theirs)
    used = set(names.values())
    leftover = [k for k in theirs if k not in used]
    return _load(model, mapped, leftover, src).train(m.training)
