"""The CNN baseline (vitcourse.models.cnn): shapes, parameter counts against the ViT, config checks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitcourse.models.cnn import PRESETS, BasicBlock, ResNet, ResNetConfig
from vitcourse.models import create_model, list_models


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_presets_are_registered_with_create_model():
    for name in PRESETS:
        assert name in list_models()
    assert isinstance(create_model("ResNet-FMNIST"), ResNet)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_map_fashion_mnist_batches_to_ten_logits(name):
    model = create_model(name).eval()
    x = torch.randn(3, 1, 28, 28)
    assert model(x).shape == (3, 10)
    feats = model.forward_features(x)
    # stride-2 stem then two stride-2 stages: 28 -> 14 -> 7 -> 4
    assert feats.shape == (3, model.config.widths[-1], 4, 4)


def test_base_cnn_has_about_the_vits_parameter_count():
    cnn, vit = n_params(create_model("resnet_fmnist")), n_params(create_model("vit_fmnist"))
    assert 0.6e6 < cnn < 1.0e6
    assert abs(cnn - vit) / vit < 0.25


def test_model_size_presets_grow_in_parameters():
    s, m, l = (n_params(create_model(n)) for n in ("resnet_fmnist_s", "resnet_fmnist", "resnet_fmnist_l"))
    assert s < m < l
    assert 0.1e6 < s < 0.3e6 and 1.2e6 < l < 2.0e6


def test_overrides_change_the_config():
    model = create_model("resnet_fmnist", num_classes=3, in_channels=3, depths=(1, 1, 1))
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 3)
    assert len(model.stages[0]) == 1


@pytest.mark.parametrize("kwargs, name", [
    ({"widths": ()}, "widths"),
    ({"widths": (32, 64), "depths": (2, 2, 2)}, "depths"),
    ({"depths": (2, 0, 2)}, "depths"),
    ({"stem_stride": 3}, "stem_stride"),
    ({"num_classes": 0}, "num_classes"),
])
def test_bad_config_raises_value_error_naming_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ResNetConfig(**kwargs)


def test_unknown_override_and_wrong_input_are_rejected():
    with pytest.raises(ValueError, match=r"unknown ResNetConfig field\(s\) \[.dim.\] for preset .resnet_fmnist.; known fields: .*widths"):
        create_model("resnet_fmnist", dim=128)
    with pytest.raises(ValueError, match="x must be"):
        create_model("resnet_fmnist")(torch.randn(2, 3, 28, 28))


def test_fresh_block_is_relu_of_its_input_because_the_last_norm_starts_at_zero():
    model = ResNet(ResNetConfig())
    block = model.stages[0][1]
    assert isinstance(block, BasicBlock)
    block.eval()
    x = torch.randn(2, 32, 14, 14)
    assert torch.allclose(block(x), F.relu(x))


def test_convolutions_are_translation_equivariant_away_from_the_border():
    # The CNN's inductive bias, which a ViT lacks: shift the input, the stem's output shifts too.
    model = create_model("resnet_fmnist", stem_stride=1).eval()
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 8:14, 8:14] = torch.randn(6, 6)
    shifted = torch.roll(x, shifts=(5, 3), dims=(2, 3))
    with torch.no_grad():
        a, b = model.stem(x), model.stem(shifted)
    assert torch.allclose(torch.roll(a, shifts=(5, 3), dims=(2, 3)), b, atol=1e-5)


def test_a_few_steps_fit_a_small_batch():
    torch.manual_seed(0)
    model = create_model("resnet_fmnist_s")
    x, y = torch.randn(32, 1, 28, 28), torch.arange(32) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss = F.cross_entropy(model(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
