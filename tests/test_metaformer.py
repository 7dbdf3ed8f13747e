"""MetaFormer (vitcourse.models.metaformer): PoolFormer and MLP-Mixer against timm (parameter counts,
logits with mapped random weights), the Fashion-MNIST presets one argument apart at matched size,
vit_fmnist as the attention case, config checks, checkpoints and a training run."""
import pytest
import torch
import torch.nn as nn

import timm  # a test dependency (pyproject's [test] extra): missing, the suite fails, never skips
from timm.models.metaformer import MetaFormer as TimmMetaFormer
from timm.models.mlp_mixer import MlpMixer

from vitcourse.analysis import capture_attention
from vitcourse.data import load_data
from vitcourse.models import create_model, list_models
from vitcourse.models.metaformer import PRESETS, MetaFormer, MetaFormerConfig, hybrid
from vitcourse.models.metaformer_weights import from_timm_mixer, from_timm_poolformer, metaformer_from_timm
from vitcourse.training.checkpoint import build_from_spec, model_spec
from vitcourse.training.loop import TrainConfig, fit

VIT_FMNIST_PARAMS = 804_874
FMNIST = [n for n in PRESETS if n.startswith("metaformer_fmnist")]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random: weights jittered, and every 1-D tensor (norm weights and biases,
    conv and linear biases, layer scales) drawn afresh around 0 with spread 0.5, so a swapped norm,
    a dropped bias or a layer scale still at 1e-5 (a block that adds nothing) shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim <= 1:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model


def images(n, c=3, size=224, seed=1):
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def max_logit_diff(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == expected.shape
    assert expected.abs().max() > 0.1  # not a comparison of near-zero outputs
    return (got - expected).abs().max().item()


def poolformer_timm(depths, dims, num_classes=1000, in_chans=3, **kwargs) -> nn.Module:
    """timm's MetaFormer with poolformer_s12's arguments but other depths and widths (timm's
    `poolformer_s12(depths=...)` passes `depths` twice); `kwargs` change more of them."""
    args = dict(downsample_norm=None, mlp_act=nn.GELU, mlp_bias=True, norm_layers=timm.layers.GroupNorm1,
                layer_scale_init_values=1e-5, res_scale_init_values=None, use_mlp_head=False)
    return TimmMetaFormer(in_chans=in_chans, num_classes=num_classes, depths=depths, dims=dims,
                          **{**args, **kwargs})


# ------------------------------------------------------------------ against timm

@pytest.mark.parametrize("ours, theirs, count", [
    ("poolformer_s12", "poolformer_s12", 11_915_176), ("poolformer_s24", "poolformer_s24", 21_388_968),
    ("poolformer_s36", "poolformer_s36", 30_862_760), ("mixer_s16", "mixer_s16_224", 18_528_264),
    ("mixer_b16", "mixer_b16_224", 59_880_472)])
def test_full_size_parameter_counts_equal_timms(ours, theirs, count):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model, reference = create_model(ours), timm.create_model(theirs, pretrained=False)
    assert n_params(model) == n_params(reference) == count


@pytest.mark.slow
@pytest.mark.parametrize("theirs, ours", [("poolformer_s12", "poolformer_s12"), ("mixer_s16_224", "mixer_s16")])
def test_full_size_logits_equal_timms_with_mapped_random_weights(theirs, ours):
    reference = randomise_(timm.create_model(theirs, pretrained=False)).eval()
    model = metaformer_from_timm(reference)
    assert not model.training
    with torch.device("meta"):
        assert model.config == create_model(ours).config  # the preset is the architecture timm builds
    assert max_logit_diff(model, reference, images(2)) < 1e-4


def test_small_poolformer_logits_equal_timms_other_depths_classes_channels_and_size():
    reference = randomise_(poolformer_timm([1, 1, 2, 1], [16, 24, 32, 40], num_classes=7, in_chans=1))
    model = from_timm_poolformer(reference.eval(), image_size=64)
    c = model.config
    assert (c.depths, c.dims, c.num_classes, c.in_channels, c.image_size) == \
        ((1, 1, 2, 1), (16, 24, 32, 40), 7, 1, 64)
    assert model.grid_size == (16, 16) and c.grid_sizes == ((16, 16), (8, 8), (4, 4), (2, 2))
    assert max_logit_diff(model, reference, images(2, c=1, size=64)) < 1e-4


def test_small_mixer_logits_equal_timms_and_training_mode_is_kept():
    reference = randomise_(MlpMixer(num_classes=5, img_size=64, in_chans=1, patch_size=8, num_blocks=2,
                                    embed_dim=32))
    model = from_timm_mixer(reference)
    assert model.training  # the same mode as the source
    c = model.config
    assert (c.image_size, c.patch_size, c.depths, c.dims, c.mixer, c.num_classes) == (64, 8, (2,), (32,), "mlp", 5)
    assert model.blocks[0].token_mixer.fc1.in_features == 64  # 8x8 tokens
    reference.eval(), model.eval()
    assert max_logit_diff(model, reference, images(3, c=1, size=64)) < 1e-4


def test_converters_reject_what_they_do_not_map():
    from timm.models.metaformer import GroupNorm1NoBias, SepConv

    small = dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32])
    with torch.device("meta"):
        rejected = {
            "a norm in the stem": timm.create_model("poolformerv2_s12", pretrained=False),
            "token mixer SepConv": poolformer_timm(**small, token_mixers=SepConv),
            "GroupNorm with 1 group and a bias": poolformer_timm(**small, norm_layers=GroupNorm1NoBias),
            "res scale": poolformer_timm(**small, res_scale_init_values=1.0),
            "head MlpHead .vitcourse.s head is one Linear": poolformer_timm(**small, use_mlp_head=True),
            "downsampling Identity before stage 1": poolformer_timm([1, 1], [8, 8]),
            "ResBlock blocks": timm.create_model("resmlp_12_224", pretrained=False),
            "a norm in the stem .stem_norm=True.": MlpMixer(img_size=32, patch_size=8, num_blocks=1,
                                                           embed_dim=8, stem_norm=True),
        }
        deep = poolformer_timm(**small)
        vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    for what, model in rejected.items():
        with pytest.raises(ValueError, match=f"timm model uses .*{what}.*, which vitcourse.MetaFormer does not"):
            metaformer_from_timm(model)
    deep.stages[1].blocks[0].drop_path1 = timm.layers.DropPath(0.1)
    with pytest.raises(ValueError, match="stochastic depth"):
        metaformer_from_timm(deep)
    with pytest.raises(ValueError, match="must be a timm MetaFormer .PoolFormer. or MlpMixer, got VisionTransformer"):
        metaformer_from_timm(vit)


# ------------------------------------------------------------------ the Fashion-MNIST presets

def test_attention_preset_is_vit_fmnist_parameter_for_parameter():
    torch.manual_seed(0)
    vit = randomise_(create_model("vit_fmnist")).eval()
    model = create_model("metaformer_fmnist_attention").eval()
    assert n_params(model) == n_params(vit) == VIT_FMNIST_PARAMS
    # the same tensors under MetaFormer's names: blocks.i.attn -> stages.0.blocks.i.token_mixer
    state = {k.replace("blocks.", "stages.0.blocks.").replace(".attn.", ".token_mixer."): v
             for k, v in vit.state_dict().items()}
    model.load_state_dict(state, strict=True)
    x = images(4, c=1, size=28)
    with torch.no_grad():
        expected = vit(x)
        for impl in ("explicit", "fused"):
            torch.testing.assert_close(model.set_attn_impl(impl)(x), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", FMNIST)
@pytest.mark.parametrize("norm", ["layernorm", "batchnorm", "bn_ffn"])
def test_fmnist_presets_are_within_ten_percent_of_vit_fmnist_and_give_ten_logits(name, norm):
    model = create_model(name, norm=norm).eval()
    count = n_params(model)
    assert abs(count - VIT_FMNIST_PARAMS) <= 0.10 * VIT_FMNIST_PARAMS, count
    assert model(images(3, c=1, size=28)).shape == (3, 10)
    c = model.config
    # one argument apart: the stem, width, depth, position embedding and head are vit_fmnist's
    assert (c.image_size, c.patch_size, c.dims, c.depths, c.pos_embed, c.num_classes) == \
        (28, 7, (128,), (6,), "learned", 10)


def test_fmnist_parameter_counts_are_the_documented_ones():
    counts = {n: n_params(create_model(n)) for n in FMNIST}
    assert counts == {"metaformer_fmnist_attention": 804_874, "metaformer_fmnist_pooling": 803_338,
                      "metaformer_fmnist_mlp": 816_106, "metaformer_fmnist_identity": 803_338,
                      "metaformer_fmnist_dwconv": 811_018, "metaformer_fmnist_hybrid": 804_106}
    # with equal widths instead (mlp_ratio 2, as vit_fmnist), pooling has 6 x 66,048 fewer
    assert n_params(create_model("metaformer_fmnist_pooling", mlp_ratio=2.0)) == 804_874 - 6 * 66_048


def test_hybrid_pools_in_the_first_half_and_attends_in_the_second():
    model = create_model("metaformer_fmnist_hybrid")
    assert model.config.mixers == hybrid(6) == ("pooling",) * 3 + ("attention",) * 3
    assert [b.attn is not None for b in model.blocks] == [False] * 3 + [True] * 3
    maps = capture_attention(model, images(2, c=1, size=28))
    assert len(maps) == 3 and maps[0].shape == (2, 2, 16, 16)  # only the attention blocks have maps
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 2, 16))


def test_registered_with_create_model_and_listed():
    names = list_models()
    for name in PRESETS:
        assert name in names
    assert isinstance(create_model("metaformer_fmnist_pooling"), MetaFormer)
    assert isinstance(create_model("PoolFormer-S12", num_classes=10, depths=(1, 1, 1, 1)), MetaFormer)


def test_batchnorm_model_in_eval_mode_treats_each_image_alone():
    model = randomise_(create_model("metaformer_fmnist_pooling", norm="bn_ffn")).eval()
    x = images(4, c=1, size=28)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:1]), model(x)[:1])


def test_checkpoint_spec_rebuilds_the_model_config():
    model = create_model("metaformer_fmnist_hybrid", norm="batchnorm")
    spec = model_spec(model)
    assert spec["class"] == "vitcourse.models.metaformer.MetaFormer"
    rebuilt = build_from_spec(spec)
    assert rebuilt.config == model.config
    assert MetaFormerConfig(**model.config.to_dict()) == model.config


def test_one_epoch_of_fit_on_a_tiny_subset():
    torch.manual_seed(0)
    data = load_data(train_size=256, test_size=128)
    model = create_model("metaformer_fmnist_pooling", norm="bn_ffn")
    result = fit(model, data, TrainConfig(epochs=1, batch_size=64), progress=False)
    assert len(result.history) == 1
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    assert 0.0 <= result.test_accuracy <= 1.0


# ------------------------------------------------------------------ bad arguments

@pytest.mark.parametrize("overrides, message", [
    (dict(mixer="poolling"), r"mixer must be one of \(.*'pooling'.*\) or a list of one per block, got 'poolling'"),
    (dict(mixer=("pooling",) * 5),
     r"mixer as a list needs one entry per block: expected 6 \(sum of depths=\(6,\)\), got 5"),
    (dict(mixer=("pooling",) * 5 + ("conv",)), r"every mixer must be one of .* got 'conv'"),
    (dict(norm="rmsnorm"), r"norm must be one of \(.*'bn_ffn'\), got 'rmsnorm'"),
    (dict(heads=3), r"dims\[0\]=128, which must be divisible by heads=3"),
    (dict(patch_size=5), r"image_size=28 must be divisible by patch_size=5"),
    (dict(depths=(2, 2), dims=(64,)), r"depths and dims need one entry per stage"),
    (dict(pos_embed="sincos"), r"pos_embed must be one of \('learned', 'none'\), got 'sincos'"),
    (dict(dropout=1.0), r"dropout must be a float in \[0, 1\), got 1.0"),
    (dict(layer_scale_init=0.0), r"layer_scale_init must be None or a positive float, got 0.0"),
    (dict(num_classes=-1), r"num_classes must be an int >= 0, got -1"),
])
def test_config_rejects_bad_values_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        MetaFormerConfig(**overrides)


def test_heads_need_to_divide_only_the_widths_of_stages_that_attend():
    MetaFormerConfig(dims=(127,), mixer="pooling")  # no attention: any width
    with pytest.raises(ValueError, match="unknown MetaFormerConfig field"):
        create_model("metaformer_fmnist_pooling", mixers="pooling")


def test_model_rejects_uint8_images_and_the_wrong_size():
    model = create_model("metaformer_fmnist_identity")
    with pytest.raises(ValueError, match="float tensor of images"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="image_size"):
        model(torch.zeros(2, 1, 32, 32))
    with torch.device("meta"):
        poolformer = create_model("poolformer_s12")
    with pytest.raises(ValueError, match=r"StridedConv was built for \(B, 3, 224, 224\) inputs"):
        poolformer(torch.zeros(1, 3, 192, 192, device="meta"))
