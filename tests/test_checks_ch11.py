"""The exercise checks of chapter 11: each reference answer passes, each known-wrong answer fails
with the message that explains it."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from helpers import fails
from vitcourse.checks import ch11_mixers as ch11


def test_ids():
    assert ch11.pooling_mixer.exercise_id == "11.1"
    assert ch11.token_mixing_mlp.exercise_id == "11.2"
    assert ch11.token_batch_norm.exercise_id == "11.3"


# ---------------------------------------------------------------- 11.1
def good_pool(x, grid):
    h, w = grid
    g = rearrange(x, "b (h w) d -> b d h w", h=h, w=w)
    out = F.avg_pool2d(g, 3, stride=1, padding=1, count_include_pad=False) - g
    return rearrange(out, "b d h w -> b (h w) d")


def test_pooling_reference_passes(capsys):
    ch11.pooling_mixer(good_pool)
    assert "Exercise 11.1 passed" in capsys.readouterr().out


def test_pooling_without_minus_x_fails():
    fails(ch11.pooling_mixer, lambda x, grid: good_pool(x, grid) + x, "11.1", "subtracts x")


def test_pooling_counting_the_padding_fails():
    def padded(x, grid):
        h, w = grid
        g = rearrange(x, "b (h w) d -> b d h w", h=h, w=w)
        return rearrange(F.avg_pool2d(g, 3, 1, 1, count_include_pad=True) - g, "b d h w -> b (h w) d")
    fails(ch11.pooling_mixer, padded, "count_include_pad")


def test_pooling_with_a_plain_reshape_fails():
    def reshaped(x, grid):
        b, n, d = x.shape
        g = x.reshape(b, d, *grid)
        return (F.avg_pool2d(g, 3, 1, 1, count_include_pad=False) - g).reshape(b, n, d)
    fails(ch11.pooling_mixer, reshaped, "scrambles the tokens")


def test_pooling_returning_the_wrong_shape_fails():
    fails(ch11.pooling_mixer, lambda x, grid: x.transpose(1, 2), "wrong shape")


# ---------------------------------------------------------------- 11.2
def good_token_mlp(x, fc1, fc2):
    return fc2(F.gelu(fc1(x.transpose(1, 2)))).transpose(1, 2)


def test_token_mlp_reference_passes(capsys):
    ch11.token_mixing_mlp(good_token_mlp)
    assert "Exercise 11.2 passed" in capsys.readouterr().out


def test_token_mlp_without_transpose_fails_with_a_hint():
    fails(ch11.token_mixing_mlp, lambda x, fc1, fc2: fc2(F.gelu(fc1(x))), "raised RuntimeError", "which axis")


def test_token_mlp_not_transposed_back_fails():
    fails(ch11.token_mixing_mlp, lambda x, fc1, fc2: fc2(F.gelu(fc1(x.transpose(1, 2)))), "transpose back")


def test_token_mlp_without_activation_fails():
    fails(ch11.token_mixing_mlp, lambda x, fc1, fc2: fc2(fc1(x.transpose(1, 2))).transpose(1, 2), "no GELU")


def test_token_mlp_that_also_mixes_channels_fails():
    def leaky(x, fc1, fc2):
        out = good_token_mlp(x, fc1, fc2)
        return out + 0.1 * out.mean(-1, keepdim=True)  # a channel average leaks in
    fails(ch11.token_mixing_mlp, leaky, "11.2")


# ---------------------------------------------------------------- 11.3
def good_bn(x, eps):
    mean = x.mean((0, 1))
    var = x.var((0, 1), unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


def test_batch_norm_reference_passes(capsys):
    ch11.token_batch_norm(good_bn)
    assert "Exercise 11.3 passed" in capsys.readouterr().out


def test_layer_norm_instead_fails():
    fails(ch11.token_batch_norm, lambda x, eps: F.layer_norm(x, (x.shape[-1],), eps=eps), "that is LayerNorm")


def test_batch_norm_per_image_fails():
    def per_image(x, eps):
        return (x - x.mean(1, keepdim=True)) / (x.var(1, unbiased=False, keepdim=True) + eps).sqrt()
    fails(ch11.token_batch_norm, per_image, "include the batch")


def test_batch_norm_unbiased_variance_fails():
    fails(ch11.token_batch_norm, lambda x, eps: (x - x.mean((0, 1))) / (x.var((0, 1)) + eps).sqrt(), "biased")
