"""Checks for chapter 14 (pre-training): MAE's per-sample random masking with its restore indices,
and the MAE loss on the removed patches with per-patch normalised pixels.

Masking is random, so 14.1 is checked by what every correct answer must satisfy (shapes, exactly
N - len_keep removed per sample, kept tokens are the inputs where the mask is 0, ids_restore puts
[kept, mask tokens] back in order, masks differ between samples and between calls); 14.2 is
compared with `vitcourse.models.mae.mae_loss` on inputs built so that the usual slips show.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._core import ExerciseError, call_student, exercise, expect_shape
from ..i18n import _


def _three_tensors(what: str, got: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not (isinstance(got, tuple) and len(got) == 3 and all(isinstance(t, torch.Tensor) for t in got)):
        raise ExerciseError(_("{what} should return three tensors (kept, mask, ids_restore), got {got}").format(
            what=what, got=type(got).__name__))
    return got


@exercise("14.1", "per-sample random masking", difficulty="medium", minutes=20)
def random_masking(student: Callable[[torch.Tensor, float], Any]) -> None:
    """`student(x (B, N, D), mask_ratio)` -> kept (B, len_keep, D), mask (B, N) with 1 = removed,
    ids_restore (B, N), with len_keep = int(N * (1 - mask_ratio)), as MAE's reference code."""
    from ..layers.masking import num_kept, restore_order

    g = torch.Generator().manual_seed(1401)
    for b, n, d, ratio in [(8, 49, 6, 0.75), (5, 16, 3, 0.5), (4, 10, 2, 0.0)]:
        x = torch.randn(b, n, d, generator=g)
        what = f"random_masking(x {tuple(x.shape)}, mask_ratio={ratio})"
        kept, mask, ids_restore = _three_tensors(what, call_student(what, student, x.clone(), ratio))
        keep = num_kept(n, ratio)
        expect_shape(what + ": kept", kept, (b, keep, d))
        expect_shape(what + ": mask", mask, (b, n))
        expect_shape(what + ": ids_restore", ids_restore, (b, n))
        removed = mask.float().sum(dim=1)
        if torch.all(removed == keep) and keep != n - keep:
            raise ExerciseError(_("{what}: the mask marks the KEPT tokens with 1; MAE's mask is 1 for a "
                                  "removed token and 0 for a visible one").format(what=what))
        if not torch.all(removed == n - keep) or not torch.all((mask == 0) | (mask == 1)):
            raise ExerciseError(_("{what}: every sample's mask must hold exactly N - len_keep = {r} ones "
                                  "(removed) and len_keep = {k} zeros").format(what=what, r=n - keep, k=keep))
        if ids_restore.dtype not in (torch.int64, torch.int32) or not torch.equal(
                ids_restore.sort(dim=1).values, torch.arange(n).expand(b, n)):
            raise ExerciseError(_("{what}: ids_restore must be a permutation of 0..N-1 per sample (integer "
                                  "indices)").format(what=what))
        filler = torch.zeros(b, n - keep, d)
        restored = restore_order(torch.cat([kept, filler], dim=1), ids_restore.long())  # (B, N, D)
        visible = mask == 0
        if not torch.allclose(restored[visible], x[visible]) or restored[~visible].abs().sum() != 0:
            ids_shuffle = ids_restore.long()
            as_shuffle = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
            if torch.allclose(as_shuffle, kept):
                raise ExerciseError(_("{what}: ids_restore is the shuffle itself; it must UNDO it: "
                                      "ids_restore = argsort(ids_shuffle)").format(what=what))
            raise ExerciseError(_("{what}: putting [kept tokens, mask tokens] back in order with ids_restore "
                                  "must give the input x where the mask is 0 and a mask token where it is 1; "
                                  "it does not (are kept tokens gathered with the first len_keep indices of "
                                  "ids_shuffle, and the mask unshuffled with ids_restore?)").format(what=what))
        if keep < n:
            if len({tuple(m.tolist()) for m in mask}) < b:
                raise ExerciseError(_("{what}: several samples got the same mask; draw the noise per sample, "
                                      "shape (B, N), so that each image loses different patches").format(what=what))
            again = _three_tensors(what, call_student(what, student, x.clone(), ratio))[1]
            if torch.equal(again, mask):
                raise ExerciseError(_("{what}: two calls removed the same patches; the mask must be drawn at "
                                      "random (torch.rand) on every call").format(what=what))


@exercise("14.2", "the MAE loss on removed patches", difficulty="medium", minutes=15)
def mae_loss(student: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, bool], Any]) -> None:
    """`student(images (B, C, H, W), pred (B, N, P*P*C), mask (B, N), patch_size, norm_pix_loss)` ->
    the mean squared error per removed patch, averaged over removed patches (targets normalised per
    patch when norm_pix_loss), as `vitcourse.models.mae.mae_loss`."""
    from ..layers.patches import patchify
    from ..models.mae import mae_loss as reference

    g = torch.Generator().manual_seed(1402)
    for b, c, size, p in [(3, 1, 28, 4), (2, 3, 8, 2)]:
        n = (size // p) ** 2
        # images with a bright offset and a contrast that differ per patch: normalising matters
        images = torch.randn(b, c, size, size, generator=g) * 2.0 + 3.0
        pred = torch.randn(b, n, p * p * c, generator=g)
        mask = (torch.rand(b, n, generator=g) < 0.75).float()
        mask[:, 0], mask[:, 1] = 1.0, 0.0  # at least one removed and one visible patch
        for norm in (True, False):
            what = f"mae_loss(images {tuple(images.shape)}, pred {tuple(pred.shape)}, mask, {p}, norm_pix_loss={norm})"
            got = call_student(what, student, images.clone(), pred.clone(), mask.clone(), p, norm)
            if not isinstance(got, torch.Tensor) or got.numel() != 1:
                raise ExerciseError(_("{what} should return a scalar tensor, got {got}").format(
                    what=what, got=tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__))
            got = got.reshape(()).double()
            expected = reference(images, pred, mask, p, norm).double()
            if torch.allclose(got, expected, rtol=1e-4):
                continue
            target = patchify(images, p)
            if norm:
                biased = (target - target.mean(-1, keepdim=True)) / (target.var(-1, unbiased=False, keepdim=True)
                                                                      + 1e-6) ** 0.5
                per_patch = ((pred - biased) ** 2).mean(-1)
                if torch.allclose(got, ((per_patch * mask).sum() / mask.sum()).double(), rtol=1e-4):
                    continue  # the population variance is as good a normaliser as the sample one
            all_patches = reference(images, pred, torch.ones_like(mask), p, norm).double()
            if torch.allclose(got, all_patches, rtol=1e-4):
                raise ExerciseError(_("{what} averages over every patch; the loss counts only the REMOVED "
                                      "patches (mask == 1): the visible ones are given to the encoder").format(
                    what=what))
            visible_only = reference(images, pred, 1 - mask, p, norm).double()
            if torch.allclose(got, visible_only, rtol=1e-4):
                raise ExerciseError(_("{what} averages over the visible patches; mask == 1 marks the removed "
                                      "ones, and those are the ones to predict").format(what=what))
            if norm and torch.allclose(got, reference(images, pred, mask, p, False).double(), rtol=1e-4):
                raise ExerciseError(_("{what}: with norm_pix_loss=True each target patch is first normalised by "
                                      "its own mean and standard deviation (over its P*P*C pixels)").format(what=what))
            per_patch = ((pred - (target if not norm else
                                  (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5))
                         ** 2).mean(-1)
            if torch.allclose(got, ((per_patch * mask).sum() / mask.numel()).double(), rtol=1e-4):
                raise ExerciseError(_("{what} divides by B*N; average over the removed patches only: divide by "
                                      "mask.sum()").format(what=what))
            raise ExerciseError(_("{what} = {got:.5f}, expected {expected:.5f}").format(
                what=what, got=got.item(), expected=expected.item()))
