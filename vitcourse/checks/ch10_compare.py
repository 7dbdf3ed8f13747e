"""Checks for chapter 10 (comparisons): a ViT's MACs from its shape, and the CNN baseline's
residual basic block.

Every check builds its own configurations and compares with the package: MACs counted by
`vitcourse.flops` on a real model, and the outputs of `vitcourse.models.cnn.BasicBlock` with its
weights copied into the student's block.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._core import ExerciseError, call_student, exercise, expect_close, expect_equal, expect_true
from ..i18n import _


@exercise("10.1", "MACs of a ViT forward pass from its shape", difficulty="medium", minutes=20)
def vit_macs(student: Callable[..., int]) -> None:
    """`student(image_size, patch_size, in_channels, dim, depth, mlp_dim, num_classes)` equals the
    multiply-accumulates `torch.utils.flop_counter` counts for a mean-pooled ViT (FLOPs / 2)."""
    from ..flops import count_flops
    from ..models.vit import ViT, ViTConfig

    cases = [(28, 7, 1, 64, 2, 128, 10), (32, 4, 3, 48, 1, 96, 5), (28, 4, 1, 32, 3, 64, 10),
             (48, 16, 3, 96, 2, 384, 7)]
    for s, p, c, d, depth, mlp, k in cases:
        cfg = ViTConfig(image_size=s, patch_size=p, in_channels=c, dim=d, depth=depth, heads=2,
                        mlp_dim=mlp, num_classes=k, pool="mean")
        expected = count_flops(ViT(cfg)) // 2
        got = student(s, p, c, d, depth, mlp, k)
        what = f"vit_macs(image_size={s}, patch_size={p}, in_channels={c}, dim={d}, depth={depth}, mlp_dim={mlp}, num_classes={k})"
        n = (s // p) ** 2
        if got == expected - depth * 2 * n * n * d:
            raise ExerciseError(_("{what} returned {got}: the attention itself is missing, q kᵀ and "
                                  "weights · v cost N·N·D each per block").format(what=what, got=got))
        if got == expected - n * p * p * c * d:
            raise ExerciseError(_("{what} returned {got}: the patch embedding (N·P²·C·D) is "
                                  "missing").format(what=what, got=got))
        expect_equal(what, got, expected)


@exercise("10.2", "the ResNet basic block: two 3x3 convolutions, batch norms and a shortcut",
          difficulty="medium", minutes=20)
def basic_block(student_class: type) -> None:
    """`student_class(in_channels, out_channels, stride)` builds a block whose parts are named like
    `vitcourse.models.cnn.BasicBlock`'s (conv1, bn1, conv2, bn2, shortcut); with the package
    block's weights and batch-norm statistics copied in, it returns the same output."""
    from ..models.cnn import BasicBlock

    expect_true(isinstance(student_class, type) and issubclass(student_class, nn.Module),
                _("pass the class itself (a subclass of nn.Module), not {got}").format(
                    got=type(student_class).__name__))
    for i, (c_in, c_out, stride) in enumerate([(8, 8, 1), (8, 16, 2), (6, 12, 1)]):
        what = f"{student_class.__name__}({c_in}, {c_out}, stride={stride})"
        torch.manual_seed(1000 + i)
        try:
            block = student_class(c_in, c_out, stride)
        except NotImplementedError:
            raise
        except Exception as exc:  # a wrong signature or a mistake while building
            raise ExerciseError(_("{what} could not be built: {error}: {detail}").format(
                what=what, error=type(exc).__name__, detail=str(exc).splitlines()[0] if str(exc) else "")) from None
        reference = BasicBlock(c_in, c_out, stride).eval()
        with torch.no_grad():  # batch norms as training leaves them, so a skipped one shows
            for m in reference.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.3)
                    m.running_mean.normal_(0, 0.3)
                    m.running_var.uniform_(0.5, 1.5)
        _same_parts(what, block, reference, c_in != c_out or stride != 1)
        block.load_state_dict(reference.state_dict())
        block.eval()
        x = torch.randn(2, c_in, 9, 9, generator=torch.Generator().manual_seed(1100 + i))
        with torch.no_grad():
            expected = reference(x.clone())
            got = call_student(what, block, x.clone())
            expect_true(isinstance(got, torch.Tensor), _("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
            if got.shape == expected.shape and not torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
                hint = _diagnose_block(reference, x, got)
                if hint:
                    raise ExerciseError(_("{what}: {hint}").format(what=what, hint=hint))
        expect_close(what, got, expected, atol=1e-5)


def _same_parts(what: str, block: nn.Module, reference: nn.Module, projects: bool) -> None:
    """The student's parameters and buffers have the package block's names and shapes."""
    got, expected = block.state_dict(), reference.state_dict()
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if projects and any(k.startswith("shortcut.") for k in missing):
        raise ExerciseError(_("{what}: the output has another shape than the input here, so the shortcut "
                              "cannot be the identity: make it nn.Sequential(nn.Conv2d(in_channels, "
                              "out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))"
                              ).format(what=what))
    if not projects and any(k.startswith("shortcut.") for k in extra):
        raise ExerciseError(_("{what}: input and output have the same shape here, so the shortcut is "
                              "nn.Identity(): no parameters").format(what=what))
    if any(k.endswith(".bias") and k.split(".")[0] in ("conv1", "conv2") for k in extra):
        raise ExerciseError(_("{what}: the convolutions take bias=False: the batch norm after each one "
                              "adds its own shift").format(what=what))
    if missing or extra:
        raise ExerciseError(_("{what}: the parts must have the package's names (conv1, bn1, conv2, bn2, "
                              "shortcut) so that its weights can be copied in; missing {missing}, "
                              "unexpected {extra}").format(what=what, missing=_parts(missing), extra=_parts(extra)))
    wrong = [f"{k} {tuple(got[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if got[k].shape != v.shape]
    if wrong:
        raise ExerciseError(_("{what}: wrong shapes: {wrong}; both convolutions are 3x3 (padding 1), the "
                              "shortcut's is 1x1").format(what=what, wrong="; ".join(wrong)))


def _parts(keys: list[str]) -> list[str]:
    """State-dict keys as the parts they belong to: ["bn1.bias", "bn1.weight"] -> ["bn1"]."""
    return sorted({k.split(".")[0] for k in keys})


def _diagnose_block(reference: nn.Module, x: torch.Tensor, got: torch.Tensor) -> str:
    """The usual mistake that gives `got` from the reference block's own parts, in words ("" if none)."""
    r = reference
    inner = r.bn2(r.conv2(F.relu(r.bn1(r.conv1(x)))))  # the residual branch, before the sum
    skip = r.shortcut(x)
    wrong = {
        _("the shortcut is missing: the block returns relu(branch) without adding the input (through "
          "the shortcut), so it is a plain two-layer CNN, not a residual block"): F.relu(inner),
        _("the ReLU comes before the sum; ResNet adds the shortcut first, then applies the ReLU: "
          "relu(bn2(conv2(...)) + shortcut(x))"): F.relu(inner) + skip,
        _("the last ReLU is missing: after the sum, apply the ReLU, relu(bn2(conv2(...)) + shortcut(x))"):
            inner + skip,
    }
    for hint, value in wrong.items():
        if value.shape == got.shape and torch.allclose(got, value, atol=1e-5, rtol=1e-4):
            return hint
    return ""
