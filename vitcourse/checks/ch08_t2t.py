"""Checks for chapter 08 (Tokens-to-Token): the soft-split length formula and the soft split itself.

Every check builds its own sizes and images and compares with `vitcourse.models.t2t`'s reference.
"""
from __future__ import annotations

from typing import Callable

import torch

from ._core import ExerciseError, exercise, expect_close, expect_equal, expect_shape
from ..i18n import _


@exercise("08.1", "how many tokens a soft split makes along one side", difficulty="easy", minutes=5)
def soft_split_length(student: Callable[[int, int, int, int], int]) -> None:
    """`student(size, kernel, stride, padding)` equals floor((size + 2p - k) / s) + 1 on fresh cases."""
    from ..models.t2t import soft_split_length as reference

    cases = [(224, 7, 4, 2), (56, 3, 2, 1), (28, 7, 2, 3), (14, 3, 2, 1), (7, 3, 2, 1), (30, 5, 3, 0),
             (9, 3, 3, 0), (10, 4, 1, 0), (33, 7, 4, 2), (5, 5, 1, 0)]
    for size, k, s, p in cases:
        expected = reference(size, k, s, p)
        got = student(size, k, s, p)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = int(got.item())
        what = f"soft_split_length(size={size}, kernel={k}, stride={s}, padding={p})"
        if got == (size + 2 * p - k) / s + 1 and got != expected:
            raise ExerciseError(_("{what} returned {got}, a fraction: a window that does not fit "
                                  "entirely is dropped, so round down with // before adding 1").format(
                what=what, got=got))
        if got == (size - k) // s + 1 and p and got != expected:
            raise ExerciseError(_("{what} returned {got}: the padding adds {p} pixels on *both* sides "
                                  "of the image, so the padded size is size + 2 * padding").format(
                what=what, got=got, p=p))
        expect_equal(what, got, expected)


@exercise("08.2", "soft split: overlapping windows as tokens", difficulty="medium", minutes=15)
def soft_split(student: Callable[[torch.Tensor, int, int, int], torch.Tensor]) -> None:
    """`student(images, kernel, stride, padding)` equals `vitcourse.models.t2t.soft_split` on fresh images."""
    from ..models.t2t import soft_split as reference

    g = torch.Generator().manual_seed(808)
    for b, c, h, w, k, s, p in [(2, 1, 12, 12, 3, 2, 1), (1, 3, 9, 7, 3, 2, 0), (2, 4, 14, 14, 7, 4, 2),
                                (1, 2, 8, 8, 4, 4, 0)]:
        x = torch.randn(b, c, h, w, generator=g)
        expected = reference(x, k, s, p)
        got = student(x.clone(), k, s, p)
        what = _("soft_split(images {shape}, kernel={k}, stride={s}, padding={p})").format(
            shape=tuple(x.shape), k=k, s=s, p=p)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        if tuple(got.shape) == tuple(expected.transpose(1, 2).shape) and got.shape != expected.shape:
            raise ExerciseError(_("{what} has shape {shape}: F.unfold gives (B, C*k*k, L); "
                                  "tokens go along dim 1, so transpose to (B, L, C*k*k)").format(
                what=what, shape=tuple(got.shape)))
        expect_shape(what, got, tuple(expected.shape))
        expect_close(what, got, expected, atol=1e-6, rtol=0)
