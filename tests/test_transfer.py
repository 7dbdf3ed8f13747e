"""Fine-tuning a timm ImageNet ViT on Fashion-MNIST: the loading, conversion, position-embedding
resampling, grey filters and head swap, on a checkpoint in timm's format that the test makes
(the real weights need internet; the chapter downloads them on Colab)."""
from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

from vitcourse.models.transfer import adapt_for_fine_tuning, load_timm_vit  # noqa: E402
from vitcourse.models.vit_weights import from_timm  # noqa: E402


@pytest.fixture(scope="module")
def timm_checkpoint(tmp_path_factory):
    """A ViT-Ti/16 state dict saved as timm saves it, with random (non-trivial) weights."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    path = tmp_path_factory.mktemp("timm") / "vit_tiny_patch16_224.pth"
    torch.save(model.state_dict(), path)
    return path


def timm_model(path):
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def test_grey_filters_give_the_features_of_the_grey_image_copied_into_rgb(timm_checkpoint):
    reference = timm_model(timm_checkpoint)
    model = adapt_for_fine_tuning(from_timm(timm_model(timm_checkpoint)), image_size=224).eval()
    grey = torch.randn(2, 1, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.forward_head(model.forward_features(grey), pre_logits=True)
        theirs = reference.forward_head(reference.forward_features(grey.expand(-1, 3, -1, -1)), pre_logits=True)
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_the_head_is_new_zero_and_the_grid_is_resampled(timm_checkpoint):
    model = adapt_for_fine_tuning(from_timm(timm_model(timm_checkpoint)), image_size=112, num_classes=10).eval()
    assert model.pos_embed.shape == (1, 1 + 7 * 7, 192)  # class token + 7x7 grid, from 14x14
    x = torch.randn(3, 1, 112, 112)
    assert torch.equal(model(x), torch.zeros(3, 10))  # zero-initialised head, as the paper
    assert model.config.in_channels == 1 and model.config.num_classes == 10
    # the class token's position embedding is kept; the grid's is an interpolation of the old one
    old = timm_model(timm_checkpoint).pos_embed
    assert torch.equal(model.pos_embed[:, 0], old[:, 0])


def test_fine_tuning_steps_train_the_new_head_and_the_body(timm_checkpoint):
    model = adapt_for_fine_tuning(from_timm(timm_model(timm_checkpoint)), image_size=32, num_classes=10)
    before = model.blocks[0].attn.qkv.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(8, 1, 32, 32), torch.arange(8)
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0]
    assert not torch.equal(before, model.blocks[0].attn.qkv.weight)


def test_bad_arguments_are_named(timm_checkpoint):
    model = from_timm(timm_model(timm_checkpoint))
    with pytest.raises(ValueError, match="in_channels"):
        adapt_for_fine_tuning(model, 224, in_channels=2)
    with pytest.raises(ValueError, match="num_classes"):
        adapt_for_fine_tuning(model, 224, num_classes=0)
    with pytest.raises(ValueError, match="divisible"):
        adapt_for_fine_tuning(model, 100)


def test_offline_the_loader_says_it_needs_internet(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="needs internet"):
        load_timm_vit()
