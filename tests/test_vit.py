"""The ViT: config validation, presets, parameter counts, forward/backward, equivariance."""
import dataclasses

import pytest
import torch

import vitcourse
from vitcourse.models.vit import PRESETS, ViT, ViTConfig

PAPER_COUNTS = {  # at 224x224, 3 channels, 1000 classes (timm and torchvision agree)
    "vit_ti_16": 5_717_416,
    "vit_s_16": 22_050_664,
    "vit_b_16": 86_567_656,
    "vit_l_16": 304_326_632,
    "vit_h_14": 632_045_800,
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def tiny(**kw):
    base = dict(image_size=16, patch_size=4, in_channels=2, num_classes=5, dim=16, depth=2,
                heads=2, mlp_dim=32)
    base.update(kw)
    return ViT(ViTConfig(**base))


@pytest.mark.parametrize("name, count", PAPER_COUNTS.items())
def test_paper_parameter_counts(name, count):
    with torch.device("meta"):  # no memory: vit_h_14 is 2.5 GB in fp32
        model = vitcourse.create_model(name)
    assert n_params(model) == count


@pytest.mark.parametrize("ours, timm_name", [("vit_ti_16", "vit_tiny_patch16_224"),
                                             ("vit_s_16", "vit_small_patch16_224"),
                                             ("vit_b_16", "vit_base_patch16_224"),
                                             ("vit_l_16", "vit_large_patch16_224"),
                                             ("vit_h_14", "vit_huge_patch14_224")])
def test_parameter_counts_equal_timm_at_other_class_counts(ours, timm_name):
    import timm  # a test dependency: missing, this fails rather than skips
    with torch.device("meta"):
        theirs = timm.create_model(timm_name, pretrained=False, num_classes=37)
        mine = vitcourse.create_model(ours, num_classes=37)
    assert n_params(mine) == n_params(theirs)


@pytest.mark.parametrize("name", ["vit_b_16", "vit_l_16", "vit_h_14"])
def test_parameter_counts_equal_torchvision(name):
    import torchvision
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)(weights=None)
        mine = vitcourse.create_model(name)
    assert n_params(mine) == n_params(theirs)


@pytest.mark.parametrize("name", [n for n in PRESETS if n not in PAPER_COUNTS])
def test_small_presets_forward_and_backward(name):
    torch.manual_seed(0)
    model = PRESETS[name]()
    c = model.config
    h, w = (c.image_size, c.image_size) if isinstance(c.image_size, int) else c.image_size
    x = torch.randn(2, c.in_channels, h, w)
    out = model(x)
    assert out.shape == (2, c.num_classes)
    out.logsumexp(-1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(PAPER_COUNTS))
def test_paper_presets_forward_and_backward_at_small_size(name):
    # The real depth and width at a smaller image and fewer blocks, to keep the test fast.
    torch.manual_seed(0)
    p = 14 if name == "vit_h_14" else 16
    model = PRESETS[name](image_size=2 * p, depth=1, num_classes=3)
    x = torch.randn(1, 3, 2 * p, 2 * p)
    out = model(x)
    out.sum().backward()
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    assert all(torch.isfinite(q.grad).all() for q in model.parameters())


def test_vit_ti_16_full_size_forward_and_backward():
    torch.manual_seed(0)
    model = vitcourse.create_model("vit_ti_16")
    out = model(torch.randn(1, 3, 224, 224))
    out.logsumexp(-1).sum().backward()
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert all(torch.isfinite(q.grad).all() for q in model.parameters())


def test_presets_are_listed_and_builders_accept_overrides():
    names = vitcourse.list_models()
    for n in ["vit_ti_16", "vit_s_16", "vit_b_16", "vit_l_16", "vit_h_14", "d2l_vit", "vit_fmnist"]:
        assert n in names
    model = vitcourse.create_model("ViT-B/16", num_classes=10, depth=1)
    assert model.config.num_classes == 10 and len(model.blocks) == 1 and model.config.dim == 768
    from vitcourse.models.vit import vit_fmnist
    assert vit_fmnist(pool="cls").cls_token is not None
    # the lowercase builders, also at the package's top level, build what create_model builds
    for n in ["vit_ti_16", "vit_s_16", "vit_b_16", "vit_l_16", "vit_h_14", "d2l_vit", "vit_fmnist"]:
        assert getattr(vitcourse, n)(depth=1).config == vitcourse.create_model(n, depth=1).config


def test_d2l_preset_matches_the_book():
    c = vitcourse.create_model("d2l_vit").config
    assert (c.image_size, c.patch_size, c.in_channels, c.dim, c.mlp_dim, c.heads, c.depth) == \
        (96, 16, 1, 512, 2048, 8, 2)
    assert c.dropout == 0.1 and c.num_classes == 10


def test_vit_fmnist_matches_facts_recipe():
    model = vitcourse.create_model("vit_fmnist")
    c = model.config
    assert (c.image_size, c.patch_size, c.in_channels, c.num_classes, c.dim, c.depth, c.heads,
            c.mlp_dim, c.pool, c.dropout) == (28, 7, 1, 10, 128, 6, 2, 256, "mean", 0.0)
    assert model.cls_token is None and model.num_prefix_tokens == 0
    assert model.pos_embed.shape == (1, 16, 128)
    assert 0.7e6 < n_params(model) < 0.9e6


def test_structure_and_shapes():
    model = tiny()
    assert model.grid_size == (4, 4) and model.num_prefix_tokens == 1
    assert model.cls_token.shape == (1, 1, 16) and model.pos_embed.shape == (1, 17, 16)
    assert isinstance(model.blocks, torch.nn.ModuleList) and len(model.blocks) == 2
    x = torch.randn(3, 2, 16, 16)
    feats = model.forward_features(x)
    assert feats.shape == (3, 17, 16)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    # forward_features ends with the final LayerNorm: each token is normalised
    torch.testing.assert_close(feats.mean(-1), torch.zeros(3, 17), atol=1e-5, rtol=0)


def test_mean_pooling_and_headless_model():
    model = tiny(pool="mean", num_classes=0).eval()
    x = torch.randn(2, 2, 16, 16)
    assert model.cls_token is None and model.pos_embed.shape == (1, 16, 16)
    torch.testing.assert_close(model(x), model.forward_features(x).mean(1))


def test_sincos_position_embedding_is_a_fixed_buffer():
    model = tiny(pos_embed="sincos")
    names = {n for n, _ in model.named_parameters()}
    assert "pos_embed" not in names and "pos_embed" in model.state_dict()
    assert model.pos_embed.shape == (1, 17, 16)


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_fused_and_explicit_models_agree(impl):
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(2, 2, 16, 16)
    ref = model.set_attn_impl("explicit")(x)
    out = model.set_attn_impl(impl)(x)
    assert model.config.attn_impl == impl
    assert all(b.attn.fused == (impl == "fused") for b in model.blocks)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_auto_uses_explicit_path_on_cpu_so_hooks_see_attention():
    model = tiny(attn_impl="auto").eval()
    maps = []
    for block in model.blocks:
        block.attn.probe.register_forward_hook(lambda m, i, o: maps.append(o))
    model(torch.randn(1, 2, 16, 16))
    assert len(maps) == 2 and maps[0].shape == (1, 2, 17, 17)
    maps.clear()
    model.set_attn_impl("fused")(torch.randn(1, 2, 16, 16))
    assert maps == []


def test_without_position_embeddings_the_model_ignores_patch_order():
    torch.manual_seed(0)
    model = tiny(pos_embed="none", pool="mean").eval()
    x = torch.randn(2, 2, 16, 16)
    tokens = model.patch_embed(x)
    perm = torch.randperm(tokens.shape[1])
    # permuting the patches permutes the output tokens the same way (equivariance) ...
    feats = model.forward_features(x)
    from vitcourse.layers.patches import patchify, unpatchify
    shuffled = unpatchify(patchify(x, 4)[:, perm], 4, 16)
    torch.testing.assert_close(model.forward_features(shuffled), feats[:, perm], rtol=1e-5, atol=1e-5)
    # ... so the pooled prediction does not change at all (invariance)
    torch.testing.assert_close(model(shuffled), model(x), rtol=1e-5, atol=1e-5)
    # with learned position embeddings it does change
    model_pe = tiny(pos_embed="learned", pool="mean").eval()
    assert not torch.allclose(model_pe(shuffled), model_pe(x), atol=1e-4)


def test_set_image_size_resamples_position_embeddings():
    torch.manual_seed(0)
    model = tiny().eval()
    old = model.pos_embed.detach().clone()
    x = torch.randn(1, 2, 16, 16)
    before = model(x)
    model.set_image_size(16)  # same grid: nothing changes
    torch.testing.assert_close(model(x), before)
    assert torch.equal(model.pos_embed, old)
    model.set_image_size(24)
    assert model.grid_size == (6, 6) and model.pos_embed.shape == (1, 37, 16)
    assert model(torch.randn(1, 2, 24, 24)).shape == (1, 5)
    assert torch.equal(model.pos_embed[:, :1], old[:, :1])
    with pytest.raises(ValueError, match="image size"):
        model(x)


def test_dropout_is_off_in_eval_mode():
    model = tiny(dropout=0.3, attn_dropout=0.3)
    x = torch.randn(2, 2, 16, 16)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_config_round_trips_through_a_dict():
    c = ViTConfig(image_size=(32, 48), patch_size=8, dim=64, heads=4, depth=1, mlp_dim=128)
    assert ViTConfig(**c.to_dict()) == c
    assert ViT(c).grid_size == (4, 6)


# ---- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=30, patch_size=16), r"image_size=30 must be divisible by patch_size=16"),
    (dict(dim=100, heads=12), r"dim=100 must be divisible by heads=12"),
    (dict(pool="max"), r"pool must be one of \('cls', 'mean'\), got 'max'"),
    (dict(pos_embed="rope"), "pos_embed must be one of"),
    (dict(attn_impl="flash"), "attn_impl must be one of"),
    (dict(depth=0), "depth must be a positive int, got 0"),
    (dict(dropout=1.0), "dropout must be a float in"),
    (dict(num_classes=-1), "num_classes"),
    (dict(pos_embed="sincos", dim=66, heads=2), "divisible by 4"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViTConfig(**kwargs)


def test_unknown_preset_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown model name 'vit_z_99'.*vit_b_16.*vit_fmnist"):
        vitcourse.create_model("vit_z_99")


def test_unknown_override_lists_fields():
    with pytest.raises(ValueError, match=r"unknown ViTConfig field.*'hidden'.*known fields"):
        vitcourse.create_model("vit_fmnist", hidden=3)


@pytest.mark.parametrize("x, match", [
    (torch.randn(2, 16, 16), r"4D tensor.*\(2, 16, 16\).*batch dimension"),
    (torch.randn(2, 3, 16, 16), r"3 channels.*in_channels=2"),
    (torch.randn(2, 2, 28, 28), r"image size \(28, 28\).*image_size=\(16, 16\)"),
    (torch.zeros(2, 2, 16, 16, dtype=torch.uint8), "floating-point"),
    ([[1.0]], "must be a tensor"),
])
def test_bad_forward_input_raises_before_torch(x, match):
    with pytest.raises(ValueError, match=match):
        tiny()(x)


def test_set_attn_impl_rejects_unknown():
    with pytest.raises(ValueError, match="impl must be one of"):
        tiny().set_attn_impl("sdpa")


def test_config_is_a_dataclass_with_documented_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(ViTConfig)}
    assert fields["norm_eps"] == 1e-6 and fields["attn_impl"] == "auto" and fields["pool"] == "cls"


# ---- D2L chapter 11.8 ------------------------------------------------------------------------
def d2l_chapter_vit():
    """D2L 11.8's ViT as the book writes and calls it, ViT(96, 16, 512, 2048, 8, 2, 0.1, 0.1), on
    d2l's own MultiHeadAttention (vitcourse.models.d2l_vit holds the book's classes)."""
    from vitcourse.models.d2l_vit import build_d2l_vit

    return build_d2l_vit()


def test_d2l_preset_is_d2l_chapter_model():
    torch.manual_seed(0)
    theirs = d2l_chapter_vit().eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ours = vitcourse.create_model("d2l_vit").eval()
    assert n_params(ours) == n_params(theirs) == 6_457_866
    t = theirs.state_dict()
    mapped = {"patch_embed.proj.weight": t["patch_embedding.conv.weight"],
              "patch_embed.proj.bias": t["patch_embedding.conv.bias"],
              "cls_token": t["cls_token"], "pos_embed": t["pos_embedding"],
              "norm.weight": t["head.0.weight"], "norm.bias": t["head.0.bias"],
              "head.weight": t["head.1.weight"], "head.bias": t["head.1.bias"]}
    for i in range(2):
        b = f"blks.{i}."
        mapped.update({
            f"blocks.{i}.norm1.weight": t[b + "ln1.weight"], f"blocks.{i}.norm1.bias": t[b + "ln1.bias"],
            f"blocks.{i}.norm2.weight": t[b + "ln2.weight"], f"blocks.{i}.norm2.bias": t[b + "ln2.bias"],
            f"blocks.{i}.attn.qkv.weight": torch.cat([t[b + f"attention.W_{w}.weight"] for w in "qkv"]),
            f"blocks.{i}.attn.proj.weight": t[b + "attention.W_o.weight"],
            f"blocks.{i}.mlp.fc1.weight": t[b + "mlp.dense1.weight"], f"blocks.{i}.mlp.fc1.bias": t[b + "mlp.dense1.bias"],
            f"blocks.{i}.mlp.fc2.weight": t[b + "mlp.dense2.weight"], f"blocks.{i}.mlp.fc2.bias": t[b + "mlp.dense2.bias"],
        })
    ours.load_state_dict(mapped, strict=True)
    x = torch.randn(3, 1, 96, 96)
    with torch.no_grad():
        expected = theirs(x)
        for impl in ("fused", "explicit"):
            torch.testing.assert_close(ours.set_attn_impl(impl)(x), expected, rtol=0, atol=1e-5)
