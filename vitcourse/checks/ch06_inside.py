"""Checks for chapter 06 (looking inside): position-embedding similarity, attention rollout, mean
attention distance.

Each check builds fresh random inputs and compares with `vitcourse.analysis`'s reference; the
messages name the usual mistakes (dot product instead of cosine, class token kept, rows divided by
the wrong sums, layers multiplied in the wrong order, distances in patches instead of pixels).
"""
from __future__ import annotations

from typing import Callable

import torch

from ._core import ExerciseError, exercise, expect_close, expect_shape, expect_true
from ..i18n import _


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _attention(layers: int, b: int, h: int, n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, n, generator=g).mul(2.5).softmax(-1) for _i in range(layers)]


def _same(a: object, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol)


@exercise("06.1", "cosine similarity of position embeddings", difficulty="easy", minutes=10)
def position_similarity(student: Callable[[torch.Tensor, tuple[int, int], int], torch.Tensor]) -> None:
    """`student(pos_embed (1, prefix + gh*gw, D), (gh, gw), num_prefix_tokens) -> (gh, gw, gh, gw)`."""
    from ..analysis import position_similarity as reference

    for i, (grid, prefix, dim) in enumerate([((4, 4), 1, 16), ((3, 5), 0, 8), ((2, 3), 1, 5)]):
        n = grid[0] * grid[1]
        pe = _randn(1, prefix + n, dim, seed=600 + i) * (1 + torch.arange(prefix + n).float()[None, :, None])
        expected = reference(pe, grid, prefix)
        what = f"position_similarity(pos_embed {tuple(pe.shape)}, grid={grid}, num_prefix_tokens={prefix})"
        got = student(pe.clone(), grid, prefix)
        expect_true(isinstance(got, torch.Tensor), _("{what} should return a tensor, got {got}").format(
            what=what, got=type(got).__name__))
        if prefix and got.numel() == (n + prefix) ** 2:
            raise ExerciseError(_("{what}: the result covers {tokens} tokens; leave out the class token "
                                  "(the first {prefix} row(s) of pos_embed): it has no place on the "
                                  "grid.").format(what=what, tokens=n + prefix, prefix=prefix))
        expect_shape(what, got, tuple(expected.shape))
        e = pe[0, prefix:]
        dot = (e @ e.T).reshape(expected.shape)
        if _same(got, dot, atol=1e-4):
            raise ExerciseError(_("{what}: these are dot products. Cosine similarity divides by both "
                                  "vectors' lengths: normalise each embedding to unit length "
                                  "first.").format(what=what))
        expect_close(what, got, expected, atol=1e-5)


@exercise("06.2", "attention rollout through the layers", difficulty="medium", minutes=20)
def rollout(student: Callable[[list[torch.Tensor], str], torch.Tensor]) -> None:
    """`student(attentions: list of (B, heads, N, N), head_fusion: "mean" | "max") -> (B, N, N)`:
    fuse the heads, add the identity, renormalise rows, multiply later layers on the left."""
    from ..analysis import rollout_matrix as reference

    cases = [(3, 2, 2, 5, "mean"), (1, 1, 3, 4, "max"), (4, 1, 2, 10, "max"), (2, 2, 4, 6, "mean")]
    for i, (layers, b, h, n, fusion) in enumerate(cases):
        atts = _attention(layers, b, h, n, seed=700 + i)
        expected = reference(atts, head_fusion=fusion)
        what = _("rollout({layers} layer(s) of shape {shape}, head_fusion={fusion!r})").format(
            layers=layers, shape=(b, h, n, n), fusion=fusion)
        got = student([a.clone() for a in atts], fusion)
        expect_true(isinstance(got, torch.Tensor), _("{what} should return a tensor, got {got}").format(
            what=what, got=type(got).__name__))
        expect_shape(what, got, tuple(expected.shape))
        if not _same(got, expected):
            eye = torch.eye(n)
            fused = [a.mean(1) if fusion == "mean" else a.amax(1) for a in atts]
            no_identity, wrong_sums, reversed_order = eye.expand(b, n, n), eye.expand(b, n, n), eye.expand(b, n, n)
            for a in fused:
                no_identity = (a / a.sum(-1, keepdim=True)) @ no_identity
                a = a + eye
                wrong_sums = (a / a.sum(-1)[:, None, :]) @ wrong_sums  # column j / row j's sum
                reversed_order = reversed_order @ (a / a.sum(-1, keepdim=True))
            if _same(got, no_identity):
                raise ExerciseError(_("{what}: the identity is missing. Add torch.eye(N) to each layer's "
                                      "attention before renormalising: the residual connection carries "
                                      "each token through the layer.").format(what=what))
            if _same(got, wrong_sums):
                raise ExerciseError(_("{what}: each column was divided by the sum of a row. Divide every "
                                      "row by its own sum: a / a.sum(dim=-1, keepdim=True). (With the mean "
                                      "over heads every row sums to 2 and the mistake hides; the maximum "
                                      "over heads shows it.)").format(what=what))
            if layers > 1 and _same(got, reversed_order):
                raise ExerciseError(_("{what}: the layers are multiplied in the wrong order. Later layers "
                                      "act on what earlier ones produced: result = a_layer @ "
                                      "result.").format(what=what))
            sums = got.sum(-1)
            if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
                raise ExerciseError(_("{what}: the rows of the rolled-out matrix should sum to 1, got sums "
                                      "from {low:.4g} to {high:.4g}.").format(
                    what=what, low=sums.min().item(), high=sums.max().item()))
        expect_close(what, got, expected, atol=1e-5)


@exercise("06.3", "mean attention distance of one attention map", difficulty="hard",
          minutes=25)
def mean_distance(student: Callable[[torch.Tensor, tuple[int, int], int], float]) -> None:
    """`student(attn (N, N) over patches, (gh, gw), patch_size) -> float`: the attention-weighted
    distance in pixels between query and key patch centres, averaged over the query patches."""
    from ..analysis import mean_attention_distance as reference

    cases = [((3, 3), 4, "self"), ((2, 5), 3, "uniform"), ((4, 4), 7, "random"), ((5, 5), 2, "random")]
    for i, (grid, p, kind) in enumerate(cases):
        n = grid[0] * grid[1]
        if kind == "self":
            attn = torch.eye(n)
        elif kind == "uniform":
            attn = torch.full((n, n), 1.0 / n)
        else:
            attn = (_randn(n, n, seed=800 + i) * 2).softmax(-1)
        expected = float(reference([attn[None, None]], grid, p)[0, 0])
        what = {  # one whole template per kind of attention map, so that translations can reorder
            "self": _("mean_distance(self attention over a {rows}x{cols} grid, patch_size={p})"),
            "uniform": _("mean_distance(uniform attention over a {rows}x{cols} grid, patch_size={p})"),
            "random": _("mean_distance(random attention over a {rows}x{cols} grid, patch_size={p})"),
        }[kind].format(rows=grid[0], cols=grid[1], p=p)
        got = student(attn.clone(), grid, p)
        try:
            got = float(got)
        except (TypeError, ValueError, RuntimeError):
            raise ExerciseError(_("{what} should return a number, got {got}").format(
                what=what, got=type(got).__name__)) from None
        if abs(got - expected) <= 1e-4 * max(1.0, abs(expected)):
            continue
        if kind == "self":
            raise ExerciseError(_("{what} = {got:.4g}: a patch that attends only to itself looks 0 pixels "
                                  "away.").format(what=what, got=got))
        if expected and abs(got * p - expected) <= 1e-4 * expected:
            raise ExerciseError(_("{what} = {got:.4g} is in patches; multiply by patch_size for pixels "
                                  "(expected {expected:.4g}).").format(what=what, got=got, expected=expected))
        raise ExerciseError(_("{what}: expected {expected:.6g} pixels, got {got:.6g}. Weight each key's "
                              "distance by the attention, sum over keys, then average over "
                              "queries.").format(what=what, expected=expected, got=got))
