"""Checks for chapter 10 (comparisons): a ViT's MACs from its shape, and the accuracy-vs-cost frontier.

Every check builds its own configurations and rows and compares with a reference computed here
(MACs counted by `vitcourse.flops` on a real model).
"""
from __future__ import annotations

from typing import Callable

from ._core import ExerciseError, exercise, expect_equal
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


@exercise("10.2", "the models on the accuracy-vs-cost frontier", difficulty="easy", minutes=15)
def pareto_front(student: Callable[[list[tuple[str, float, float]]], list[str]]) -> None:
    """`student(rows)` with rows (name, cost, accuracy) returns the names that no other row beats
    on both (lower-or-equal cost and higher-or-equal accuracy, strictly better in one), in input order."""
    from ..experiments.compare import pareto_front as reference

    cases = [
        [("a", 1.0, 0.80), ("b", 2.0, 0.85), ("c", 3.0, 0.84), ("d", 0.5, 0.70)],
        [("vit", 13.1, 0.89), ("t2t", 19.2, 0.90), ("swin", 66.8, 0.905), ("cnn", 22.1, 0.91)],
        [("x", 1.0, 0.5), ("y", 1.0, 0.6), ("z", 2.0, 0.6)],
        [("p", 5.0, 0.9), ("q", 5.0, 0.9)],
    ]
    for rows in cases:
        expected = reference(rows)
        got = student([tuple(r) for r in rows])
        what = f"pareto_front({rows})"
        if got is None or isinstance(got, str):
            raise ExerciseError(_("{what} should return a list of names, got {got!r}").format(
                what=what, got=got))
        got = list(got)
        if set(got) == set(expected) and got != expected:
            raise ExerciseError(_("{what}: right names, wrong order; keep the input order").format(
                what=what))
        if set(got) > set(expected):
            extra = sorted(set(got) - set(expected))
            raise ExerciseError(_("{what} includes {extra}, but another model is at least as cheap "
                                  "and at least as accurate (and better in one of the two)").format(
                what=what, extra=extra))
        expect_equal(what, got, expected)
