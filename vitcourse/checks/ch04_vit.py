"""Checks for chapter 04 (the Vision Transformer): counting parameters, assembling the forward pass.

Each check builds fresh small models (`vitcourse.models.vit.ViT`) and compares with them.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._core import ExerciseError, exercise, expect_close, expect_true
from ..i18n import _


def _configs() -> list[Any]:
    from ..models.vit import ViTConfig

    return [
        ViTConfig(image_size=32, patch_size=8, in_channels=3, num_classes=7, dim=24, depth=2, heads=3, mlp_dim=40),
        ViTConfig(image_size=28, patch_size=7, in_channels=1, num_classes=10, dim=16, depth=3, heads=2, mlp_dim=32,
                  pool="mean"),
        ViTConfig(image_size=48, patch_size=16, in_channels=2, num_classes=5, dim=20, depth=1, heads=4, mlp_dim=12),
    ]


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


@exercise("04.1", "assemble the ViT forward pass from the model's parts", difficulty="easy",
          minutes=15)
def vit_forward(student_forward: Callable[[Any, torch.Tensor], torch.Tensor]) -> None:
    """`student_forward(model, images)` equals `model(images)` for fresh small class-token ViTs."""
    from ..models.vit import ViT

    for i, cfg in enumerate(c for c in _configs() if c.pool == "cls"):
        torch.manual_seed(900 + i)
        model = ViT(cfg).eval()
        with torch.no_grad():  # a non-zero class token and norm, so skipping them shows
            model.cls_token.normal_(0, 1)
            model.norm.weight.uniform_(0.5, 1.5)
            model.norm.bias.normal_(0, 0.3)
        x = torch.randn(2, cfg.in_channels, cfg.image_size, cfg.image_size,
                        generator=torch.Generator().manual_seed(950 + i))
        with torch.no_grad():
            expected = model(x)
            got = student_forward(model, x.clone())
        what = _("vit_forward(ViT(dim {dim}, depth {depth}), images {shape})").format(
            dim=cfg.dim, depth=cfg.depth, shape=tuple(x.shape))
        expect_true(isinstance(got, torch.Tensor), _("{what} should return a tensor, got {got}").format(
            what=what, got=type(got).__name__))
        if got.shape == expected.shape and not torch.allclose(got, expected, atol=1e-5):
            with torch.no_grad():
                tokens = model.forward_features(x)  # (B, 1 + N, D), after the final norm
                mean_pooled = model.head(tokens[:, 1:].mean(1))
                all_mean = model.head(tokens.mean(1))
                last = model.head(tokens[:, -1])
            if torch.allclose(got, mean_pooled, atol=1e-5) or torch.allclose(got, all_mean, atol=1e-5):
                raise ExerciseError(_("{what}: the head gets the mean of the tokens; with a class token "
                                      "the head reads the class token's output, tokens[:, 0].").format(
                    what=what))
            if torch.allclose(got, last, atol=1e-5):
                raise ExerciseError(_("{what}: the head reads the last token; the class token is the "
                                      "first one.").format(what=what))
        expect_close(what, got, expected, atol=1e-5)
