"""Checks for chapter 01 (patches): patchify, its inverse unpatchify, the convolution trick.

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


@exercise("01.2", "unpatchify: put a sequence of patches back into images",
          difficulty="easy", minutes=10)
def unpatchify(student_unpatchify: Callable[[torch.Tensor, int, tuple[int, int]], torch.Tensor]) -> None:
    """`student_unpatchify(tokens, patch_size, (H, W))` equals `vitcourse.layers.patches.unpatchify`
    on fresh token sequences, and so gives back the images they were cut from.

    Cases: one to three channels (C read off the token width), square and non-square images and
    grids, several patch sizes.
    """
    from ..layers.patches import patchify as reference_patchify
    from ..layers.patches import unpatchify as reference

    cases = [(2, 1, 12, 12, 4), (3, 3, 10, 15, 5), (1, 2, 6, 9, 3), (2, 3, 8, 8, 8), (2, 2, 12, 8, 2)]
    for i, (b, c, h, w, p) in enumerate(cases):
        images = _images(b, c, h, w, seed=401 + i)
        tokens = reference_patchify(images, p)  # (B, N, P*P*C)
        expected = reference(tokens, p, (h, w))  # (B, C, H, W): the images themselves
        got = student_unpatchify(tokens.clone(), p, (h, w))
        what = _("unpatchify(tokens of shape {shape}, patch_size={p}, image_size={size})").format(
            shape=tuple(tokens.shape), p=p, size=(h, w))
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        if tuple(got.shape) == (b, h, w, c) and tuple(got.shape) != tuple(expected.shape):
            raise ExerciseError(_(
                "{what} returns channels-last images (B, H, W, C) = {got}. PyTorch's images are "
                "channel-first, (B, C, H, W) = {expected}: move the channel axis next to the batch "
                "axis.").format(what=what, got=tuple(got.shape), expected=tuple(expected.shape)))
        if tuple(got.shape) == tuple(expected.shape) and not torch.equal(got, expected):
            # The common slips, each a wrong reading of patchify's order.
            gh, gw = h // p, w // p
            slips = [
                (True, rearrange(tokens, "b (w h) (p1 p2 c) -> b c (h p1) (w p2)", h=gh, w=gw, p1=p, p2=p), _(
                    "{what}: the patches go back in column-major order (down the first column "
                    "first), so the grid of patches is transposed. patchify reads them row by row: "
                    "token k is row k // (W/P), column k % (W/P) of the grid.")),
                (c > 1, rearrange(tokens, "b (h w) (c p1 p2) -> b c (h p1) (w p2)", h=gh, w=gw, p1=p, p2=p), _(
                    "{what}: each token is read channel-first (c, p1, p2), but patchify flattens a "
                    "patch in (p1, p2, c) order, the channels of one pixel next to each other. "
                    "Split the token width as (P, P, C).")),
                (True, rearrange(tokens, "b (h w) (p2 p1 c) -> b c (h p1) (w p2)", h=gh, w=gw, p1=p, p2=p), _(
                    "{what}: every patch comes back transposed (its rows and columns swapped). "
                    "Inside a token the pixels are in (p1, p2) order: row, then column.")),
                (True, tokens.reshape(b, c, h, w), _(
                    "{what}: a single reshape keeps the numbers in their memory order, so it cannot "
                    "undo patchify's permute. Reshape to (B, H/P, W/P, P, P, C), permute, then "
                    "reshape to (B, C, H, W).")),
            ]
            for applies, wrong, message in slips:
                if applies and torch.equal(got, wrong):
                    raise ExerciseError(message.format(what=what))
        expect_close(what, got, expected, atol=0, rtol=0)


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
