"""Checks for chapter 03 (the encoder block): LayerNorm by hand, the pre-norm block, the class token.

Each check builds fresh random inputs and compares with PyTorch or `vitcourse.layers.blocks`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ._core import ExerciseError, exercise, expect_close, expect_true
from ..i18n import _


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@exercise("03.1", "layer normalisation written out", difficulty="easy", minutes=10)
def layer_norm(student_layer_norm: Callable[..., torch.Tensor]) -> None:
    """`student_layer_norm(x, weight, bias, eps)` equals `F.layer_norm` over the last axis."""
    for i, shape in enumerate([(2, 5, 8), (3, 6), (2, 3, 4, 10)]):
        d = shape[-1]
        x = _randn(*shape, seed=40 + i) * 4 + 2
        weight, bias = _randn(d, seed=50 + i), _randn(d, seed=60 + i)
        eps = 1e-6 if i % 2 == 0 else 1e-5
        expected = F.layer_norm(x, (d,), weight, bias, eps)
        what = _("layer_norm(x of shape {shape}, eps={eps})").format(shape=shape, eps=eps)
        got = student_layer_norm(x.clone(), weight, bias, eps)
        expect_true(isinstance(got, torch.Tensor), _("{what} should return a tensor, got {got}").format(
            what=what, got=type(got).__name__))
        if got.shape == expected.shape and not torch.allclose(got, expected, atol=1e-4):
            dims = tuple(range(x.dim() - 1))
            batch_norm = (x - x.mean(dims, keepdim=True)) / torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
            unbiased = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=True, keepdim=True) + eps)
            if torch.allclose(got, batch_norm * weight + bias, atol=1e-4):
                raise ExerciseError(_("{what}: the statistics are taken over the batch (that is "
                                      "BatchNorm). LayerNorm normalises each token over its own "
                                      "features: mean and variance over the last axis.").format(what=what))
            if torch.allclose(got, unbiased * weight + bias, atol=1e-4):
                raise ExerciseError(_("{what}: the variance is the unbiased one (divided by d - 1). "
                                      "LayerNorm divides by d: use var(..., unbiased=False).").format(
                    what=what))
            plain = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
            if torch.allclose(got, plain, atol=1e-4):
                raise ExerciseError(_("{what}: the result is normalised but not scaled and shifted: "
                                      "multiply by weight and add bias at the end.").format(what=what))
        expect_close(what, got, expected, atol=1e-4)


@exercise("03.2", "the pre-norm encoder block's forward pass", difficulty="easy", minutes=10)
def encoder_block(student_block_forward: Callable[..., torch.Tensor]) -> None:
    """`student_block_forward(block, x)` equals `block(x)` for a fresh `vitcourse.layers.blocks.EncoderBlock`."""
    from ..layers.blocks import EncoderBlock

    for i, (b, n, dim, heads, mlp) in enumerate([(2, 5, 16, 4, 32), (1, 9, 12, 3, 20)]):
        torch.manual_seed(600 + i)
        block = EncoderBlock(dim, heads, mlp).eval()
        # Non-trivial norm parameters, so forgetting a norm changes the result.
        with torch.no_grad():
            for norm in (block.norm1, block.norm2):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0, 0.3)
        x = _randn(b, n, dim, seed=700 + i) * 2
        with torch.no_grad():
            expected = block(x)
            got = student_block_forward(block, x.clone())
            post_norm = block.norm1(x + block.attn(x))
            post_norm = block.norm2(post_norm + block.mlp(post_norm))
            no_residual = block.mlp(block.norm2(block.attn(block.norm1(x))))
        what = f"block_forward(EncoderBlock({dim}, {heads}, {mlp}), x {(b, n, dim)})"
        expect_true(isinstance(got, torch.Tensor), _("{what} should return a tensor, got {got}").format(
            what=what, got=type(got).__name__))
        if got.shape == expected.shape and not torch.allclose(got, expected, atol=1e-5):
            if torch.allclose(got, post_norm, atol=1e-5):
                raise ExerciseError(_("{what}: this is the post-norm block of the original "
                                      "Transformer (norm after the residual sum). ViT normalises first: "
                                      "x = x + attn(norm1(x)); x = x + mlp(norm2(x)).").format(what=what))
            if torch.allclose(got, no_residual, atol=1e-5):
                raise ExerciseError(_("{what}: the residual connections are missing: add the input "
                                      "of each sub-layer to its output.").format(what=what))
        expect_close(what, got, expected, atol=1e-5)


@exercise("03.3", "prepend the class token and add the position embeddings",
          difficulty="easy", minutes=10)
def add_class_token(student_fn: Callable[..., torch.Tensor]) -> None:
    """`student_fn(patch_tokens (B, N, D), cls_token (1, 1, D), pos_embed (1, N+1, D)) -> (B, N+1, D)`
    with the class token first and the position embeddings added to every token."""
    for i, (b, n, d) in enumerate([(2, 4, 6), (3, 9, 5), (1, 1, 3)]):
        tokens = _randn(b, n, d, seed=800 + i)
        cls = _randn(1, 1, d, seed=810 + i)
        pos = _randn(1, n + 1, d, seed=820 + i)
        expected = torch.cat([cls.expand(b, -1, -1), tokens], dim=1) + pos
        what = _("add_class_token(tokens {tokens}, cls_token (1, 1, {d}), pos_embed (1, {n1}, {d}))").format(
            tokens=(b, n, d), d=d, n1=n + 1)
        got = student_fn(tokens.clone(), cls.clone(), pos.clone())
        expect_true(isinstance(got, torch.Tensor), _("{what} should return a tensor, got {got}").format(
            what=what, got=type(got).__name__))
        if got.shape == expected.shape and not torch.allclose(got, expected, atol=1e-6):
            at_end = torch.cat([tokens, cls.expand(b, -1, -1)], dim=1) + pos
            no_pos = torch.cat([cls.expand(b, -1, -1), tokens], dim=1)
            if torch.allclose(got, at_end, atol=1e-6):
                raise ExerciseError(_("{what}: the class token is at the end; it goes first (index 0), "
                                      "where the head reads it.").format(what=what))
            if torch.allclose(got, no_pos, atol=1e-6):
                raise ExerciseError(_("{what}: the position embeddings are not added.").format(what=what))
        expect_close(what, got, expected, atol=1e-6)
