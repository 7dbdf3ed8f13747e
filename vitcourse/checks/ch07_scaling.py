"""Checks for chapter 07 (scaling): fitting a power law to error vs data, and the stratified
subsets the data-size curve is trained on.

Each check builds its own inputs (sizes, curves and labels the notebook never shows) and compares
the student's answer with the package's reference (`vitcourse.experiments.scaling_plots`,
`vitcourse.data`).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ._core import ExerciseError, call_student, exercise, expect_true
from ..i18n import _


@exercise("07.1", "fit a power law error = a * n^slope to a scaling curve", difficulty="medium", minutes=15)
def power_law(student_fit: Callable[..., tuple[float, float]]) -> None:
    """`student_fit(sizes, errors) -> (slope, a)` equals the least-squares fit in log-log space."""
    from ..experiments.scaling_plots import fit_power_law as reference

    rng = np.random.default_rng(707)
    cases = [
        (np.array([500, 2_000, 8_000, 32_000]), 0.9, -0.35, 0.0),
        (np.array([1_000, 3_000, 10_000, 30_000, 100_000]), 2.5, -0.5, 0.05),
        (np.array([64.0, 256.0, 1024.0]), 0.4, -0.1, 0.02),
    ]
    for sizes, a, slope, noise in cases:
        errors = a * sizes ** slope * np.exp(noise * rng.standard_normal(len(sizes)))
        got = student_fit(sizes.copy(), errors.copy())
        what = f"fit(sizes={sizes.tolist()}, errors=...)"
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise ExerciseError(_("{what} should return a pair (slope, a), got {got!r}").format(
                what=what, got=got))
        exp_slope, exp_a = reference(sizes, errors)
        g_slope, g_a = float(got[0]), float(got[1])
        if abs(g_slope - exp_slope) > 1e-6 and abs(g_slope - 1 / exp_slope) < 1e-6:
            raise ExerciseError(_("{what}: the slope is inverted: fit log(error) against log(n), "
                                  "not the other way round").format(what=what))
        if abs(g_slope - exp_slope) > 1e-6:
            raise ExerciseError(_("{what}: slope expected {expected:.4f}, got {got:.4f}. Fit a "
                                  "straight line to (log n, log error): both axes in logs").format(
                what=what, expected=exp_slope, got=g_slope))
        if abs(g_a - exp_a) > 1e-6 * abs(exp_a) and abs(g_a - np.log(exp_a)) < 1e-6:
            raise ExerciseError(_("{what}: a is the intercept in log space; return exp(intercept)").format(
                what=what))
        expect_true(abs(g_a - exp_a) <= 1e-6 * abs(exp_a),
                    _("{what}: a expected {expected:.5g}, got {got:.5g}").format(
                        what=what, expected=exp_a, got=g_a))


@exercise("07.2", "a stratified subset: n indices, equal counts per class, set by a seed",
          difficulty="easy", minutes=15)
def stratified_subset(student_fn: Callable[[torch.Tensor, int, int], Any]) -> None:
    """`student_fn(labels, n, seed)` returns n distinct indices into `labels` with n / classes of
    each class (the counts of the package's `vitcourse.data.stratified_subset`), the same
    indices for the same seed and others for another seed."""
    from ..data import stratified_subset as reference

    for i, (sizes, n, seed) in enumerate(_SUBSET_CASES):
        g = torch.Generator().manual_seed(770 + i)
        labels = torch.cat([torch.full((size,), c, dtype=torch.int64) for c, size in enumerate(sizes)])
        labels = labels[torch.randperm(len(labels), generator=g)]  # classes mixed, unequal sizes
        what = _("stratified_indices(labels of {total} images in {classes} classes, n={n}, seed={seed})").format(
            total=len(labels), classes=len(sizes), n=n, seed=seed)
        got = _indices(what, call_student(what, student_fn, labels.clone(), n, seed), len(labels), n)
        if len(torch.unique(got)) != n:
            raise ExerciseError(_("{what}: {repeats} indices are repeated; a subset takes each image at "
                                  "most once: draw without replacement (torch.randperm, then the first "
                                  "ones)").format(what=what, repeats=n - len(torch.unique(got))))
        # the package's subset, as indices: its "images" are the positions 0, 1, 2, ...
        expected_idx = reference(torch.arange(len(labels)), labels, n, seed=seed)[0]
        expected = torch.bincount(labels[expected_idx], minlength=len(sizes)).tolist()
        counts = torch.bincount(labels[got], minlength=len(sizes)).tolist()
        if counts != expected:
            raise ExerciseError(_("{what}: the classes are not equally represented: counts per class "
                                  "{counts}, expected {expected}; take n / classes images of each class"
                                  ).format(what=what, counts=counts, expected=expected))
        again = _indices(what, call_student(what, student_fn, labels.clone(), n, seed), len(labels), n)
        if not torch.equal(got.sort().values, again.sort().values):
            raise ExerciseError(_("{what}: two calls with the same seed gave different subsets; draw "
                                  "with a generator seeded by `seed` (torch.Generator().manual_seed(seed)), "
                                  "not the global random state").format(what=what))
        other = _indices(what, call_student(what, student_fn, labels.clone(), n, seed + 1), len(labels), n)
        if torch.equal(got.sort().values, other.sort().values):
            raise ExerciseError(_("{what}: seeds {seed} and {other} gave the same subset; the seed must "
                                  "choose which images of each class are taken").format(
                what=what, seed=seed, other=seed + 1))


# (images per class, n, seed): unequal classes, so a subset drawn without regard to the labels has
# unequal counts; n a multiple of the number of classes, and well below the smallest class.
_SUBSET_CASES = [
    ((60, 80, 100, 120, 140, 160, 180, 200, 220, 240), 100, 0),
    ((50, 20, 200), 30, 3),
    ((600,) * 10, 1_000, 11),
]


def _indices(what: str, got: Any, size: int, n: int) -> torch.Tensor:
    """The student's answer as a 1-D int64 tensor of `n` positions in range, or an ExerciseError."""
    try:
        t = torch.as_tensor(np.asarray(got.cpu() if isinstance(got, torch.Tensor) else got))
    except Exception:
        raise ExerciseError(_("{what} should return indices (a tensor, array or list of ints), got "
                              "{got}").format(what=what, got=type(got).__name__)) from None
    if t.dtype == torch.bool:
        raise ExerciseError(_("{what} returned a mask of {shape}; return the indices of the chosen "
                              "images (torch.nonzero or torch.where turns a mask into them)").format(
            what=what, shape=tuple(t.shape)))
    if t.is_floating_point() or t.is_complex() or t.dim() != 1:
        raise ExerciseError(_("{what} should return a 1-D sequence of integer indices, got dtype {dtype} "
                              "and shape {shape}").format(what=what, dtype=t.dtype, shape=tuple(t.shape)))
    if len(t) != n:
        raise ExerciseError(_("{what} returned {got} indices, expected n = {n}").format(
            what=what, got=len(t), n=n))
    if len(t) and (t.min() < 0 or t.max() >= size):
        raise ExerciseError(_("{what}: indices must lie in 0..{last}, got {low}..{high}").format(
            what=what, last=size - 1, low=int(t.min()), high=int(t.max())))
    return t.to(torch.int64)
