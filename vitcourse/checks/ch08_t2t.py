"""Checks for chapter 08 (Tokens-to-Token): the soft split written by hand in the paper's notation
(k kernel, s overlap, p padding: the step between windows is k - s), and the T2T module's forward
assembled from its parts.

Every check builds its own sizes, images and modules and compares with `vitcourse.models.t2t`.
"""
from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange

from ._core import ExerciseError, call_student, exercise, expect_close, expect_shape
from ..i18n import _


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@exercise("08.1", "the soft split by hand: overlapping k x k windows as tokens", difficulty="medium",
          minutes=20)
def soft_split(student: Callable[[torch.Tensor, int, int, int], torch.Tensor]) -> None:
    """`student(images, k, s, p)` with s the *overlap* (the paper's notation) equals
    `vitcourse.models.t2t.soft_split(images, k, stride=k - s, padding=p)` on fresh images."""
    from ..models.t2t import soft_split as reference
    from ..models.t2t import soft_split_length

    cases = [  # (B, C, H, W, k, s, p); the last one has no overlap (s = 0): a hard split
        (2, 1, 12, 12, 3, 1, 1), (1, 3, 9, 7, 3, 1, 0), (2, 2, 14, 14, 7, 3, 2), (1, 1, 28, 28, 7, 5, 3),
        (1, 2, 8, 8, 4, 0, 0)]
    for i, (b, c, h, w, k, s, p) in enumerate(cases):
        x = _randn(b, c, h, w, seed=808 + i)
        expected = reference(x, k, k - s, p)  # (B, L, C*k*k)
        what = _("soft_split(images {shape}, k={k}, s={s}, p={p})").format(shape=(b, c, h, w), k=k, s=s, p=p)
        got = call_student(what, student, x.clone(), k, s, p)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        n_tokens, width = expected.shape[1:]
        if tuple(got.shape) == (b, width, n_tokens) and n_tokens != width:
            raise ExerciseError(_("{what} has shape {shape}: tokens go along dim 1, each window's "
                                  "C*k*k values along dim 2, i.e. (B, L, C*k*k)").format(
                what=what, shape=tuple(got.shape)))
        if got.ndim == 3 and got.shape[1] != n_tokens:
            if s and got.shape[1] == soft_split_length(h, k, s, p) * soft_split_length(w, k, s, p):
                raise ExerciseError(_("{what} made {got} windows, as many as a step of s={s} gives; in "
                                      "the paper's notation s is the overlap of neighbouring windows, "
                                      "so the step from one window to the next is k - s = {step}").format(
                    what=what, got=got.shape[1], s=s, step=k - s))
            if p and got.shape[1] == soft_split_length(h, k, k - s, 0) * soft_split_length(w, k, k - s, 0):
                raise ExerciseError(_("{what} made {got} windows, as many as without padding: pad the "
                                      "image with p={p} zeros on every side first (F.pad)").format(
                    what=what, got=got.shape[1], p=p))
        expect_shape(what, got, tuple(expected.shape))
        if not torch.allclose(got, expected, atol=1e-6):
            lh, lw = soft_split_length(h, k, k - s, p), soft_split_length(w, k, k - s, p)
            channel_last = rearrange(expected, "b l (c kk) -> b l (kk c)", c=c)
            column_major = rearrange(expected, "b (lh lw) d -> b (lw lh) d", lh=lh, lw=lw)
            if c > 1 and torch.allclose(got, channel_last, atol=1e-6):
                raise ExerciseError(_("{what}: each window is flattened channel-last; flatten it "
                                      "channel-first, (C, k, k) -> C*k*k, as F.unfold and the next "
                                      "layer expect").format(what=what))
            if lh > 1 and lw > 1 and torch.allclose(got, column_major, atol=1e-6):
                raise ExerciseError(_("{what}: the windows come out column by column; take them row by "
                                      "row (left to right, then top to bottom)").format(what=what))
        expect_close(what, got, expected, atol=1e-6, rtol=0)


@exercise("08.2", "the T2T module's forward: soft split, token layer and reshape, repeated",
          difficulty="medium", minutes=20)
def t2t_module(student: Callable[..., torch.Tensor]) -> None:
    """`student(module, images)` equals `module(images)` for fresh `vitcourse.models.t2t.T2TModule`s."""
    from ..models.t2t import T2TModule, soft_split as split

    cases = [  # (B, C, size, token_dim, D, kernels, strides, paddings)
        (2, 1, 28, 8, 16, (7, 3, 3), (2, 2, 2), (3, 1, 1)),  # the chapter's small model, narrower
        (1, 3, 32, 6, 10, (7, 3, 3), (4, 2, 2), (2, 1, 1)),  # the paper's splits, on a 32 image
        (2, 2, 16, 5, 12, (5, 3), (2, 2), (2, 1))]           # two splits
    for i, (b, c, size, token_dim, dim, kernels, strides, paddings) in enumerate(cases):
        with torch.random.fork_rng():  # leave the notebook's random state alone
            torch.manual_seed(880 + i)
            module = T2TModule(size, c, token_dim, dim, kernels, strides, paddings,
                               tokens_type="transformer").eval()
        x = _randn(b, c, size, size, seed=890 + i)
        with torch.no_grad():
            expected = module(x)  # (B, N, D)
            plain = x  # the same forward with a plain reshape in place of the re-structurisation
            for (k, st, p), layer, side in zip(module.splits, module.token_layers, module.sizes[1:]):
                tokens = layer(split(plain, k, st, p))  # (B, side*side, token_dim)
                plain = tokens.reshape(b, -1, side, side)  # wrong: mixes tokens and channels
            k, st, p = module.splits[-1]
            plain = module.project(split(plain, k, st, p))
            unprojected_width = token_dim * k * k

        def refuse(*args: object, **kwargs: object) -> torch.Tensor:
            raise ExerciseError(_("t2t_forward called module(images) (or module.forward), the answer "
                                  "it is compared with: build the forward from the module's parts"))

        module.forward = refuse
        what = _("t2t_forward(T2TModule(image_size={size}, kernels={kernels}, strides={strides}), "
                 "images {shape})").format(size=size, kernels=kernels, strides=strides, shape=(b, c, size, size))
        with torch.no_grad():
            got = call_student(what, student, module, x.clone())
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        if got.shape == expected.shape[:2] + (unprojected_width,) and unprojected_width != dim:
            raise ExerciseError(_("{what} has shape {shape}: the tokens of the last soft split are "
                                  "C*k*k = {width} wide; module.project maps them to the backbone's "
                                  "width D = {dim}").format(what=what, shape=tuple(got.shape),
                                                            width=unprojected_width, dim=dim))
        expect_shape(what, got, tuple(expected.shape))
        if not torch.allclose(got, expected, atol=1e-5) and torch.allclose(got, plain, atol=1e-5):
            raise ExerciseError(_("{what}: the tokens (B, L, C) are reshaped straight to (B, C, h, w), "
                                  "which mixes tokens and channels. Move the channel axis first: "
                                  "tokens.transpose(1, 2).reshape(B, C, h, w)").format(what=what))
        expect_close(what, got, expected, atol=1e-5)
