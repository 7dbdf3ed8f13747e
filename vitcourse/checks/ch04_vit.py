"""Checks for chapter 04 (the Vision Transformer): the ViT written as an `nn.Module`, and its
parameters counted from the configuration.

Each check builds fresh small models (`vitcourse.models.vit.ViT`) and compares with them: the ViT
check copies the package model's weights into the student's class (by the parameters' names) and
compares the logits.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

from ._core import ExerciseError, call_student, exercise, expect_close, expect_true
from ..i18n import _

# The attribute names of the parts, as in timm, torchvision's ports and `vitcourse.models.vit.ViT`.
PARTS = ("patch_embed", "cls_token", "pos_embed", "blocks", "norm", "head")
_ARGS = ("image_size", "patch_size", "in_channels", "num_classes", "dim", "depth", "heads", "mlp_dim")


def _configs() -> list[Any]:
    from ..models.vit import ViTConfig

    return [
        ViTConfig(image_size=32, patch_size=8, in_channels=3, num_classes=7, dim=24, depth=2, heads=3, mlp_dim=40),
        ViTConfig(image_size=28, patch_size=7, in_channels=1, num_classes=10, dim=16, depth=3, heads=2, mlp_dim=32,
                  pool="mean"),
        ViTConfig(image_size=48, patch_size=16, in_channels=2, num_classes=5, dim=20, depth=1, heads=4, mlp_dim=12),
    ]


def _class_configs() -> list[Any]:
    """The configurations the ViT class is built with: class token, learned positions."""
    import dataclasses

    return [dataclasses.replace(c, pool="cls") for c in _configs()]


def _part_counts(module: nn.Module) -> dict[str, int]:
    """Number of parameters per top-level part ("blocks.0.attn.qkv.weight" counts for "blocks")."""
    counts: dict[str, int] = {}
    for name, p in module.named_parameters():
        part = name.split(".")[0]
        counts[part] = counts.get(part, 0) + p.numel()
    return counts


def _counts_text(got: dict[str, int], expected: dict[str, int]) -> str:
    parts = list(expected) + [p for p in got if p not in expected]
    per_part = ", ".join(f"{p} {got.get(p, 0):,}/{expected.get(p, 0):,}" for p in parts)
    return _("parameters: yours {got:,}, the ViT's {expected:,}; per part (yours/expected): {per_part}").format(
        got=sum(got.values()), expected=sum(expected.values()), per_part=per_part)


def _structure_problems(model: nn.Module, reference: nn.Module, cfg: Any) -> list[str]:
    """What is missing or extra in the student's parameters, in plain words (empty when the names
    and shapes match the reference's)."""
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    problems = []
    if "cls_token" in missing:
        problems.append(_("there is no class token: add self.cls_token, a learned parameter of shape "
                          "(1, 1, dim) that forward puts in front of the patch tokens (chapter 03)"))
    if "pos_embed" in missing:
        problems.append(_("there are no position embeddings: add self.pos_embed, a learned parameter "
                          "of shape (1, 1 + N, dim) added to the tokens; without it the model sees a "
                          "bag of patches (chapter 03)"))
    if any(k.startswith("patch_embed.") for k in missing):
        problems.append(_("self.patch_embed should be PatchEmbed(image_size, patch_size, in_channels, dim)"))
    if any(k.startswith("norm.") for k in missing):
        problems.append(_("the final LayerNorm is missing: add self.norm = nn.LayerNorm(dim, eps=1e-6) "
                          "and apply it after the last block (Eq. 4)"))
    if any(k.startswith("head.") for k in missing):
        problems.append(_("the classification head is missing: add self.head = nn.Linear(dim, num_classes)"))
    blocks_got = {k.split(".")[1] for k in got if k.startswith("blocks.")}
    blocks_expected = {k.split(".")[1] for k in expected if k.startswith("blocks.")}
    if blocks_got != blocks_expected:
        problems.append(_("self.blocks should hold depth = {depth} encoder blocks, EncoderBlock(dim, heads, "
                          "mlp_dim) in an nn.ModuleList; it holds {got}").format(
            depth=cfg.depth, got=len(blocks_got)))
    elif any(k.startswith("blocks.") for k in missing + unexpected):
        problems.append(_("the blocks' parameters differ from EncoderBlock(dim, heads, mlp_dim)'s: use "
                          "vitcourse.layers.blocks.EncoderBlock with its defaults"))
    if unexpected:
        problems.append(_("the ViT has no parameters named {names}: name the parts patch_embed, "
                          "cls_token, pos_embed, blocks, norm and head, so that the check can copy the "
                          "reference weights into your model").format(
            names=", ".join(unexpected[:4]) + (", ..." if len(unexpected) > 4 else "")))
    if problems:
        return problems
    for name, shape in expected.items():
        if got[name] != shape:
            hint = ""
            if name == "pos_embed" and got[name][-2:] == (cfg.num_patches, cfg.dim):
                hint = _(" (one row per token, the class token's included: 1 + N rows)")
            problems.append(_("{name} has shape {got}, expected {expected}{hint}").format(
                name=name, got=got[name], expected=shape, hint=hint))
    return problems


@exercise("04.1", "the ViT as an nn.Module: patch embedding, class token, positions, blocks, head",
          difficulty="medium", minutes=30)
def vit_class(student_class: type) -> None:
    """`student_class(image_size=..., patch_size=..., in_channels=..., num_classes=..., dim=...,
    depth=..., heads=..., mlp_dim=...)` builds a class-token ViT whose parameters are named like the
    package's `ViT` (patch_embed, cls_token, pos_embed, blocks, norm, head); with the package
    model's weights copied in, it returns the same logits."""
    from ..models.vit import ViT

    expect_true(isinstance(student_class, type) and issubclass(student_class, nn.Module),
                _("pass the class itself (a subclass of nn.Module), not {got}").format(
                    got=type(student_class).__name__))
    for i, cfg in enumerate(_class_configs()):
        args = {name: getattr(cfg, name) for name in _ARGS}
        what = f"{student_class.__name__}({', '.join(f'{k}={v}' for k, v in args.items())})"
        torch.manual_seed(900 + i)
        try:
            model = student_class(**args)
        except NotImplementedError:
            raise
        except Exception as exc:  # a wrong signature or a shape error while building
            raise ExerciseError(_("{what} could not be built: {error}: {detail}").format(
                what=what, error=type(exc).__name__, detail=str(exc).splitlines()[0] if str(exc) else "")) from None
        reference = ViT(cfg).eval()
        with torch.no_grad():  # parameters of the size training gives, so a skipped step shows
            reference.cls_token.normal_(0, 1)
            reference.pos_embed.normal_(0, 1)
            reference.norm.weight.uniform_(0.5, 1.5)
            reference.norm.bias.normal_(0, 0.3)
            reference.head.bias.normal_(0, 0.3)
        problems = _structure_problems(model, reference, cfg)
        if problems:
            raise ExerciseError(_("{what}: {problems} ({counts})").format(
                what=what, problems="; ".join(problems),
                counts=_counts_text(_part_counts(model), _part_counts(reference))))
        norm = getattr(model, "norm", None)
        if isinstance(norm, nn.LayerNorm) and norm.eps != 1e-6:
            raise ExerciseError(_("{what}: self.norm has eps={eps}; the paper's code and timm use 1e-6: "
                                  "nn.LayerNorm(dim, eps=1e-6)").format(what=what, eps=norm.eps))
        model.load_state_dict(reference.state_dict())
        model.eval()
        x = torch.randn(2, cfg.in_channels, cfg.image_size, cfg.image_size,
                        generator=torch.Generator().manual_seed(950 + i))
        with torch.no_grad():
            expected = reference(x)
            got = call_student(what, model, x.clone())
        expect_true(isinstance(got, torch.Tensor), _("{what} should return a tensor, got {got}").format(
            what=what, got=type(got).__name__))
        b, n, d, k = x.shape[0], cfg.num_patches, cfg.dim, cfg.num_classes
        if tuple(got.shape) == (b, 1 + n, k):
            raise ExerciseError(_("{what} returns logits for every token, shape {shape}: the head reads "
                                  "only the class token's output, x[:, 0], giving (B, num_classes).").format(
                what=what, shape=tuple(got.shape)))
        if tuple(got.shape) in ((b, d), (b, 1 + n, d)):
            raise ExerciseError(_("{what} returns features of shape {shape}, not logits: take the class "
                                  "token's output x[:, 0] and apply self.head.").format(
                what=what, shape=tuple(got.shape)))
        if got.shape == expected.shape and not torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
            hint = _diagnose(reference, x, got)
            if hint:
                raise ExerciseError(_("{what}: {hint}").format(what=what, hint=hint))
        expect_close(what, got, expected, atol=1e-5)


def _diagnose(reference: nn.Module, x: torch.Tensor, got: torch.Tensor) -> str:
    """The usual mistake that gives `got` from the reference's own parts, in words ("" if none)."""
    def encode(z: torch.Tensor) -> torch.Tensor:
        for block in reference.blocks:
            z = block(z)
        return z  # (B, 1 + N, D), before the final norm

    with torch.no_grad():
        tokens = reference.patch_embed(x)  # (B, N, D)
        cls = reference.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        z = encode(torch.cat([cls, tokens], dim=1) + reference.pos_embed)
        zn = reference.norm(z)
        head = reference.head
        at_end = reference.norm(encode(torch.cat([tokens, cls], dim=1) + reference.pos_embed))
        mistakes = [
            (head(zn[:, 1:].mean(1)), _("the head gets the mean of the patch tokens; this ViT reads the "
                                        "class token's output, x[:, 0].")),
            (head(zn.mean(1)), _("the head gets the mean of all tokens; this ViT reads the class "
                                 "token's output, x[:, 0].")),
            (head(zn[:, -1]), _("the head reads the last token; the class token is the first one, x[:, 0].")),
            (head(z[:, 0]), _("the final LayerNorm is not applied: x = self.norm(x) after the last block "
                              "(Eq. 4).")),
            (head(reference.norm(encode(torch.cat([cls, tokens], dim=1)))[:, 0]),
             _("the position embeddings are not added: x = torch.cat([cls, x], dim=1) + self.pos_embed.")),
            (head(at_end[:, -1]), _("the class token is put after the patch tokens; it goes first, so "
                                    "that it gets the first row of the position embeddings.")),
            (head(at_end[:, 0]), _("the class token is put after the patch tokens; it goes first, so "
                                   "that it gets the first row of the position embeddings.")),
        ]
    for value, hint in mistakes:
        if torch.allclose(got, value, atol=1e-5, rtol=1e-4):
            return hint
    return ""


@exercise("04.2", "count a ViT's parameters from its configuration", difficulty="medium", minutes=20)
def param_count(student_param_count: Callable[[Any], int]) -> None:
    """`student_param_count(config)` equals the number of parameters of `ViT(config)` (learned
    position embeddings; class token when pool == "cls", none when pool == "mean")."""
    from ..models.vit import ViT

    for cfg in _configs():
        expected = sum(p.numel() for p in ViT(cfg).parameters())
        got = student_param_count(cfg)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = int(got.item())
        what = _("param_count(image {image_size}, patch {patch_size}, channels {in_channels}, "
                 "classes {num_classes}, dim {dim}, depth {depth}, mlp {mlp_dim}, pool {pool!r})").format(
            image_size=cfg.image_size, patch_size=cfg.patch_size, in_channels=cfg.in_channels,
            num_classes=cfg.num_classes, dim=cfg.dim, depth=cfg.depth, mlp_dim=cfg.mlp_dim, pool=cfg.pool)
        if got == expected:
            continue
        d, n = cfg.dim, (cfg.image_size // cfg.patch_size) ** 2
        hints = {
            d: _("the class token (D parameters) is missing, or counted when pool is 'mean'"),
            -d: _("a class token is counted, but with pool='mean' there is none"),
            (n + (cfg.pool == "cls")) * d: _("the position embeddings ((N + prefix) x D) are missing"),
            (2 * cfg.depth + 1) * 2 * d: _("the LayerNorms (a weight and a bias of size D each: two per "
                                           "block plus the final one) are missing"),
            2 * cfg.depth * 2 * d: _("the two LayerNorms inside each block are missing"),
            2 * d: _("the final LayerNorm (2 x D) is missing"),
            cfg.depth * (3 * d + d + cfg.mlp_dim + d) + d + cfg.num_classes:
                _("the biases are missing (every Linear and the patch convolution has one)"),
        }
        hint = hints.get(expected - got, "") if isinstance(got, int) else ""
        off = _(" (off by {off:,}: {hint})").format(off=expected - got, hint=hint) if hint else ""
        raise ExerciseError(_("{what} is wrong: expected {expected:,}, got {got!r}{off}").format(
            what=what, expected=expected, got=got, off=off))
