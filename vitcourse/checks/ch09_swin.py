"""Checks for chapter 09 (Swin): window partition, the shifted-window attention mask, and the
shifted-window block assembled from its parts.

Every check builds its own feature maps and sizes and compares with `vitcourse.models.swin`'s reference.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from einops import rearrange

from ._core import ExerciseError, call_student, exercise, expect_close, expect_shape, expect_true
from ..i18n import _

if TYPE_CHECKING:
    from ..models.swin import SwinBlock


@exercise("09.1", "partition a feature map into non-overlapping windows",
          difficulty="medium", minutes=15)
def window_partition(student: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """`student(x, window_size)`: (B, H, W, C) -> (B*nW, M*M, C) as `vitcourse.models.swin.window_partition`."""
    from ..models.swin import window_partition as reference

    g = torch.Generator().manual_seed(909)
    for b, h, w, c, m in [(2, 8, 8, 3, 4), (1, 6, 9, 2, 3), (3, 14, 14, 5, 7), (2, 4, 6, 1, 2)]:
        x = torch.randn(b, h, w, c, generator=g)
        expected = reference(x, m)
        got = student(x.clone(), m)
        what = f"window_partition(x {tuple(x.shape)}, window_size={m})"
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        expect_shape(what, got, tuple(expected.shape))
        col_major = rearrange(x, "b (nh m1) (nw m2) c -> (b nw nh) (m1 m2) c", m1=m, m2=m)
        if h != w or h // m > 1:
            if torch.equal(got, col_major) and not torch.equal(got, expected):
                raise ExerciseError(_("{what}: the windows come out column by column; number them "
                                      "row by row (left to right, then top to bottom)").format(what=what))
        naive = x.reshape(-1, m * m, c)
        if torch.equal(got, naive) and not torch.equal(got, expected):
            raise ExerciseError(_("{what}: a plain reshape cuts the map into runs of M*M consecutive "
                                  "pixels of a row, not M x M squares; split H and W into "
                                  "(windows, M) first and move the two window axes together").format(
                what=what))
        expect_close(what, got, expected, atol=0, rtol=0)


@exercise("09.2", "the attention mask of shifted windows", difficulty="hard", minutes=30)
def shifted_window_mask(student: Callable[[int, int, int, int], torch.Tensor]) -> None:
    """`student(height, width, window_size, shift)` -> (nW, M*M, M*M), bool (True = may attend) or
    float (0 = may attend, a large negative number = may not); compared with the reference."""
    from ..models.swin import shifted_window_mask as reference

    for h, w, m, s in [(8, 8, 4, 2), (12, 12, 4, 2), (14, 14, 7, 3), (6, 9, 3, 1), (8, 8, 4, 0)]:
        expected = reference(h, w, m, s) == 0  # (nW, N, N) may attend
        got = student(h, w, m, s)
        what = f"shifted_window_mask(height={h}, width={w}, window_size={m}, shift={s})"
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        expect_shape(what, got, tuple(expected.shape))
        allowed = got if got.dtype == torch.bool else got == 0
        if got.dtype != torch.bool:
            expect_true(bool((got[~allowed] <= -50).all()),
                        _("{what}: masked entries should be a large negative number (-100 or -inf) "
                          "so that softmax gives them ~0 weight").format(what=what))
        if torch.equal(allowed, ~expected):
            raise ExerciseError(_("{what} is inverted: tokens from the *same* region may attend").format(
                what=what))
        if s and bool(allowed.all()):
            raise ExerciseError(_("{what} allows every pair: after the roll, windows at the bottom "
                                  "and right edge hold pixels from opposite sides of the image, "
                                  "which must not attend to each other").format(what=what))
        wrong = (allowed != expected).nonzero()
        if len(wrong):
            win, i, j = wrong[0].tolist()
            if expected[win, i, j]:  # whole sentences, so that translations can put the word anywhere
                message = _("{what} is wrong at {wrong} of {total} entries; first in window {win}, "
                            "query token {i}, key token {j}: expected allowed")
            else:
                message = _("{what} is wrong at {wrong} of {total} entries; first in window {win}, "
                            "query token {i}, key token {j}: expected masked")
            raise ExerciseError(message.format(what=what, wrong=len(wrong), total=expected.numel(),
                                               win=win, i=i, j=j))


def _block_variant(block: SwinBlock, x: torch.Tensor, *, roll: bool = True, roll_back: bool = True,
                   sign: int = -1, mask: bool = True, rel_bias: bool = True,
                   interleave: bool = False) -> torch.Tensor:
    """The block's forward with one step changed: what a known mistake computes (eval mode)."""
    from ..models.swin import window_partition, window_reverse

    _, h, w, _ = x.shape
    s, m, attn = block.shift, block.window_size, block.attn
    y = block.norm1(x)
    if s and roll:
        y = torch.roll(y, shifts=(sign * s, sign * s), dims=(1, 2))
    windows = window_partition(y, m)  # (B*nW, M*M, C)
    q, k, v = rearrange(attn.qkv(windows), "b n (three h d) -> three b h n d", three=3, h=attn.heads)
    n = m * m
    bias = attn.relative_position_bias()[None] if rel_bias else torch.zeros(1, attn.heads, n, n)
    if s and mask:
        per_window = block.attn_mask[:, None]  # (nW, 1, N, N)
        images = windows.shape[0] // per_window.shape[0]
        bias = bias + (per_window.repeat_interleave(images, 0) if interleave
                       else per_window.repeat(images, 1, 1, 1))  # (B*nW, h, N, N)
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + bias
    out = attn.proj(rearrange(scores.softmax(-1) @ v, "b h n d -> b n (h d)"))
    y = window_reverse(out, m, h, w)
    if s and roll and roll_back:
        y = torch.roll(y, shifts=(-sign * s, -sign * s), dims=(1, 2))
    x = x + y
    return x + block.mlp(block.norm2(x))


@exercise("09.3", "the shifted-window block's forward from its parts", difficulty="hard", minutes=30)
def swin_block(student_block_forward: Callable[..., torch.Tensor]) -> None:
    """`student_block_forward(block, x)` equals `block(x)` for fresh `vitcourse.models.swin.SwinBlock`s
    (shifted and not), in eval mode, on random (B, H, W, C) maps."""
    from ..models.swin import SwinBlock

    cases = [  # (B, H, W, C, heads, M, shift): shifted blocks first, one plain block last
        (2, 8, 8, 12, 3, 4, 2), (2, 6, 9, 8, 2, 3, 1), (1, 8, 8, 8, 2, 4, 0)]
    for i, (b, h, w, c, heads, m, s) in enumerate(cases):
        with torch.random.fork_rng():  # leave the notebook's random state alone
            torch.manual_seed(990 + i)
            block = SwinBlock(c, heads, m, (h, w), shift=s, mlp_ratio=2.0).eval()
            with torch.no_grad():
                # weights of a trained size, so that every missing piece changes the output
                for norm in (block.norm1, block.norm2):
                    norm.weight.uniform_(0.5, 1.5)
                    norm.bias.normal_(0, 0.3)
                block.attn.qkv.weight.normal_(0, c ** -0.5)
                block.attn.relative_position_bias_table.normal_(0, 1.0)
            x = torch.randn(b, h, w, c) * 2
        with torch.no_grad():
            expected = block(x)
            variants = {name: _block_variant(block, x, **kw) for name, kw in [
                ("no_shift", dict(roll=False)), ("no_shift_no_mask", dict(roll=False, mask=False)),
                ("no_roll_back", dict(roll_back=False)), ("wrong_way", dict(sign=1)),
                ("no_mask", dict(mask=False)), ("no_bias", dict(rel_bias=False)),
                ("no_bias_no_mask", dict(rel_bias=False, mask=False)),
                ("interleaved", dict(interleave=True))]}

        def refuse(*args: object, **kwargs: object) -> torch.Tensor:
            raise ExerciseError(_("swin_block_forward called block(x) (or block.forward), the answer "
                                  "it is compared with: build the forward from the block's parts"))

        block.forward = refuse  # calling the block itself would compare the block with itself
        what = (f"swin_block_forward(SwinBlock(dim={c}, heads={heads}, window_size={m}, grid=({h}, {w}), "
                f"shift={s}), x {(b, h, w, c)})")
        with torch.no_grad():
            got = call_student(what, student_block_forward, block, x.clone())
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(_("{what} should return a tensor, got {got}").format(
                what=what, got=type(got).__name__))
        expect_shape(what, got, tuple(expected.shape))
        if not torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
            # which known mistake computes the student's answer (only a shifted block tells them apart)
            like = {name for name, wrong in variants.items()
                    if s > 0 and torch.allclose(got, wrong, atol=1e-5, rtol=1e-4)}
            if like & {"no_shift", "no_shift_no_mask"}:
                raise ExerciseError(_("{what}: the windows are not shifted. This block has shift={s}: "
                                      "roll the normalised map by -shift along H and W (dims 1 and 2) "
                                      "before the partition, and by +shift after window_reverse").format(
                    what=what, s=s))
            if "no_roll_back" in like:
                raise ExerciseError(_("{what}: the map is rolled by -shift but never rolled back: after "
                                      "window_reverse, roll by +shift so that every token returns to "
                                      "its place before the residual sum").format(what=what))
            if "wrong_way" in like:
                raise ExerciseError(_("{what}: the map is rolled the wrong way. The mask is built for a "
                                      "roll by -shift (up and left), then +shift rolls it back").format(
                    what=what))
            if "no_mask" in like:
                raise ExerciseError(_("{what}: the shift mask is missing. After the roll, the windows at "
                                      "the bottom and right edges hold tokens from opposite sides of the "
                                      "image: add block.attn_mask to the bias of a shifted block").format(
                    what=what))
            if like & {"no_bias", "no_bias_no_mask"}:
                raise ExerciseError(_("{what}: the relative position bias is missing: B is "
                                      "block.attn.relative_position_bias() (heads, M*M, M*M), plus the "
                                      "shift mask in a shifted block").format(what=what))
            if "interleaved" in like:
                raise ExerciseError(_("{what}: the mask reaches the wrong windows. The windows come image "
                                      "by image (all of image 0's, then image 1's), so repeat the "
                                      "(nW, N, N) mask once per image with mask.repeat(B, 1, 1), not "
                                      "repeat_interleave").format(what=what))
        expect_close(what, got, expected, atol=1e-5)
