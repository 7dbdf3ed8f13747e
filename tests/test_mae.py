"""MAE: per-sample random masking, the encoder on visible patches only, the loss on removed patches
only, and the encoder's weights in a plain ViT."""
from __future__ import annotations

import pytest
import torch

from vitcourse.layers.masking import num_kept, random_masking, restore_order
from vitcourse.layers.patches import patchify
from vitcourse.models.mae import MAE, MAEConfig, load_encoder, mae_fmnist, mae_loss
from vitcourse.models.registry import create_model


def tokens(b: int = 4, n: int = 49, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n, ratio, keep", [(49, 0.75, 12), (16, 0.75, 4), (49, 0.0, 49), (49, 0.5, 24), (196, 0.75, 49)])
def test_masking_keeps_exactly_int_n_times_one_minus_ratio_tokens_per_sample(n, ratio, keep):
    kept, mask, ids_restore = random_masking(tokens(n=n), ratio)
    assert num_kept(n, ratio) == keep
    assert kept.shape == (4, keep, 8)
    assert mask.shape == (4, n) and ids_restore.shape == (4, n)
    assert (mask.sum(dim=1) == n - keep).all()  # every sample, not just on average
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_each_sample_gets_its_own_mask():
    _, mask, _ = random_masking(tokens(b=16), 0.75, generator=torch.Generator().manual_seed(1))
    assert len({tuple(m.tolist()) for m in mask}) == 16


def test_kept_tokens_are_the_inputs_at_the_unmasked_positions():
    x = tokens()
    kept, mask, _ = random_masking(x, 0.75)
    for b in range(len(x)):
        visible = x[b][mask[b] == 0]  # in the original order
        # the same set of token rows, in shuffled order
        assert sorted(map(tuple, visible.tolist())) == sorted(map(tuple, kept[b].tolist()))


def test_restore_inverts_the_shuffle():
    x = tokens()
    kept, mask, ids_restore = random_masking(x, 0.75)
    ids_shuffle = ids_restore.argsort(dim=1)
    shuffled = x.gather(1, ids_shuffle[..., None].expand(-1, -1, x.shape[-1]))
    assert torch.equal(shuffled[:, :kept.shape[1]], kept)
    assert torch.equal(restore_order(shuffled, ids_restore), x)


def test_masks_are_reproducible_with_a_generator_and_uniform_over_positions():
    a = random_masking(tokens(), 0.75, generator=torch.Generator().manual_seed(3))[1]
    b = random_masking(tokens(), 0.75, generator=torch.Generator().manual_seed(3))[1]
    assert torch.equal(a, b)
    _, mask, _ = random_masking(torch.zeros(4000, 49, 1), 0.75, generator=torch.Generator().manual_seed(0))
    frequency = mask.mean(dim=0)  # each position is removed ~75% of the time
    assert (frequency - 37 / 49).abs().max() < 0.04


@pytest.mark.parametrize("x, ratio, message", [
    (torch.zeros(2, 49), 0.75, "3D tensor"),
    (torch.zeros(2, 49, 8), 1.0, "mask_ratio"),
    (torch.zeros(2, 49, 8), -0.1, "mask_ratio"),
    (torch.zeros(2, 3, 8), 0.75, "keeps no token"),
])
def test_masking_rejects_bad_input_with_the_argument_named(x, ratio, message):
    with pytest.raises(ValueError, match=message):
        random_masking(x, ratio)


def images(b: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_the_loss_ignores_visible_patches():
    x = images()
    pred = torch.randn(3, 49, 16)
    mask = (torch.rand(3, 49, generator=torch.Generator().manual_seed(0)) < 0.75).float()
    changed = pred.clone()
    changed[mask == 0] += 100.0  # wildly wrong, but only where the patch was visible
    for norm in (True, False):
        assert torch.equal(mae_loss(x, pred, mask, 4, norm), mae_loss(x, changed, mask, 4, norm))
    wrong_masked = pred.clone()
    wrong_masked[mask == 1] += 1.0
    assert mae_loss(x, wrong_masked, mask, 4, False) > mae_loss(x, pred, mask, 4, False)


def test_the_loss_is_zero_for_the_true_pixels_and_normalised_targets_are_per_patch():
    x = images()
    target = patchify(x, 4)
    mask = torch.ones(3, 49)
    assert mae_loss(x, target, mask, 4, norm_pix_loss=False) == 0
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    assert mae_loss(x, normed, mask, 4, norm_pix_loss=True) < 1e-10
    # a brighter, higher-contrast copy of the image has the same normalised targets
    assert mae_loss(3 * x + 1, normed, mask, 4, norm_pix_loss=True) < 1e-8


def test_mae_encodes_only_the_visible_patches_and_predicts_every_patch():
    model = mae_fmnist().eval()
    seen = []
    model.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    loss, pred, mask = model(images())
    assert seen == [torch.Size([3, 1 + 12, 128])]  # class token + 12 of 49 patches
    assert pred.shape == (3, 49, 16) and mask.shape == (3, 49)
    assert (mask.sum(1) == 37).all() and loss.ndim == 0 and torch.isfinite(loss)


def test_the_encoder_result_does_not_depend_on_masked_pixels():
    model = mae_fmnist().eval()
    x = images(1)
    torch.manual_seed(5)
    latent, mask, _ = model.forward_encoder(x)
    hidden = mask.bool().reshape(1, 7, 7).repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]
    scrambled = torch.where(hidden, torch.randn(x.shape, generator=torch.Generator().manual_seed(9)), x)
    torch.manual_seed(5)  # the same mask
    latent2, mask2, _ = model.forward_encoder(scrambled)
    assert torch.equal(mask, mask2)
    assert torch.allclose(latent, latent2, atol=1e-5)


def test_pretraining_learns_to_fill_in_removed_patches_from_visible_ones():
    # Each image is one grey level: a removed patch is predictable only from the visible ones
    # (the level differs per image), so the loss falls below what ignoring the input gives (~1).
    torch.manual_seed(0)
    model = mae_fmnist(norm_pix_loss=False, depth=2)
    x = torch.randn(16, 1, 1, 1, generator=torch.Generator().manual_seed(0)).expand(16, 1, 28, 28).clone()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = model(x)[0]  # a new random mask every step
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert min(losses[-5:]) < 0.5 * losses[0]


def test_the_encoder_loads_into_the_plain_vit_and_gives_its_features():
    model = mae_fmnist().eval()
    vit = load_encoder(create_model("vit_fmnist_p4_cls"), model.encoder_state_dict()).eval()
    x = images()
    assert torch.allclose(vit.forward_features(x), model.encoder.forward_features(x))
    assert vit(x).shape == (3, 10)
    with pytest.raises(ValueError, match="do not fit"):
        load_encoder(create_model("vit_fmnist_p4"), model.encoder_state_dict())  # no class token


def test_reconstruction_keeps_visible_patches_and_has_image_shape():
    model = mae_fmnist().eval()
    x = images(2)
    recon, mask = model.reconstruct(x)
    assert recon.shape == x.shape
    visible = ~mask.bool().reshape(2, 7, 7).repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]
    assert torch.allclose(recon[visible], x[visible])


@pytest.mark.parametrize("field, value, message", [
    ("mask_ratio", 1.0, "mask_ratio"), ("decoder_heads", 3, "divisible"), ("patch_size", 5, "divisible"),
    ("decoder_depth", 0, "decoder_depth"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        MAEConfig(**{field: value})


def test_mae_round_trips_through_an_exported_checkpoint(tmp_path):
    from vitcourse.training.checkpoint import export_model, load_model
    model = MAE(MAEConfig(decoder_depth=1)).eval()
    export_model(model, tmp_path / "mae.pt")
    again = load_model(tmp_path / "mae.pt")
    x = images()
    torch.manual_seed(0)
    a = model(x)[0]
    torch.manual_seed(0)
    assert torch.allclose(again(x)[0], a)
