"""The exercise checks of chapter 12: each reference answer passes, each known-wrong answer fails
with the message that explains it."""
from __future__ import annotations

import torch
from einops import repeat

from helpers import fails
from vitcourse.checks import ch12_robustness as ch12


def test_ids():
    assert ch12.linear_cka.exercise_id == "12.1"
    assert ch12.patch_drop.exercise_id == "12.2"


# ---------------------------------------------------------------- 12.1
def cka(x, y, centre=True, square=True):
    if centre:
        x, y = x - x.mean(0), y - y.mean(0)
    cross = torch.linalg.matrix_norm(y.T @ x)
    return float((cross ** 2 if square else cross)
                 / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)))


def test_cka_reference_passes(capsys):
    ch12.linear_cka(cka)
    assert "Exercise 12.1 passed" in capsys.readouterr().out


def test_cka_as_a_tensor_passes_too(capsys):
    from vitcourse.analysis.cka import linear_cka
    ch12.linear_cka(linear_cka)
    assert "Exercise 12.1 passed" in capsys.readouterr().out


def test_cka_without_centring_fails():
    fails(ch12.linear_cka, lambda x, y: cka(x, y, centre=False), "12.1", "without centring", "column's")


def test_cka_without_squaring_fails():
    fails(ch12.linear_cka, lambda x, y: cka(x, y, square=False), "without squaring")


def test_cka_centring_the_rows_fails():
    def rows(x, y):
        return cka(x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True), centre=False)
    fails(ch12.linear_cka, rows, "centres each row")


def test_cka_returning_a_matrix_fails():
    fails(ch12.linear_cka, lambda x, y: y.T @ x, "one number")


# ---------------------------------------------------------------- 12.2
def drop(images, mask, patch_size):
    pixels = repeat(mask, "b gh gw -> b (gh p1) (gw p2)", p1=patch_size, p2=patch_size)  # (B, H, W)
    return images.masked_fill(pixels, 0)


def test_patch_drop_reference_passes(capsys):
    ch12.patch_drop(drop)
    assert "Exercise 12.2 passed" in capsys.readouterr().out


def test_patch_drop_of_the_complement_fails():
    fails(ch12.patch_drop, lambda images, mask, p: drop(images, ~mask, p), "12.2", "complement")


def test_patch_drop_with_the_wrong_reshape_fails():
    def reshaped(images, mask, p):
        b, h, w = images.shape
        pixels = mask[:, :, :, None, None].expand(-1, -1, -1, p, p).reshape(b, h, w)
        return images.masked_fill(pixels, 0)
    fails(ch12.patch_drop, reshaped, "horizontal stripes", "repeat_interleave")


def test_patch_drop_tiling_the_mask_fails():
    fails(ch12.patch_drop, lambda images, mask, p: images.masked_fill(mask.repeat(1, p, p), 0), "tiles")


def test_patch_drop_returning_float_fails():
    fails(ch12.patch_drop, lambda images, mask, p: drop(images, mask, p).float(), "torch.float32", "uint8")


def test_patch_drop_in_place_fails():
    def in_place(images, mask, p):
        pixels = repeat(mask, "b gh gw -> b (gh p1) (gw p2)", p1=p, p2=p)
        return images.masked_fill_(pixels, 0)
    fails(ch12.patch_drop, in_place, "in place")


def test_patch_drop_with_a_transposed_grid_fails():
    fails(ch12.patch_drop, lambda images, mask, p: drop(images, mask.transpose(1, 2), p), "12.2")
