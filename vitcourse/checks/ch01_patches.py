"""Checks for chapter 01 (patches): patchify, the sequence length, the convolution trick.

Every check builds its own inputs (sizes and values the notebook never shows) and compares the
student's answer with the package's reference implementation in `vitcourse.layers.patches`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from einops import rearrange

from ._core import ExerciseError, exercise, expect_close, expect_equal, expect_shape, expect_true
from ..i18n import _


def _images(batch: int, channels: int, height: int, width: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=g)


@exercise("01.1", "patchify an image batch into a sequence of flattened patches",
          difficulty="medium", minutes=15)
def patchify(student_patchify: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """`student_patchify(images, patch_size)` equals `vitcourse.layers.patches.patchify` on fresh inputs.

    Cases: one channel and three channels, square and non-square images, several patch sizes.
    """
    from ..layers.patches import patchify as reference

    cases = [(2, 1, 12, 12, 4), (3, 3, 10, 15, 5), (1, 2, 6, 9, 3), (2, 3, 8, 8, 8)]
    for i, (b, c, h, w, p) in enumerate(cases):
        x = _images(b, c, h, w, seed=101 + i)
        expected = reference(x, p)
        got = student_patchify(x.clone(), p)
        what = _("patchify(images of shape {shape}, patch_size={p})").format(shape=(b, c, h, w), p=p)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        if tuple(got.shape) == tuple(expected.shape) and not torch.allclose(got, expected):
            # The most common slips: columns before rows, or channels first inside each patch.
            col_major = rearrange(x, "b c (h p1) (w p2) -> b (w h) (p1 p2 c)", p1=p, p2=p)
            chan_first = rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=p, p2=p)
            if torch.allclose(got, col_major):
                raise ExerciseError(_(
                    "{what}: the patches come out in column-major order (down the first column "
                    "first). The paper reads patches row by row: left to right, then top to bottom."
                ).format(what=what))
            if c > 1 and torch.allclose(got, chan_first):
                raise ExerciseError(_(
                    "{what}: each patch is flattened channel-first (c, p1, p2). Flatten in "
                    "(p1, p2, c) order: all channels of a pixel next to each other, as "
                    "'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' does.").format(what=what))
        expect_close(what, got, expected, atol=0, rtol=0)


@exercise("01.2", "sequence length of a ViT for a given image and patch size",
          difficulty="easy", minutes=5)
def sequence_length(student_sequence_length: Callable[..., int]) -> None:
    """`student_sequence_length(image_size, patch_size, class_token=True)` on fresh sizes."""
    cases = [(224, 16, True), (224, 16, False), (384, 16, True), (224, 14, True), (28, 7, False),
             (28, 4, True), (96, 16, True), (512, 32, False), ((64, 96), 16, True), ((30, 12), 6, False)]
    for image_size, patch_size, cls in cases:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        expected = (h // patch_size) * (w // patch_size) + int(cls)
        got = student_sequence_length(image_size, patch_size, class_token=cls)
        what = f"sequence_length({image_size!r}, {patch_size}, class_token={cls})"
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = int(got.item())
        if got == expected - int(cls) and cls:
            raise ExerciseError(_("{what} is wrong: expected {expected}, got {got}. "
                                  "Did you forget the class token, one extra token in front?").format(
                what=what, expected=expected, got=got))
        expect_equal(what, got, expected)
    for bad in [(30, 7), ((28, 30), 7)]:
        try:
            student_sequence_length(bad[0], bad[1], class_token=True)
        except ValueError:
            continue
        raise ExerciseError(_("sequence_length({image_size!r}, {patch_size}) should raise ValueError: "
                              "the image size is not divisible by the patch size, so the patches do "
                              "not tile it").format(image_size=bad[0], patch_size=bad[1]))


@exercise("01.3", "the convolution trick: a Conv2d equal to patchify + Linear",
          difficulty="hard", minutes=20)
def conv_from_linear(student_conv_from_linear: Callable[[nn.Linear, int, int], nn.Conv2d]) -> None:
    """`student_conv_from_linear(linear, patch_size, in_channels)` returns a Conv2d whose output,
    flattened to tokens, equals `linear(patchify(x, patch_size))` for fresh images."""
    from ..layers.patches import patchify as reference_patchify

    for i, (c, p, d, hw) in enumerate([(3, 4, 5, (8, 12)), (1, 7, 6, (14, 14)), (2, 3, 4, (9, 6))]):
        torch.manual_seed(200 + i)
        linear = nn.Linear(p * p * c, d)
        x = _images(2, c, hw[0], hw[1], seed=300 + i)
        with torch.no_grad():
            expected = linear(reference_patchify(x, p))  # (B, N, D)
        conv = student_conv_from_linear(linear, p, c)
        what = f"conv_from_linear(Linear({p * p * c}, {d}), patch_size={p}, in_channels={c})"
        expect_true(isinstance(conv, nn.Conv2d), _("{what} should return an nn.Conv2d, got {got}").format(
            what=what, got=type(conv).__name__))
        expect_equal(f"{what}.kernel_size", tuple(conv.kernel_size), (p, p))
        expect_equal(_("{what}.stride (patches must not overlap)").format(what=what), tuple(conv.stride),
                     (p, p))
        expect_shape(f"{what}.weight", conv.weight, (d, c, p, p))
        expect_true(conv.bias is not None,
                    _("{what} has no bias, but the linear layer has one: copy it").format(what=what))
        with torch.no_grad():
            out = conv(x)  # (B, D, H/P, W/P)
        got = out.flatten(2).transpose(1, 2)  # (B, N, D)
        expect_shape(_("the tokens of {what}").format(what=what), got, tuple(expected.shape))
        if not torch.allclose(got, expected, atol=1e-5):
            naive = linear.weight.detach().reshape(d, c, p, p)
            if c > 1 and torch.allclose(conv.weight.detach(), naive):
                raise ExerciseError(_(
                    "{what}: the weight was reshaped straight to (D, C, P, P), but each row of the "
                    "linear weight is ordered (p1, p2, c). Reshape to (D, P, P, C) first, then move "
                    "the channel axis to position 1.").format(what=what))
        expect_close(_("the tokens of {what}").format(what=what), got, expected, atol=1e-5, rtol=1e-4)
