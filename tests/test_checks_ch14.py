"""The exercise checks of chapter 14: each reference answer passes, each known-wrong answer fails
with the message that explains it."""
from __future__ import annotations

import torch

from helpers import fails
from vitcourse.checks import ch14_pretraining as ch14
from vitcourse.layers.masking import random_masking
from vitcourse.layers.patches import patchify
from vitcourse.models.mae import mae_loss


def test_ids():
    assert ch14.random_masking.exercise_id == "14.1"
    assert ch14.mae_loss.exercise_id == "14.2"


# ---------------------------------------------------------------- 14.1
def masking(x, ratio):
    b, n, d = x.shape
    keep = int(n * (1 - ratio))
    ids_shuffle = torch.rand(b, n).argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    kept = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
    mask = torch.ones(b, n)
    mask[:, :keep] = 0
    return kept, mask.gather(1, ids_restore), ids_restore


def test_masking_reference_and_package_pass(capsys):
    ch14.random_masking(masking)
    ch14.random_masking(random_masking)
    assert capsys.readouterr().out.count("Exercise 14.1 passed") == 2


def test_masking_with_an_inverted_mask_fails():
    def inverted(x, r):
        kept, mask, ids = masking(x, r)
        return kept, 1 - mask, ids
    fails(ch14.random_masking, inverted, "14.1", "1 for a removed token")


def test_masking_returning_the_shuffle_instead_of_its_inverse_fails():
    def no_inverse(x, r):
        b, n, d = x.shape
        keep = int(n * (1 - r))
        ids_shuffle = torch.rand(b, n).argsort(dim=1)
        kept = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        mask = torch.ones(b, n)
        mask[:, :keep] = 0
        return kept, mask.gather(1, ids_shuffle.argsort(1)), ids_shuffle
    fails(ch14.random_masking, no_inverse, "argsort(ids_shuffle)")


def test_masking_with_one_mask_for_the_whole_batch_fails():
    def shared(x, r):
        b, n, d = x.shape
        keep = int(n * (1 - r))
        ids_shuffle = torch.rand(1, n).argsort(dim=1).expand(b, n)
        ids_restore = ids_shuffle.argsort(dim=1)
        kept = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        mask = torch.ones(b, n)
        mask[:, :keep] = 0
        return kept, mask.gather(1, ids_restore), ids_restore
    fails(ch14.random_masking, shared, "same mask", "per sample")


def test_masking_that_always_keeps_the_first_tokens_fails():
    def first(x, r):
        b, n, d = x.shape
        keep = int(n * (1 - r))
        mask = torch.ones(b, n)
        mask[:, :keep] = 0
        return x[:, :keep], mask, torch.arange(n).expand(b, n)
    fails(ch14.random_masking, first, "14.1")


def test_masking_with_the_wrong_count_fails():
    def round_up(x, r):
        b, n, d = x.shape
        keep = -(-int(n * (1 - r) * 10) // 10) + 1
        ids_shuffle = torch.rand(b, n).argsort(dim=1)
        kept = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        mask = torch.ones(b, n)
        mask[:, :keep] = 0
        return kept, mask.gather(1, ids_shuffle.argsort(1)), ids_shuffle.argsort(1)
    fails(ch14.random_masking, round_up, "kept")


# ---------------------------------------------------------------- 14.2
def loss(images, pred, mask, p, norm):
    target = patchify(images, p)
    if norm:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


def test_loss_reference_package_and_population_variance_pass(capsys):
    ch14.mae_loss(loss)
    ch14.mae_loss(mae_loss)

    def biased(images, pred, mask, p, norm):
        target = patchify(images, p)
        if norm:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, unbiased=False, keepdim=True) + 1e-6) ** 0.5
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    ch14.mae_loss(biased)
    assert capsys.readouterr().out.count("Exercise 14.2 passed") == 3


def test_loss_over_every_patch_fails():
    fails(ch14.mae_loss, lambda i, pr, m, p, n: loss(i, pr, torch.ones_like(m), p, n), "REMOVED")


def test_loss_over_the_visible_patches_fails():
    fails(ch14.mae_loss, lambda i, pr, m, p, n: loss(i, pr, 1 - m, p, n), "visible patches")


def test_loss_without_normalising_fails():
    fails(ch14.mae_loss, lambda i, pr, m, p, n: loss(i, pr, m, p, False), "normalised")


def test_loss_divided_by_every_patch_fails():
    fails(ch14.mae_loss, lambda i, pr, m, p, n: loss(i, pr, m, p, n) * m.sum() / m.numel(), "mask.sum()")
