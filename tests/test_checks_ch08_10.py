"""The exercise checks of chapters 08-10: each reference answer passes, each known-wrong answer
fails with the message that explains it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from helpers import fails
from vitcourse.checks import ch08_t2t as ch08
from vitcourse.checks import ch09_swin as ch09


def test_ids():
    assert ch08.soft_split_length.exercise_id == "08.1"
    assert ch08.soft_split.exercise_id == "08.2"
    assert ch09.window_partition.exercise_id == "09.1"
    assert ch09.shifted_window_mask.exercise_id == "09.2"


# ---------------------------------------------------------------- 08.1
def test_soft_split_length_reference_passes(capsys):
    ch08.soft_split_length(lambda n, k, s, p: (n + 2 * p - k) // s + 1)
    assert "Exercise 08.1 passed" in capsys.readouterr().out


def test_soft_split_length_true_division_fails():
    fails(ch08.soft_split_length, lambda n, k, s, p: (n + 2 * p - k) / s + 1, "08.1", "round down")


def test_soft_split_length_padding_once_fails():
    fails(ch08.soft_split_length, lambda n, k, s, p: (n + p - k) // s + 1, "08.1", "returned 55")


def test_soft_split_length_no_padding_fails():
    fails(ch08.soft_split_length, lambda n, k, s, p: (n - k) // s + 1, "both* sides")


def test_stub_reports_not_implemented():
    def stub(*args):
        raise NotImplementedError
    with pytest.raises(NotImplementedError, match="Exercise 08.1"):
        ch08.soft_split_length(stub)


# ---------------------------------------------------------------- 08.2
def test_soft_split_reference_passes(capsys):
    ch08.soft_split(lambda x, k, s, p: F.unfold(x, k, padding=p, stride=s).transpose(1, 2))
    assert "Exercise 08.2 passed" in capsys.readouterr().out


def test_soft_split_without_transpose_fails():
    fails(ch08.soft_split, lambda x, k, s, p: F.unfold(x, k, padding=p, stride=s), "transpose to (B, L, C*k*k)")


def test_soft_split_ignoring_stride_fails():
    fails(ch08.soft_split, lambda x, k, s, p: F.unfold(x, k, padding=p, stride=1).transpose(1, 2), "wrong shape")


def test_soft_split_channel_last_flattening_fails():
    def chan_last(x, k, s, p):
        t = F.unfold(x, k, padding=p, stride=s)  # (B, C*k*k, L)
        t = rearrange(t, "b (c kk) l -> b l (kk c)", c=x.shape[1])
        return t
    fails(ch08.soft_split, chan_last, "wrong values")


# ---------------------------------------------------------------- 09.1
def good_partition(x, m):
    b, h, w, c = x.shape
    x = x.view(b, h // m, m, w // m, m, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, m * m, c)


def test_window_partition_reference_passes(capsys):
    ch09.window_partition(good_partition)
    assert "Exercise 09.1 passed" in capsys.readouterr().out


def test_window_partition_plain_reshape_fails():
    fails(ch09.window_partition, lambda x, m: x.reshape(-1, m * m, x.shape[-1]), "plain reshape")


def test_window_partition_column_major_fails():
    fails(ch09.window_partition,
          lambda x, m: rearrange(x, "b (nh m1) (nw m2) c -> (b nw nh) (m1 m2) c", m1=m, m2=m),
          "column by column")


# ---------------------------------------------------------------- 09.2
def good_mask(h, w, m, s):
    ids = torch.zeros(h, w)
    if s:
        cuts = (slice(0, -m), slice(-m, -s), slice(-s, None))
        n = 0
        for a in cuts:
            for b in cuts:
                ids[a, b] = n
                n += 1
    win = good_partition(ids[None, :, :, None], m)[..., 0]
    return win[:, :, None] == win[:, None, :]


def test_shifted_window_mask_reference_passes_bool_and_float(capsys):
    ch09.shifted_window_mask(good_mask)
    ch09.shifted_window_mask(lambda *a: torch.zeros(good_mask(*a).shape).masked_fill(~good_mask(*a), -1e9))
    assert capsys.readouterr().out.count("Exercise 09.2 passed") == 2


def test_shifted_window_mask_inverted_fails():
    fails(ch09.shifted_window_mask, lambda *a: ~good_mask(*a), "inverted")


def test_shifted_window_mask_all_allowed_fails():
    fails(ch09.shifted_window_mask, lambda *a: torch.ones(good_mask(*a).shape, dtype=torch.bool), "allows every pair")


def test_shifted_window_mask_small_negative_fails():
    fails(ch09.shifted_window_mask,
          lambda *a: torch.zeros(good_mask(*a).shape).masked_fill(~good_mask(*a), -1.0), "large negative")


def test_shifted_window_mask_wrong_regions_fails():
    def two_regions(h, w, m, s):  # forgets the middle band: only wrapped vs not along rows
        ids = torch.zeros(h, w)
        if s:
            ids[-s:, :] = 1
        win = good_partition(ids[None, :, :, None], m)[..., 0]
        return win[:, :, None] == win[:, None, :]
    fails(ch09.shifted_window_mask, two_regions, "is wrong at", "expected masked")


# ---------------------------------------------------------------- 10.1 / 10.2
from vitcourse.checks import ch10_compare as ch10  # noqa: E402


def good_vit_macs(s, p, c, d, depth, mlp, k):
    n = (s // p) ** 2
    block = n * (3 * d * d + d * d + 2 * d * mlp) + 2 * n * n * d
    return n * p * p * c * d + depth * block + d * k


def test_vit_macs_reference_passes(capsys):
    ch10.vit_macs(good_vit_macs)
    assert "Exercise 10.1 passed" in capsys.readouterr().out


def test_vit_macs_without_attention_fails():
    fails(ch10.vit_macs, lambda s, p, c, d, L, m, k: good_vit_macs(s, p, c, d, L, m, k) - L * 2 * (s // p) ** 4 * d,
          "attention itself is missing")


def test_vit_macs_without_patch_embedding_fails():
    fails(ch10.vit_macs, lambda s, p, c, d, L, m, k: good_vit_macs(s, p, c, d, L, m, k) - (s // p) ** 2 * p * p * c * d,
          "patch embedding")


def test_vit_macs_flops_instead_of_macs_fails():
    fails(ch10.vit_macs, lambda *a: 2 * good_vit_macs(*a), "10.1", "expected")


def good_front(rows):
    return [n for n, c, a in rows
            if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for _, c2, a2 in rows)]


def test_pareto_reference_passes(capsys):
    ch10.pareto_front(good_front)
    assert "Exercise 10.2 passed" in capsys.readouterr().out


def test_pareto_keeping_everything_fails():
    fails(ch10.pareto_front, lambda rows: [r[0] for r in rows], "includes")


def test_pareto_sorted_output_fails():
    fails(ch10.pareto_front, lambda rows: sorted(good_front(rows)), "wrong order")


def test_pareto_non_strict_domination_fails():
    # treats ties as dominating: drops both of two identical models
    def ties_dominate(rows):
        return [n for n, c, a in rows if not any(n2 != n and c2 <= c and a2 >= a for n2, c2, a2 in rows)]
    fails(ch10.pareto_front, ties_dominate, "10.2")
