"""Checks for chapter 09 (Swin): window partition and the shifted-window attention mask.

Every check builds its own feature maps and sizes and compares with `vitcourse.models.swin`'s reference.
"""
from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange

from ._core import ExerciseError, exercise, expect_close, expect_shape, expect_true
from ..i18n import _


@exercise("09.1", "partition a feature map into non-overlapping windows",
          difficulty="medium", minutes=15)
def window_partition(student: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """`student(x, window_size)`: (B, H, W, C) -> (B*nW, M*M, C) as `vitcourse.models.swin.window_partition`."""
    from ..models.swin import window_partition as reference

    g = torch.Generator().manual_seed(909)
    for b, h, w, c, m in [(2, 8, 8, 3, 4), (1, 6, 9, 2, 3), (3, 14, 14, 5, 7), (2, 4, 6, 1, 2)]:
        x = torch.randn(b, h, w, c, generator=g)
        expected = reference(x, m)
        got = student(x.clone(), m)
        what = f"window_partition(x {tuple(x.shape)}, window_size={m})"
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        expect_shape(what, got, tuple(expected.shape))
        col_major = rearrange(x, "b (nh m1) (nw m2) c -> (b nw nh) (m1 m2) c", m1=m, m2=m)
        if h != w or h // m > 1:
            if torch.equal(got, col_major) and not torch.equal(got, expected):
                raise ExerciseError(_("{what}: the windows come out column by column; number them "
                                      "row by row (left to right, then top to bottom)").format(what=what))
        naive = x.reshape(-1, m * m, c)
        if torch.equal(got, naive) and not torch.equal(got, expected):
            raise ExerciseError(_("{what}: a plain reshape cuts the map into runs of M*M consecutive "
                                  "pixels of a row, not M x M squares; split H and W into "
                                  "(windows, M) first and move the two window axes together").format(
                what=what))
        expect_close(what, got, expected, atol=0, rtol=0)


@exercise("09.2", "the attention mask of shifted windows", difficulty="hard", minutes=30)
def shifted_window_mask(student: Callable[[int, int, int, int], torch.Tensor]) -> None:
    """`student(height, width, window_size, shift)` -> (nW, M*M, M*M), bool (True = may attend) or
    float (0 = may attend, a large negative number = may not); compared with the reference."""
    from ..models.swin import shifted_window_mask as reference

    for h, w, m, s in [(8, 8, 4, 2), (12, 12, 4, 2), (14, 14, 7, 3), (6, 9, 3, 1), (8, 8, 4, 0)]:
        expected = reference(h, w, m, s) == 0  # (nW, N, N) may attend
        got = student(h, w, m, s)
        what = f"shifted_window_mask(height={h}, width={w}, window_size={m}, shift={s})"
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        expect_shape(what, got, tuple(expected.shape))
        allowed = got if got.dtype == torch.bool else got == 0
        if got.dtype != torch.bool:
            expect_true(bool((got[~allowed] <= -50).all()),
                        _("{what}: masked entries should be a large negative number (-100 or -inf) "
                          "so that softmax gives them ~0 weight").format(what=what))
        if torch.equal(allowed, ~expected):
            raise ExerciseError(_("{what} is inverted: tokens from the *same* region may attend").format(
                what=what))
        if s and bool(allowed.all()):
            raise ExerciseError(_("{what} allows every pair: after the roll, windows at the bottom "
                                  "and right edge hold pixels from opposite sides of the image, "
                                  "which must not attend to each other").format(what=what))
        wrong = (allowed != expected).nonzero()
        if len(wrong):
            win, i, j = wrong[0].tolist()
            if expected[win, i, j]:  # whole sentences, so that translations can put the word anywhere
                message = _("{what} is wrong at {wrong} of {total} entries; first in window {win}, "
                            "query token {i}, key token {j}: expected allowed")
            else:
                message = _("{what} is wrong at {wrong} of {total} entries; first in window {win}, "
                            "query token {i}, key token {j}: expected masked")
            raise ExerciseError(message.format(what=what, wrong=len(wrong), total=expected.numel(),
                                               win=win, i=i, j=j))
