"""Checks for chapter 12 (do ViTs see like CNNs?): linear CKA from two activation matrices, and the
patch-drop corruption from a mask over the patch grid.

Every check builds its own inputs (features with non-zero means, so a missing centring shows;
non-square images and grids, so a transposed grid cannot pass) and compares with the package's
reference: `vitcourse.analysis.cka.linear_cka` and `vitcourse.analysis.corruptions.patch_drop`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._core import ExerciseError, call_student, exercise, expect_close, expect_shape
from ..i18n import _


def _number(what: str, value: Any) -> float:
    """A Python float or a one-element tensor, as a float."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ExerciseError(_("{what} should return one number (a float), got {got}{shape}").format(
        what=what, got=type(value).__name__,
        shape=tuple(value.shape) if isinstance(value, torch.Tensor) else ''))


def _cka_of(x: torch.Tensor, y: torch.Tensor, centre: str = "columns", square: bool = True) -> float:
    """Linear CKA written out, with the usual mistakes as switches (centre: columns / rows / none)."""
    if centre == "columns":
        x, y = x - x.mean(0), y - y.mean(0)
    elif centre == "rows":
        x, y = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x)
    return float((cross ** 2 if square else cross) / (torch.linalg.matrix_norm(x.T @ x)
                                                       * torch.linalg.matrix_norm(y.T @ y)))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 + 1e-4 * abs(b)


@exercise("12.1", "linear CKA of two layers", difficulty="easy", minutes=10)
def linear_cka(student: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """`student(X (n, p1), Y (n, p2))` -> ||YᵀX||_F² / (||XᵀX||_F ||YᵀY||_F) on column-centred X
    and Y, as `vitcourse.analysis.cka.linear_cka`."""
    from ..analysis.cka import linear_cka as reference

    g = torch.Generator().manual_seed(1201)
    for n, p1, p2 in [(60, 8, 5), (40, 3, 12)]:
        x = torch.randn(n, p1, generator=g, dtype=torch.float64) + 3 * torch.arange(p1, dtype=torch.float64)
        mix = torch.randn(p1, p2, generator=g, dtype=torch.float64)
        y = x @ mix + torch.randn(n, p2, generator=g, dtype=torch.float64) + 5.0  # related to x, shifted
        what = f"linear_cka(X {tuple(x.shape)}, Y {tuple(y.shape)})"
        got = _number(what, call_student(what, student, x.clone(), y.clone()))
        expected = float(reference(x, y))
        if _close(got, _cka_of(x, y, centre="none")) and not _close(got, expected):
            raise ExerciseError(_("{what} = {got:.4f} is CKA without centring: subtract each column's "
                                  "mean (over the n examples) from X and Y first; expected {expected:.4f}").format(
                what=what, got=got, expected=expected))
        if _close(got, _cka_of(x, y, centre="rows")) and not _close(got, expected):
            raise ExerciseError(_("{what} = {got:.4f} centres each row (example); centre each COLUMN "
                                  "(feature) over the n examples: X - X.mean(dim=0); "
                                  "expected {expected:.4f}").format(what=what, got=got, expected=expected))
        if _close(got, _cka_of(x, y, square=False)) and not _close(got, expected):
            raise ExerciseError(_("{what} = {got:.4f} uses ||YᵀX||_F without squaring it: the numerator is "
                                  "HSIC(K, L) = ||YᵀX||_F², so CKA(X, X) = 1; expected {expected:.4f}").format(
                what=what, got=got, expected=expected))
        if not _close(got, expected):
            raise ExerciseError(_("{what} is wrong: expected {expected:.6f}, got {got:.6f}").format(
                what=what, expected=expected, got=got))
    # the defining invariances: 1 with itself, unchanged by a rotation and a scaling of one side
    x = torch.randn(30, 6, generator=g, dtype=torch.float64)
    q, _r = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    got = _number("linear_cka(X, 2.5 X Q)", call_student("linear_cka(X, 2.5 X Q)", student, x, 2.5 * x @ q))
    if not _close(got, 1.0):
        raise ExerciseError(_("linear_cka(X, 2.5 X Q) with Q a rotation should be 1 (CKA ignores rotations and "
                              "scale), got {got:.6f}").format(got=got))


def _drop_pixels(images: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """`images` with the pixels where `pixels` (B, H, W) is True set to 0."""
    return images.masked_fill(pixels, 0)


@exercise("12.2", "patch drop from a mask over the patch grid", difficulty="easy", minutes=10)
def patch_drop(student: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> None:
    """`student(images uint8 (B, H, W), mask bool (B, gh, gw), patch_size)` -> uint8 (B, H, W) with
    the pixels of every patch where `mask` is True set to 0, as `vitcourse.analysis.corruptions.patch_drop`."""
    from ..analysis.corruptions import patch_drop as package_drop
    from ..analysis.corruptions import patch_drop_mask

    g = torch.Generator().manual_seed(1202)
    for b, h, w, p, fraction in [(3, 28, 28, 7, 0.25), (2, 12, 20, 4, 0.4), (2, 28, 28, 4, 0.5)]:
        images = torch.randint(1, 256, (b, h, w), generator=g, dtype=torch.uint8)  # no pixel is 0 before
        seed = int(torch.randint(0, 2 ** 31, (1,), generator=g))
        mask = patch_drop_mask(b, (h // p, w // p), fraction, "random", torch.Generator().manual_seed(seed))
        # the package's own corruption draws the same mask from the same seed
        expected = package_drop(images, fraction, p, "random", torch.Generator().manual_seed(seed))
        dropped = expected == 0  # (B, H, W): the pixels the mask drops (no pixel was 0 before)
        what = f"patch_drop(images {tuple(images.shape)}, mask {tuple(mask.shape)}, patch_size={p})"
        original = images.clone()
        got = call_student(what, student, images, mask.clone(), p)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        expect_shape(what, got, (b, h, w))
        if not torch.equal(images, original):
            raise ExerciseError(_("{what} changed the input images in place; return a new tensor "
                                  "(masked_fill, not masked_fill_), the caller still needs the clean images").format(
                what=what))
        if got.dtype != torch.uint8:
            raise ExerciseError(_("{what} returns {dtype}; keep the images uint8 (0..255), as every "
                                  "corruption does, so they go through the model's normalisation like clean "
                                  "ones").format(what=what, dtype=got.dtype))
        if torch.equal(got, _drop_pixels(images, ~dropped)):
            raise ExerciseError(_("{what} drops the complement: it blacks out the patches where the mask is "
                                  "False and keeps those where it is True (True = dropped)").format(what=what))
        # the usual wrong reshape: (B, gh, gw, p, p) laid straight into (B, H, W) without moving axes
        blocks = mask[:, :, :, None, None].expand(b, h // p, w // p, p, p).reshape(b, h, w)
        if torch.equal(got, _drop_pixels(images, blocks)):
            raise ExerciseError(_("{what} blacks out horizontal stripes, not squares: the mask was expanded to "
                                  "(B, gh, gw, p, p) and reshaped to (B, H, W) without moving the axes, so "
                                  "each patch's p*p pixels land in consecutive rows instead of a p x p square; "
                                  "repeat each mask entry along rows and columns (repeat_interleave on axes 1 "
                                  "and 2, or einops 'b gh gw -> b (gh p1) (gw p2)')").format(what=what))
        if torch.equal(got, _drop_pixels(images, mask.repeat(1, p, p))):
            raise ExerciseError(_("{what} tiles the whole mask p x p times (Tensor.repeat) instead of "
                                  "repeating each entry p times along rows and columns (repeat_interleave)").format(
                what=what))
        expect_close(what, got.to(torch.int64), expected.to(torch.int64), atol=0, rtol=0)
