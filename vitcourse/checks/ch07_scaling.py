"""Checks for chapter 07 (scaling): fitting a power law to error vs data, and attention's cost.

Each check builds its own inputs (sizes and curves the notebook never shows) and compares the
student's answer with the reference in `vitcourse.experiments.scaling_plots`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ._core import ExerciseError, exercise, expect_true
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


@exercise("07.2", "attention FLOPs for an image size and patch size", difficulty="easy", minutes=10)
def attention_flops(student_flops: Callable[[int, int, int], int]) -> None:
    """`student_flops(image_size, patch_size, dim)`: FLOPs of q·kᵀ plus weights·v for one image."""
    from ..experiments.scaling_plots import attention_flops as reference

    cases = [(224, 16, 768), (28, 7, 128), (28, 4, 128), (384, 16, 1024), (448, 14, 1280), (96, 32, 64)]
    for image_size, patch, dim in cases:
        n = (image_size // patch) ** 2
        expected = reference(n, dim)["scores"]
        got = student_flops(image_size, patch, dim)
        what = _("attention FLOPs(image_size={image_size}, patch_size={patch}, dim={dim})").format(
            image_size=image_size, patch=patch, dim=dim)
        if not isinstance(got, (int, float, np.integer, np.floating)):
            raise ExerciseError(_("{what} should return a number, got {got}").format(
                what=what, got=type(got).__name__))
        if got == expected:
            continue
        side = image_size // patch
        if got == 2 * 2 * side * side * dim:
            raise ExerciseError(_("{what}: expected {expected:,}, got {got:,}: that is linear in the "
                                  "tokens. N = {n} tokens attend to N tokens: N² pairs").format(
                what=what, expected=expected, got=got, n=n))
        if got == 2 * side * side * side * side * dim or got == expected // 2:
            raise ExerciseError(_("{what}: expected {expected:,}, got {got:,}: count both products, "
                                  "q·kᵀ (N x N scores) and the weighted sum of the values, 2 FLOPs "
                                  "per multiply-add each").format(what=what, expected=expected, got=got))
        if got == expected * 2:
            raise ExerciseError(_("{what}: expected {expected:,}, got {got:,}: count a multiply-add "
                                  "as 2 FLOPs, once").format(what=what, expected=expected, got=got))
        raise ExerciseError(_("{what}: expected {expected:,}, got {got:,}").format(
            what=what, expected=expected, got=got))
