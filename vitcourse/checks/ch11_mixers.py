"""Checks for chapter 11 (token mixers and norms): the pooling mixer, the token-mixing MLP and
BatchNorm over tokens.

Every check builds its own tokens (N != D, so a mix along the wrong axis cannot pass by chance)
and compares with `vitcourse.layers`' reference; the usual mistakes get their own message.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ._core import ExerciseError, call_student, exercise, expect_close, expect_shape
from ..i18n import _


@exercise("11.1", "PoolFormer's pooling token mixer", difficulty="medium", minutes=15)
def pooling_mixer(student: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]) -> None:
    """`student(x (B, N, D), (H, W))` -> AvgPool3x3(x) - x on the grid, as
    `vitcourse.layers.mixers.PoolingMixer`."""
    from ..layers.mixers import PoolingMixer

    g = torch.Generator().manual_seed(1101)
    for b, h, w, d in [(2, 4, 4, 6), (1, 3, 5, 2), (3, 7, 7, 5)]:
        x = torch.randn(b, h * w, d, generator=g)
        expected = PoolingMixer((h, w))(x)
        what = f"pooling_mixer(x {tuple(x.shape)}, grid=({h}, {w}))"
        got = call_student(what, student, x.clone(), (h, w))
        expect_shape(what, got, tuple(expected.shape))
        grid = rearrange(x, "b (h w) d -> b d h w", h=h, w=w)
        pooled = F.avg_pool2d(grid, 3, 1, 1, count_include_pad=False)
        as_tokens = lambda t: rearrange(t, "b d h w -> b (h w) d")  # noqa: E731
        if torch.allclose(got, as_tokens(pooled), atol=1e-5):
            raise ExerciseError(_("{what} returns the average itself; PoolFormer subtracts x "
                                  "(pool(x) - x), because the block adds x back in its residual").format(
                what=what))
        padded = as_tokens(F.avg_pool2d(grid, 3, 1, 1, count_include_pad=True) - grid)
        if torch.allclose(got, padded, atol=1e-5):
            raise ExerciseError(_("{what} counts the zero padding in the average "
                                  "(count_include_pad=True): a corner token is divided by 9, not 4").format(
                what=what))
        viewed = x.reshape(b, d, h, w)
        wrong_layout = (F.avg_pool2d(viewed, 3, 1, 1, count_include_pad=False) - viewed).reshape(b, h * w, d)
        if torch.allclose(got, wrong_layout, atol=1e-5):
            raise ExerciseError(_("{what}: a reshape of (B, N, D) to (B, D, H, W) scrambles the "
                                  "tokens; move the channel axis first (transpose or rearrange)").format(
                what=what))
        expect_close(what, got, expected)


@exercise("11.2", "MLP-Mixer's token-mixing MLP", difficulty="medium", minutes=15)
def token_mixing_mlp(student: Callable[[torch.Tensor, nn.Linear, nn.Linear], torch.Tensor]) -> None:
    """`student(x (B, N, D), fc1: Linear(N, hidden), fc2: Linear(hidden, N))` -> (B, N, D): the MLP
    (fc1, GELU, fc2) applied along the token axis of each channel, as `vitcourse.layers.mixers.TokenMLP`."""
    from ..layers.mixers import TokenMLP

    torch.manual_seed(1102)
    for b, n, d, hidden in [(2, 16, 6, 8), (1, 9, 12, 4)]:
        ref = TokenMLP((n, 1), hidden)
        x = torch.randn(b, n, d)
        expected = ref(x)
        what = f"token_mixing_mlp(x {tuple(x.shape)}, fc1 Linear({n}, {hidden}), fc2 Linear({hidden}, {n}))"
        got = call_student(what, student, x.clone(), ref.fc1, ref.fc2)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (b, d, n):
            raise ExerciseError(_("{what} returns (B, D, N): transpose back to (B, N, D) after the MLP").format(
                what=what))
        expect_shape(what, got, tuple(expected.shape))
        no_act = ref.fc2(ref.fc1(x.transpose(1, 2))).transpose(1, 2)
        if torch.allclose(got, no_act, atol=1e-5):
            raise ExerciseError(_("{what} has no GELU between fc1 and fc2: two Linear layers in a row "
                                  "are one linear map").format(what=what))
        expect_close(what, got, expected)
        # mixing along tokens: a change in token 0 must reach the others, a change in channel 0 must not
        bumped = x.clone()
        bumped[:, 0, 0] += 1.0
        delta = (call_student(what, student, bumped, ref.fc1, ref.fc2) - got).abs()
        if delta[:, :, 1:].max() > 1e-6:
            raise ExerciseError(_("{what} lets channels mix; the token MLP must treat each channel alone").format(
                what=what))


@exercise("11.3", "BatchNorm over (batch, tokens)", difficulty="easy", minutes=10)
def token_batch_norm(student: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """`student(x (B, N, D), eps)` -> (x - mean) / sqrt(var + eps), mean and (biased) variance of each
    channel over the batch and token axes, as `vitcourse.layers.norms.TokenBatchNorm` in training
    mode without its affine weights."""
    from ..layers.norms import TokenBatchNorm

    g = torch.Generator().manual_seed(1103)
    for b, n, d, eps in [(4, 9, 5, 1e-5), (2, 16, 3, 1e-3)]:
        x = 3 * torch.randn(b, n, d, generator=g) + torch.arange(d) * 2.0  # channels differ in mean
        ref = TokenBatchNorm(d, eps=eps, affine=False).train()
        expected = ref(x)
        what = f"token_batch_norm(x {tuple(x.shape)}, eps={eps})"
        got = call_student(what, student, x.clone(), eps)
        expect_shape(what, got, tuple(expected.shape))
        layer_norm = F.layer_norm(x, (d,), eps=eps)
        if torch.allclose(got, layer_norm, atol=1e-4):
            raise ExerciseError(_("{what} normalises each token over its channels: that is LayerNorm; "
                                  "BatchNorm averages each channel over the batch and the tokens").format(
                what=what))
        per_image = (x - x.mean(1, keepdim=True)) / (x.var(1, unbiased=False, keepdim=True) + eps).sqrt()
        if torch.allclose(got, per_image, atol=1e-4):
            raise ExerciseError(_("{what} averages over each image's tokens only; include the batch "
                                  "axis too (dims 0 and 1)").format(what=what))
        unbiased = (x - x.mean((0, 1))) / (x.var((0, 1), unbiased=True) + eps).sqrt()
        if torch.allclose(got, unbiased, atol=1e-6) and not torch.allclose(got, expected, atol=1e-6):
            raise ExerciseError(_("{what} uses the unbiased variance (divides by B·N - 1); "
                                  "BatchNorm normalises with the biased one (divide by B·N)").format(
                what=what))
        expect_close(what, got, expected, atol=1e-5, rtol=1e-4)
