"""Checks for chapter 02 (attention): scaled dot-product attention by hand, multi-head self-attention.

Each check builds fresh random inputs and compares with `vitcourse.layers.attention`'s reference.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn

from ._core import ExerciseError, exercise, expect_close, expect_true
from ..i18n import _


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _unpack(what: str, result: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        length = (_(" of length {length}").format(length=len(result))
                  if isinstance(result, (tuple, list)) else "")
        raise ExerciseError(_("{what} should return a pair (output, weights), got {got}{length}").format(
            what=what, got=type(result).__name__, length=length))
    return result[0], result[1]


@exercise("02.1", "scaled dot-product attention written out", difficulty="easy", minutes=10)
def attention(student_attention: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """`student_attention(q, k, v) -> (output, weights)` equals the reference for 3-D and 4-D inputs,
    including more keys than queries and a value width different from the key width."""
    from ..layers.attention import scaled_dot_product_attention as reference

    cases = [((2, 5, 8), (2, 5, 8), (2, 5, 8)),               # (B, N, d)
             ((2, 3, 4, 16), (2, 3, 6, 16), (2, 3, 6, 5)),    # (B, heads, N, d), 6 keys, d_v = 5
             ((1, 1, 7, 3), (1, 1, 7, 3), (1, 1, 7, 3))]
    for i, (qs, ks, vs) in enumerate(cases):
        q, k, v = _randn(*qs, seed=10 + i) * 3, _randn(*ks, seed=20 + i) * 3, _randn(*vs, seed=30 + i)
        out_ref, w_ref = reference(q, k, v)
        what = f"attention(q {tuple(qs)}, k {tuple(ks)}, v {tuple(vs)})"
        out, w = _unpack(what, student_attention(q.clone(), k.clone(), v.clone()))
        if isinstance(w, torch.Tensor) and w.shape == w_ref.shape and not torch.allclose(w, w_ref, atol=1e-5):
            d = qs[-1]
            unscaled = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
            over_queries = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-2)
            wrong_scale = torch.softmax(q @ k.transpose(-2, -1) / d, dim=-1)
            if torch.allclose(w, unscaled, atol=1e-5):
                raise ExerciseError(_("{what}: the weights are softmax(q kᵀ) without the scale. "
                                      "Divide the scores by sqrt(d), d = the last size of q.").format(
                    what=what))
            if torch.allclose(w, wrong_scale, atol=1e-5):
                raise ExerciseError(_("{what}: the scores are divided by d; divide by sqrt(d) "
                                      "instead.").format(what=what))
            if torch.allclose(w, over_queries, atol=1e-5):
                raise ExerciseError(_("{what}: the softmax runs over the queries (dim=-2). Each "
                                      "query's weights over the keys must sum to 1: softmax over the "
                                      "last axis.").format(what=what))
        expect_close(_("the weights of {what}").format(what=what), w, w_ref, atol=1e-5)
        expect_close(_("the output of {what}").format(what=what), out, out_ref, atol=1e-5)


@exercise("02.2", "multi-head self-attention from its two linear layers",
          difficulty="medium", minutes=20)
def multi_head_attention(student_mha: Callable[[torch.Tensor, nn.Linear, nn.Linear, int], torch.Tensor]) -> None:
    """`student_mha(x, qkv, proj, heads)` equals `vitcourse.layers.attention.MultiHeadSelfAttention` that
    owns the same `qkv` and `proj` layers, for fresh sizes and weights."""
    from ..layers.attention import MultiHeadSelfAttention

    for i, (b, n, dim, heads) in enumerate([(2, 5, 12, 3), (1, 9, 16, 4), (3, 4, 10, 1)]):
        torch.manual_seed(400 + i)
        msa = MultiHeadSelfAttention(dim, heads).eval()
        x = _randn(b, n, dim, seed=500 + i)
        with torch.no_grad():
            expected = msa(x)
            got = student_mha(x.clone(), msa.qkv, msa.proj, heads)
        what = f"multi_head_attention(x {(b, n, dim)}, heads={heads})"
        expect_true(isinstance(got, torch.Tensor),
                    _("{what} should return a tensor, got {got}").format(what=what, got=type(got).__name__))
        if heads > 1 and got.shape == expected.shape and not torch.allclose(got, expected, atol=1e-5):
            with torch.no_grad():
                one_head = MultiHeadSelfAttention(dim, 1).eval()
                one_head.load_state_dict(msa.state_dict())
                single = one_head(x)
            if torch.allclose(got, single, atol=1e-5):
                raise ExerciseError(_("{what}: the output equals single-head attention. Split q, k and "
                                      "v into {heads} heads of width {width} before the attention "
                                      "and scale by sqrt of the head width, not of the model width.").format(
                    what=what, heads=heads, width=dim // heads))
        expect_close(what, got, expected, atol=1e-5)
