"""Checks for chapter 13 (a Vision Transformer for small data): CCT's sequence pooling
and the image shifts of shifted patch tokenization.

Every check builds its own inputs (N != D, tokens with a non-zero mean, so mean pooling and a
softmax over the wrong axis cannot pass by chance; non-square images with no zero pixel, so a
transposed shift and a wrapping roll show) and compares with the package's reference:
`vitcourse.layers.sequence_pool` and `vitcourse.layers.spt.shifted_images`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ._core import ExerciseError, call_student, exercise, expect_close, expect_shape
from ..i18n import _


def _tensor(what: str, got: Any) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(_("{what} should return a tensor, got {got}").format(
            what=what, got=type(got).__name__))
    return got


def _same(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return tuple(a.shape) == tuple(b.shape) and torch.allclose(a.double(), b.double(), atol=atol, rtol=1e-4)


@exercise("13.1", "CCT's sequence pooling", difficulty="easy", minutes=10)
def seq_pool(student: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """`student(x (B, N, D), weight (1, D), bias (1,))` -> (B, D): the tokens averaged with weights
    softmax over the N tokens of the scores x·wᵀ + b, as `vitcourse.layers.sequence_pool`."""
    from ..layers.sequence_pool import sequence_pool

    g = torch.Generator().manual_seed(1301)
    for b, n, d in [(3, 7, 5), (2, 49, 8), (4, 3, 11)]:
        # tokens with a different mean per channel, scores spread wide enough that the weights
        # are far from uniform (so mean pooling cannot pass)
        x = torch.randn(b, n, d, generator=g) + torch.linspace(-2.0, 3.0, d)
        weight = 1.5 * torch.randn(1, d, generator=g)
        bias = torch.tensor([0.7])
        what = f"seq_pool(x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias {tuple(bias.shape)})"
        original = x.clone()
        got = _tensor(what, call_student(what, student, x, weight.clone(), bias.clone()))
        if not torch.equal(x, original):
            raise ExerciseError(_("{what} changed the tokens x in place; compute a new tensor, the "
                                  "encoder's output is still needed").format(what=what))
        scores = x @ weight.T + bias  # (B, N, 1)
        expected = sequence_pool(x, scores)  # (B, D)
        if tuple(got.shape) == (b, 1, d):
            raise ExerciseError(_("{what} returns (B, 1, D): sum over the token axis without keepdim "
                                  "(or squeeze it), the pooled features are one vector (B, D) per image").format(
                what=what))
        expect_shape(what, got, (b, d))
        if _same(got, x.sum(1)):
            raise ExerciseError(_("{what} returns the plain sum of the tokens: the softmax ran over an axis "
                                  "of size 1 (the scores are (B, N, 1), so dim=-1 is not the token axis); "
                                  "take the softmax over the N tokens, dim=1").format(what=what))
        if _same(got, x.mean(1)):
            raise ExerciseError(_("{what} returns the mean of the tokens: that is mean pooling (every token "
                                  "weighted 1/N); sequence pooling weights each token by softmax over the "
                                  "tokens of its score x·wᵀ + b").format(what=what))
        gates = torch.softmax(x * weight + bias, dim=-1)  # (B, N, D): a softmax over the channels
        if _same(got, (gates * x).sum(1)) or _same(got, torch.softmax(x, dim=-1).mul(x).sum(1)):
            raise ExerciseError(_("{what} takes the softmax over the D channels; SeqPool gives each TOKEN "
                                  "one score (x·wᵀ + b, shape (B, N, 1)) and normalises those over the N "
                                  "tokens").format(what=what))
        over_batch = (torch.softmax(scores, dim=0) * x).sum(1)
        if _same(got, over_batch):
            raise ExerciseError(_("{what} takes the softmax over the batch (dim=0): each image's weights must "
                                  "sum to 1 over its own N tokens (dim=1)").format(what=what))
        if _same(got, expected / n):
            raise ExerciseError(_("{what} is the right average divided by N again: the softmax weights already "
                                  "sum to 1, so sum the weighted tokens instead of taking their mean").format(
                what=what))
        if _same(got, expected + bias):
            raise ExerciseError(_("{what} adds the bias to the pooled vector; the bias belongs to the scores, "
                                  "x·wᵀ + b, before the softmax").format(what=what))
        expect_close(what, got, expected)
    # each image is pooled on its own: changing one image must not move another's output
    x = torch.randn(3, 5, 4, generator=g)
    weight, bias = torch.randn(1, 4, generator=g), torch.tensor([-0.3])
    what = _("seq_pool on a batch of 3 images")
    first = _tensor(what, call_student(what, student, x.clone(), weight, bias))
    bumped = x.clone()
    bumped[0] += 5.0
    second = _tensor(what, call_student(what, student, bumped, weight, bias))
    if not torch.allclose(first[1:], second[1:], atol=1e-5):
        raise ExerciseError(_("{what}: changing image 0 changed the output of images 1 and 2; every image's "
                              "weights come from its own tokens (softmax over dim=1, not over the batch)").format(
            what=what))


def _shifts(x: torch.Tensor, s: int, moves: list[tuple[int, int]], roll: bool = False,
            mode: str = "constant") -> torch.Tensor:
    """[x] + x moved by (dy, dx) * s for each (dy, dx) in `moves` (dy = -1: up, dx = -1: left),
    filled with zeros (or wrapped around with `roll`, or edge pixels with mode="replicate")."""
    h, w = x.shape[-2:]
    out = [x]
    for dy, dx in moves:
        if roll:
            out.append(torch.roll(x, shifts=(dy * s, dx * s), dims=(-2, -1)))
            continue
        padded = F.pad(x, (s, s, s, s), mode=mode) if mode != "constant" else F.pad(x, (s, s, s, s))
        out.append(padded[..., s - dy * s:s - dy * s + h, s - dx * s:s - dx * s + w])
    return torch.cat(out, dim=1)


# where each copy's picture moves, in the package's order: left-up, right-up, left-down, right-down
_ORDER = [(-1, -1), (-1, 1), (1, -1), (1, 1)]


def _move_names() -> dict[tuple[int, int], str]:
    """The name of every move the check recognises, in the student's language (looked up at each
    check, since the language can change while the module stays imported)."""
    return {(-1, -1): _("left-up"), (-1, 1): _("right-up"), (1, -1): _("left-down"), (1, 1): _("right-down"),
            (0, -1): _("left"), (0, 1): _("right"), (-1, 0): _("up"), (1, 0): _("down")}


@exercise("13.2", "the image shifts of shifted patch tokenization", difficulty="medium", minutes=15)
def shift_images(student: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """`student(x (B, C, H, W), s)` -> (B, 5C, H, W): [x, left-up, right-up, left-down, right-down]
    along the channels, each copy of the image moved diagonally by s pixels with zeros shifted in,
    as `vitcourse.layers.spt.shifted_images`."""
    from ..layers.spt import shifted_images

    g = torch.Generator().manual_seed(1302)
    for b, c, h, w, s in [(2, 1, 6, 10, 1), (1, 2, 8, 12, 2), (2, 1, 12, 20, 3)]:
        x = torch.randint(1, 10, (b, c, h, w), generator=g).float()  # no zero pixel: a zero is filled in
        what = f"shift_images(x {tuple(x.shape)}, s={s})"
        original = x.clone()
        try:
            got = _tensor(what, call_student(what, student, x, s))
        except ExerciseError as exc:
            if "size" in str(exc).lower():  # e.g. torch.cat of copies of different sizes
                raise ExerciseError(_("{error}. These images are not square (H={h}, W={w}): a pad or slice that "
                                      "uses H where W belongs (or the reverse) works only for square images").format(
                    error=exc, h=h, w=w)) from None
            raise
        if not torch.equal(x, original):
            raise ExerciseError(_("{what} changed the input images in place; return a new tensor").format(
                what=what))
        expected = shifted_images(x, s)
        if tuple(got.shape) == (b, 5, c, h, w):
            raise ExerciseError(_("{what} returns (B, 5, C, H, W): concatenate along the channels "
                                  "(torch.cat(..., dim=1)) instead of stacking, to get (B, 5C, H, W)").format(
                what=what))
        if tuple(got.shape) in ((b, 5 * c, w, h), (b, 4 * c, w, h)):
            raise ExerciseError(_("{what} returns (B, ·, W, H): height and width are swapped somewhere "
                                  "(a pad or slice that uses W where H belongs?)").format(what=what))
        if tuple(got.shape) == (b, 4 * c, h, w):
            raise ExerciseError(_("{what} returns 4C channels: the unshifted image comes first, then the "
                                  "four shifted copies (5C channels in all)").format(what=what))
        expect_shape(what, got, (b, 5 * c, h, w))
        if _same(got, expected):
            continue
        if c > 1:
            interleaved = expected.reshape(b, 5, c, h, w).transpose(1, 2).reshape(b, 5 * c, h, w)
            if _same(got, interleaved):
                raise ExerciseError(_("{what} interleaves the copies channel by channel (stack on dim=2, then "
                                      "reshape); concatenate whole images: [x (C channels), left-up (C), "
                                      "...]").format(what=what))
        if _same(got, _shifts(x, s, [(-dy, -dx) for dy, dx in _ORDER])):
            raise ExerciseError(_("{what}: each copy moves the opposite way (which is also the four copies in "
                                  "reverse order). 'left-up' means the picture moves up and to the left, "
                                  "out[i, j] = x[i + s, j + s], so zeros come in at the bottom and the right; "
                                  "the order is [x, left-up, right-up, left-down, right-down]").format(what=what))
        if _same(got, _shifts(x, s, _ORDER, roll=True)):
            raise ExerciseError(_("{what} wraps the pixels around (torch.roll): pixels pushed out on one side "
                                  "come back on the other. Fill the s rows and columns that come in with 0 "
                                  "(pad with zeros, then slice)").format(what=what))
        if _same(got, _shifts(x, s, _ORDER, mode="replicate")):
            raise ExerciseError(_("{what} repeats the edge pixels into the gap (replicate padding); SPT "
                                  "fills it with zeros").format(what=what))
        if _same(got, _shifts(x, 2 * s, _ORDER)) or (s > 1 and _same(got, _shifts(x, 1, _ORDER))):
            raise ExerciseError(_("{what} moves the copies by the wrong number of pixels: by s = {s} along "
                                  "both axes (the caller passes half the patch size as s)").format(what=what, s=s))
        axis_moves = [(0, -1), (0, 1), (-1, 0), (1, 0)]  # left, right, up, down
        for moves in (axis_moves, [(0, -1), (-1, 0), (0, 1), (1, 0)]):
            if _same(got, _shifts(x, s, moves)):
                raise ExerciseError(_("{what} moves the copies along one axis only (left, right, up, down); "
                                      "SPT's four copies move diagonally: left-up, right-up, left-down, "
                                      "right-down").format(what=what))
        # the right five images, in another order?
        blocks = [expected[:, i * c:(i + 1) * c] for i in range(5)]
        got_blocks = [got[:, i * c:(i + 1) * c] for i in range(5)]
        names = [_("the image"), _("left-up"), _("right-up"), _("left-down"), _("right-down")]
        found = []
        for gb in got_blocks:
            match = [names[i] for i, eb in enumerate(blocks) if _same(gb, eb)]
            if not match:  # a moved copy that is not one of the package's: name its move if it is one
                for (dy, dx), name in _move_names().items():
                    if _same(gb, _shifts(x, s, [(dy, dx)])[:, c:]):
                        match = [_("{name} (not one of SPT's copies)").format(name=name)]
                        break
            found.append(match[0] if match else "?")
        if sorted(found) == sorted(names):
            raise ExerciseError(_("{what} has the right five images in another order: got [{found}], "
                                  "the package's order is [{names}]").format(
                what=what, found=', '.join(found), names=', '.join(names)))
        if "?" not in found:
            raise ExerciseError(_("{what} holds [{found}]; expected [{names}]").format(
                what=what, found=', '.join(found), names=', '.join(names)))
        expect_close(what, got, expected, atol=0, rtol=0)
