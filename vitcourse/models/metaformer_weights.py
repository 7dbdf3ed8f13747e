"""Load timm's PoolFormer (v1) and MLP-Mixer weights into a vitcourse `MetaFormer`.

`metaformer_from_timm(model)` reads the architecture off a timm `MetaFormer` (`poolformer_s12`,
`_s24`, `_s36`, ...) or `MlpMixer` (`mixer_s16_224`, `mixer_b16_224`, ...), builds the same
`MetaFormer` and copies every tensor by name; nothing is downloaded. With equal weights the logits
agree to float32 round-off (tests/test_metaformer.py): the proof that one block with a pluggable
mixer is those two papers' models. Anything the mapping does not cover (other token mixers, res
scale, a norm in the stem, an MLP head, ResMLP or gMLP blocks, stochastic depth) raises a
ValueError that names it, never a silently different model.

timm keeps PoolFormer's activations as (B, C, H, W) maps, so its MLP is two 1x1 convolutions:
their (out, in, 1, 1) kernels become our Linear layers' (out, in) weights.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn

from .metaformer import DOWNSAMPLE, MetaFormer, MetaFormerConfig
from .vit_weights import _check_gelu, _copy, _load, _unsupported

_TARGET = "vitcourse.MetaFormer"

# timm name -> vitcourse name, applied in order (everything else keeps its name)
_POOLFORMER_KEYS = ((r"^stem\.conv\.", "patch_embed.proj."), (r"\.downsample\.conv\.", ".downsample.proj."),
                    (r"^head\.norm\.", "norm."), (r"^head\.fc\.", "head."))
_MIXER_KEYS = ((r"^stem\.proj\.", "patch_embed.proj."), (r"^blocks\.", "stages.0.blocks."),
               (r"\.mlp_tokens\.", ".token_mixer."), (r"\.mlp_channels\.", ".mlp."))


def _fail(what: str) -> ValueError:
    return _unsupported("timm", what, _TARGET)


def _eps(block_eps: float, block_default: float, head_eps: float) -> float | None:
    """MetaFormerConfig.norm_eps for these epsilons: None when both are the norms' defaults."""
    if block_eps == block_default and head_eps == 1e-6:
        return None
    if block_eps != head_eps:
        raise _fail(f"block norm eps {block_eps} with a final norm eps {head_eps} (one norm_eps for all)")
    return float(block_eps)


def _convert(m: nn.Module, config: MetaFormerConfig, renames: tuple[tuple[str, str], ...]) -> MetaFormer:
    """Build `config` on the meta device, rename `m`'s tensors into it and load them."""
    with torch.device("meta"):
        model = MetaFormer(config)
    own = model.state_dict()
    mapped: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    leftover = []
    for key, value in m.state_dict().items():
        new = key
        for pattern, repl in renames:
            new = re.sub(pattern, repl, new)
        if new not in own:
            leftover.append(key)
            continue
        value = _copy(value)
        if value.ndim == 4 and own[new].ndim == 2:  # a 1x1 conv kernel (out, in, 1, 1) -> Linear (out, in)
            value = value.flatten(1)
        mapped[new] = value
    return _load(model, mapped, leftover, "timm").train(m.training)


def _head(m: nn.Module) -> int:
    head = m.head.fc if isinstance(m.head, nn.Sequential) else m.head
    if isinstance(head, nn.Identity):
        return 0
    if not isinstance(head, nn.Linear):
        raise _fail(f"head {type(head).__name__} (vitcourse's head is one Linear)")
    return head.out_features


def _no_drop_path(blocks: list[nn.Module]) -> None:
    for b in blocks:
        for name in ("drop_path", "drop_path1", "drop_path2"):
            if not isinstance(getattr(b, name, nn.Identity()), nn.Identity):
                raise _fail("stochastic depth (drop_path_rate > 0)")


def from_timm_poolformer(timm_model: nn.Module, image_size: int | tuple[int, int] = 224,
                         **overrides: Any) -> MetaFormer:
    """A `MetaFormer` with the architecture and weights of a timm PoolFormer v1 (`MetaFormer` with
    pooling mixers and GroupNorm, e.g. `timm.create_model("poolformer_s12")`).

    Args:
        timm_model: the timm model; any depths, widths, num_classes.
        image_size: the input size to build for (timm's PoolFormer takes any size; ours is fixed).
        overrides: MetaFormerConfig fields that do not change the weights' shapes.
    Returns the model in the same train/eval mode as `timm_model`, on the CPU in float32.
    The layer-scale start value (a config field) cannot be read off trained weights: it is 1e-5,
    PoolFormer's, unless overridden; the loaded weights are timm's either way.
    """
    m = timm_model
    if type(m).__name__ != "MetaFormer" or not all(hasattr(m, a) for a in ("stem", "stages", "head")):
        raise ValueError(f"timm_model must be a timm MetaFormer (PoolFormer), got {type(m).__name__}")
    stem = m.stem.conv
    if not isinstance(m.stem.norm, nn.Identity):
        raise _fail(f"a norm in the stem ({m.stem.norm!r})")
    blocks = [b for s in m.stages for b in s.blocks]
    _no_drop_path(blocks)
    for i, stage in enumerate(m.stages):
        down = stage.downsample
        if i == 0 and not isinstance(down, nn.Identity):
            raise _fail("a downsampling layer before the first stage")
        if i > 0 and (isinstance(down, nn.Identity) or not isinstance(down.norm, nn.Identity)
                      or (down.conv.kernel_size[0], down.conv.stride[0], down.conv.padding[0]) != DOWNSAMPLE):
            # timm skips the downsampling between stages of equal width; vitcourse always halves the grid
            raise _fail(f"downsampling {type(down).__name__} before stage {i} "
                        "(vitcourse: a 3x3 stride-2 conv without norm)")
    b0 = blocks[0]
    for b in blocks:
        if type(b.token_mixer).__name__ != "Pooling":
            raise _fail(f"token mixer {type(b.token_mixer).__name__} (vitcourse maps PoolFormer v1's pooling)")
        if not (isinstance(b.norm1, nn.GroupNorm) and b.norm1.num_groups == 1 and b.norm1.bias is not None):
            raise _fail(f"norm {b.norm1!r} (PoolFormer v1 uses GroupNorm with 1 group and a bias)")
        if not (isinstance(b.res_scale1, nn.Identity) and isinstance(b.res_scale2, nn.Identity)):
            raise _fail("res scale (PoolFormer v2, ConvFormer, CAFormer)")
        if not isinstance(b.mlp.norm, nn.Identity) or b.mlp.fc1.bias is None:
            raise _fail("an MLP with a norm or without biases")
        _check_gelu("timm", b.mlp.act, _TARGET)
    pool = getattr(m.head.global_pool, "pool_type", None)
    if pool != "avg" or not isinstance(m.head.norm, nn.LayerNorm):
        raise _fail(f"head pooling {pool!r} with norm {m.head.norm!r} (vitcourse: mean, then LayerNorm)")
    dims = tuple(s.blocks[0].norm1.num_channels for s in m.stages)
    has_ls = not isinstance(b0.layer_scale1, nn.Identity)
    config = MetaFormerConfig(
        image_size=image_size, in_channels=stem.in_channels, num_classes=_head(m),
        patch_size=stem.kernel_size[0], patch_stride=stem.stride[0], patch_padding=stem.padding[0],
        depths=tuple(len(s.blocks) for s in m.stages), dims=dims, mixer="pooling", norm="groupnorm",
        head_norm="layernorm", norm_eps=_eps(b0.norm1.eps, 1e-5, m.head.norm.eps), norm_before_pool=False,
        mlp_ratio=b0.mlp.fc1.out_channels / dims[0], pool_size=b0.token_mixer.pool.kernel_size,
        layer_scale_init=1e-5 if has_ls else None, pos_embed="none",
        dropout=float(b0.mlp.drop1.p), **overrides)
    return _convert(m, config, _POOLFORMER_KEYS)


def from_timm_mixer(timm_model: nn.Module, **overrides: Any) -> MetaFormer:
    """A `MetaFormer` with the architecture and weights of a timm `MlpMixer` made of `MixerBlock`s
    (`mixer_s16_224`, `mixer_b16_224`, ...; not ResMLP or gMLP). `overrides`: MetaFormerConfig
    fields that do not change the weights' shapes. Same train/eval mode as `timm_model`."""
    m = timm_model
    if type(m).__name__ != "MlpMixer" or not all(hasattr(m, a) for a in ("stem", "blocks", "norm")):
        raise ValueError(f"timm_model must be a timm MlpMixer, got {type(m).__name__}")
    blocks = list(m.blocks)
    _no_drop_path(blocks)
    b0 = blocks[0]
    if type(b0).__name__ != "MixerBlock":
        raise _fail(f"{type(b0).__name__} blocks (vitcourse maps MLP-Mixer's MixerBlock)")
    if not isinstance(m.stem.norm, nn.Identity):
        raise _fail("a norm in the stem (stem_norm=True)")
    if getattr(m, "global_pool", "avg") != "avg":
        raise _fail(f"global_pool={m.global_pool!r} (vitcourse averages the tokens)")
    if not isinstance(b0.norm1, nn.LayerNorm):
        raise _fail(f"norm {b0.norm1!r} (Mixer uses LayerNorm)")
    for mlp in (b0.mlp_tokens, b0.mlp_channels):
        _check_gelu("timm", mlp.act, _TARGET)
    proj = m.stem.proj
    if proj.kernel_size != proj.stride or proj.padding != (0, 0) or proj.kernel_size[0] != proj.kernel_size[1]:
        raise _fail(f"patch embedding {proj!r}")
    h, w = m.stem.img_size
    dim = proj.out_channels
    config = MetaFormerConfig(
        image_size=h if h == w else (h, w), in_channels=proj.in_channels, num_classes=_head(m),
        patch_size=proj.kernel_size[0], depths=(len(blocks),), dims=(dim,), mixer="mlp",
        norm="layernorm", norm_eps=_eps(b0.norm1.eps, 1e-6, m.norm.eps),
        token_mlp_ratio=b0.mlp_tokens.fc1.out_features / dim, mlp_ratio=b0.mlp_channels.fc1.out_features / dim,
        pos_embed="none", dropout=float(b0.mlp_channels.drop1.p), **overrides)
    return _convert(m, config, _MIXER_KEYS)


def metaformer_from_timm(timm_model: nn.Module, **overrides: Any) -> MetaFormer:
    """`from_timm_poolformer` or `from_timm_mixer`, chosen by the type of `timm_model`."""
    name = type(timm_model).__name__
    if name == "MetaFormer":
        return from_timm_poolformer(timm_model, **overrides)
    if name == "MlpMixer":
        return from_timm_mixer(timm_model, **overrides)
    raise ValueError(f"timm_model must be a timm MetaFormer (PoolFormer) or MlpMixer, got {name}")
