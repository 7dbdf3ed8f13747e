"""Loading timm's and torchvision's ViTs: same architecture, same weights, same logits; and FLOPs."""
import pytest
import torch
import torch.nn as nn

import vitcourse
from vitcourse import from_timm, from_torchvision
from vitcourse.flops import count_flops, count_parameters, flop_counts

import timm  # a test dependency (pyproject's [test] extra): missing, the suite fails, never skips
import torchvision


def perturb_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere (also biases, LayerNorm and torchvision's zero-initialised head),
    so no tensor that the mapping might get wrong is left at a symmetric default."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


def images(n, c=3, size=224, seed=1):
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("timm_name, ours, num_classes", [
    ("vit_tiny_patch16_224", "vit_ti_16", 1000),
    ("vit_tiny_patch16_224", "vit_ti_16", 10),
    ("vit_small_patch16_224", "vit_s_16", 7),
])
def test_logits_equal_timm(timm_name, ours, num_classes):
    theirs = perturb_(timm.create_model(timm_name, pretrained=False, num_classes=num_classes)).eval()
    model = from_timm(theirs)
    assert not model.training
    ref = vitcourse.create_model(ours, num_classes=num_classes).config
    assert model.config == ref  # the preset is the architecture timm builds
    x = images(2)
    with torch.no_grad():
        expected = theirs(x)
        for impl in ("fused", "explicit"):
            got = model.set_attn_impl(impl)(x)
            assert got.shape == (2, num_classes)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5, msg=lambda m, impl=impl: f"{impl}: {m}")
    assert expected.abs().max() > 0.1  # the comparison is not between near-zero outputs


def test_timm_other_resolution_and_channels():
    theirs = perturb_(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64,
                                        in_chans=1, num_classes=5, depth=3)).eval()
    model = from_timm(theirs)
    c = model.config
    assert (c.image_size, c.in_channels, c.depth, c.num_classes) == (64, 1, 3, 5)
    x = images(3, c=1, size=64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), theirs(x), rtol=0, atol=1e-5)


def test_logits_equal_torchvision_vit_b_16():
    theirs = perturb_(torchvision.models.vit_b_16(weights=None)).eval()
    model = from_torchvision(theirs)
    with torch.device("meta"):
        assert model.config == vitcourse.create_model("vit_b_16").config
    assert model.config.norm_eps == theirs.encoder.ln.eps == 1e-6
    assert count_parameters(model) == 86_567_656
    x = images(2)
    with torch.no_grad():
        expected = theirs(x)
        got = model(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_torchvision_small_config_and_training_mode():
    from torchvision.models.vision_transformer import VisionTransformer
    theirs = perturb_(VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                        hidden_dim=64, mlp_dim=128, num_classes=6))
    model = from_torchvision(theirs)
    assert model.training  # same mode as the source
    c = model.config
    assert (c.image_size, c.patch_size, c.depth, c.heads, c.dim, c.mlp_dim, c.num_classes) == \
        (32, 8, 2, 4, 64, 128, 6)
    theirs.eval(), model.eval()
    x = images(4, size=32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), theirs(x), rtol=0, atol=1e-5)


def test_converted_model_owns_its_weights():
    theirs = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, depth=1)
    model = from_timm(theirs)
    before = model.head.weight.detach().clone()
    with torch.no_grad():
        theirs.head.weight.add_(1.0)
    assert torch.equal(model.head.weight, before)
    assert all(p.requires_grad and p.device.type == "cpu" for p in model.parameters())
    assert isinstance(model.pos_embed, nn.Parameter)


@pytest.mark.parametrize("kwargs, match", [
    (dict(global_pool="avg"), "global_pool='avg'"),
    (dict(init_values=1e-5), "no vitcourse counterpart.*ls1"),
    (dict(reg_tokens=4), "register tokens"),
])
def test_timm_features_we_lack_are_refused(kwargs, match):
    theirs = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, **kwargs)
    with pytest.raises(ValueError, match=match):
        from_timm(theirs)


def test_wrong_source_models_are_refused():
    from torchvision.models.vision_transformer import VisionTransformer
    with pytest.raises(ValueError, match="timm_model must be a timm VisionTransformer, got Linear"):
        from_timm(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="tv_model must be a torchvision VisionTransformer"):
        from_torchvision(timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1))
    tv = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16,
                           mlp_dim=32, representation_size=8)
    with pytest.raises(ValueError, match="pre-logits"):
        from_torchvision(tv)


# ---- FLOPs ----------------------------------------------------------------------------------
def analytic_vit_flops(c) -> int:
    """2 FLOPs per multiply-add: patch projection, per block qkv + attention + proj + MLP, head."""
    h = w = c.image_size
    n = (h // c.patch_size) * (w // c.patch_size)
    t = n + (1 if c.pool == "cls" else 0)
    d = c.dim
    patch = 2 * n * d * c.patch_size ** 2 * c.in_channels
    block = 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * c.mlp_dim
    return patch + c.depth * block + 2 * d * c.num_classes


@pytest.mark.parametrize("name", ["vit_ti_16", "vit_b_16", "vit_h_14", "d2l_vit", "vit_fmnist"])
def test_flops_match_the_formula_on_both_attention_paths(name):
    with torch.device("meta"):
        model = vitcourse.create_model(name)
    expected = analytic_vit_flops(model.config)
    assert count_flops(model.set_attn_impl("explicit")) == expected
    assert count_flops(model.set_attn_impl("fused")) == expected


def test_flops_known_values_and_breakdown():
    with torch.device("meta"):
        model = vitcourse.create_model("vit_b_16")
    flops = count_flops(model)
    assert 35.0e9 < flops < 35.2e9  # 17.6 G multiply-adds, the number DeiT's table lists
    by_op = flop_counts(model)
    assert sum(by_op.values()) == flops and by_op["aten.convolution"] == 2 * 196 * 768 * 768


def test_flops_at_another_image_size_and_mode_is_restored():
    model = vitcourse.create_model("vit_fmnist").train()
    f28 = count_flops(model)
    assert model.training
    bigger = vitcourse.create_model("vit_fmnist", image_size=56)
    assert count_flops(bigger) > 4 * f28 - 10**6  # 4x the tokens: at least 4x the work


def test_flops_bad_input():
    with pytest.raises(ValueError, match="model must be an nn.Module"):
        count_flops("vit_b_16")
    with pytest.raises(ValueError, match="image_size is None"):
        count_flops(nn.Sequential(nn.Conv2d(1, 2, 3)))
    assert count_flops(nn.Sequential(nn.Conv2d(1, 2, 3, bias=False)), image_size=5) == 2 * 9 * 2 * 9
