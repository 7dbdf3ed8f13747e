"""Chapter 13's small-data ViTs: the layers (conv stems, SPT, LSA, sequence pooling, stochastic
depth) checked by their properties, CCT and SmallDataViT by exact parameter counts, shapes, the
distilled model's output contract, argument checks and the package layout."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from test_layout import PACKAGE, imported_modules

import vitcourse
from vitcourse.analysis import capture_attention
from vitcourse.layers.attention import MultiHeadSelfAttention, scaled_dot_product_attention
from vitcourse.layers.blocks import EncoderBlock
from vitcourse.layers.conv_stem import CCTTokenizer, ConvStem
from vitcourse.layers.drop_path import DropPath, drop_path, drop_path_rates
from vitcourse.layers.lsa import LocalitySelfAttention, diagonal_mask, locality_attention_weights
from vitcourse.layers.sequence_pool import SeqPool, sequence_pool
from vitcourse.layers.spt import ShiftedPatchTokenization, shifted_images
from vitcourse.models import create_model, list_models
from vitcourse.models.cct import PRESETS as CCT_PRESETS, CCT, CCTConfig
from vitcourse.models.small_data_vit import PRESETS as SD_PRESETS, SmallDataViT, SmallDataViTConfig
from vitcourse.models.vit import ViT, ViTConfig
from vitcourse.training.checkpoint import build_from_spec, load_model, model_spec

VIT_FMNIST_P4_PARAMS = 804_874  # = vit_fmnist's too: patch 4 costs 4,224 more in the embedding, 4,224 less in E_pos
PARAMS = {
    "cct_7_3x1_32": 3_760_139,  # the paper's 3.76M, as its code builds it (learned position embedding)
    "cct_fmnist": 874_827,
    "cct_fmnist_s": 479_051,
    "vit_convstem_fmnist": 893_898,
    # the 0.63M stem + 4-block probe of FACTS.md (630,634) plus the 1x1 projection to D (128 * 128 + 128)
    "vit_convstem_s_fmnist": 630_634 + 16_512,
    "vit_hybrid_fmnist": 887_658,
    "vit_spt_lsa_fmnist": 813_238,
    "deit_convstem_fmnist": 895_700,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny_vit(**kw) -> SmallDataViT:
    base = dict(image_size=8, in_channels=1, num_classes=3, patch_size=2, dim=8, depth=2, heads=2, mlp_dim=16,
                conv_channels=(4, 8), resnet_widths=(4, 8))
    return SmallDataViT(SmallDataViTConfig(**{**base, **kw}))


def tiny_cct(**kw) -> CCT:
    base = dict(image_size=8, in_channels=1, num_classes=3, dim=8, depth=2, heads=2, n_conv_layers=2,
                hidden_channels=4)
    return CCT(CCTConfig(**{**base, **kw}))


# ------------------------------------------------------------------ DropPath

def test_drop_path_is_the_identity_in_eval_mode_and_at_rate_zero():
    x = torch.randn(4, 3, 5)
    assert DropPath(0.5).eval()(x) is x
    assert DropPath(0.0).train()(x) is x
    assert drop_path(x, 0.5, training=False) is x


def test_drop_path_drops_whole_samples_and_scales_the_kept_ones():
    torch.manual_seed(0)
    x = torch.randn(64, 7, 5)
    out = DropPath(0.25).train()(x)
    dropped = (out == 0).flatten(1).all(dim=1)  # (B,): one decision per sample
    kept = ~dropped
    assert 0 < dropped.sum() < 64
    torch.testing.assert_close(out[kept], x[kept] / 0.75)
    assert ((out == 0).flatten(1).any(dim=1) == dropped).all()  # never a partial mask


def test_drop_path_preserves_the_mean_in_training():
    torch.manual_seed(0)
    out = drop_path(torch.ones(40_000, 2), 0.3, training=True)
    assert abs(out.mean().item() - 1.0) < 0.02  # std of the mean ≈ sqrt(0.3/0.7)/200 ≈ 0.003
    assert out.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]


def test_drop_path_rates_grow_linearly_from_zero():
    assert drop_path_rates(4, 0.3) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert drop_path_rates(1, 0.3) == [0.0]
    assert drop_path_rates(3, 0.0) == [0.0, 0.0, 0.0]


def test_encoder_block_defaults_leave_state_dict_and_output_unchanged():
    torch.manual_seed(0)
    block = EncoderBlock(8, 2, 16).eval()
    keys = {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
            "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"}
    assert set(block.state_dict()) == keys
    with_path = EncoderBlock(8, 2, 16, drop_path=0.5).eval()
    assert set(with_path.state_dict()) == keys  # stochastic depth has no parameters
    with_path.load_state_dict(block.state_dict())
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(with_path(x), block(x))  # identity in eval mode


@pytest.mark.results
def test_vit_checkpoint_spec_and_shipped_weights_are_unchanged():
    model = vitcourse.create_model("vit_fmnist")
    assert not any("drop_path" in k or "temperature" in k for k in model.state_dict())
    assert set(model_spec(model)["config"]) == {f for f in ViTConfig.__dataclass_fields__}
    assert "drop_path_rate" not in ViTConfig.__dataclass_fields__
    shipped = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "vit_fmnist.pt"
    if shipped.is_file():  # strict load: any new parameter or buffer in the block would fail here
        assert isinstance(load_model(shipped), ViT)


# ------------------------------------------------------------------ sequence pooling

def test_seq_pool_weights_are_a_distribution_over_tokens():
    torch.manual_seed(0)
    pool = SeqPool(6)
    x = torch.randn(3, 5, 6)
    w = pool.weights(x)
    assert w.shape == (3, 5) and (w > 0).all()
    torch.testing.assert_close(w.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(pool(x), torch.einsum("bn,bnd->bd", w, x))


def test_seq_pool_of_a_constant_sequence_is_that_token():
    torch.manual_seed(0)
    pool = SeqPool(6)
    token = torch.randn(2, 1, 6)
    torch.testing.assert_close(pool(token.expand(2, 9, 6)), token[:, 0])


def test_sequence_pool_with_equal_scores_is_the_mean():
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(sequence_pool(x, torch.zeros(2, 4)), x.mean(dim=1))
    torch.testing.assert_close(sequence_pool(x, torch.zeros(2, 4, 1)), x.mean(dim=1))


# ------------------------------------------------------------------ shifted patch tokenization

def test_shifted_images_centre_copy_is_the_input_and_each_copy_moves_by_the_shift():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 10)
    s = 2
    out = shifted_images(x, s)
    assert out.shape == (2, 15, 8, 10)
    centre, lu, ru, ld, rd = out.split(3, dim=1)
    assert torch.equal(centre, x)
    # left-up: out[i, j] = x[i + s, j + s]; right-up: x[i + s, j - s]; left-down: x[i - s, j + s]; ...
    assert torch.equal(lu[..., :-s, :-s], x[..., s:, s:])
    assert torch.equal(ru[..., :-s, s:], x[..., s:, :-s])
    assert torch.equal(ld[..., s:, :-s], x[..., :-s, s:])
    assert torch.equal(rd[..., s:, s:], x[..., :-s, :-s])
    # what came in from outside the image is the fill value
    for copy, rows, cols in ((lu, slice(-s, None), slice(-s, None)), (rd, slice(0, s), slice(0, s)),
                             (ru, slice(-s, None), slice(0, s)), (ld, slice(0, s), slice(-s, None))):
        assert (copy[..., rows, :] == 0).all() and (copy[..., :, cols] == 0).all()


def test_shifted_images_pads_with_the_fill_value():
    out = shifted_images(torch.ones(1, 1, 4, 4), 1, fill=-0.5)
    assert out[0, 1, -1, 0] == -0.5 and out[0, 1, 0, 0] == 1.0


def test_spt_tokens_have_the_patch_grid_and_see_their_neighbours():
    torch.manual_seed(0)
    spt = ShiftedPatchTokenization(8, 4, 2, 16)
    assert spt.shift == 2 and spt.grid_size == (2, 2) and spt.proj.in_features == 5 * 2 * 4 * 4
    assert spt(torch.randn(3, 2, 8, 8)).shape == (3, 4, 16)


# ------------------------------------------------------------------ locality self-attention

def test_diagonal_masks_bool_and_float_agree():
    b, f = diagonal_mask(4), diagonal_mask(4, dtype=torch.float32)
    assert b.dtype == torch.bool and not b.diagonal().any() and b.sum() == 12
    assert torch.isneginf(f.diagonal()).all() and (f[b] == 0).all()


def lsa_and_input(seed=0, **kw):
    torch.manual_seed(seed)
    attn = LocalitySelfAttention(16, 4, **kw).eval()
    with torch.no_grad():
        attn.temperature.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0]))  # per-head, away from the init
    return attn, torch.randn(2, 7, 16)


def test_lsa_never_attends_to_the_diagonal_and_rows_sum_to_one():
    attn, x = lsa_and_input()
    seen = []
    attn.probe.register_forward_hook(lambda m, i, o: seen.append(o))
    attn(x, fused=False)
    (w,) = seen
    assert w.shape == (2, 4, 7, 7)
    assert (w.diagonal(dim1=-2, dim2=-1) == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 7))


@pytest.mark.parametrize("float_mask", [False, True])
def test_lsa_explicit_and_fused_paths_agree_in_values_and_gradients(float_mask):
    attn, x = lsa_and_input(float_mask=float_mask)
    outs, grads = [], []
    for fused in (False, True):
        attn.zero_grad()
        out = attn(x, fused=fused)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(attn.temperature.grad.clone())
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)
    assert (grads[0] != 0).all()  # the temperature learns on both paths


def test_lsa_at_init_is_standard_attention_with_the_diagonal_masked():
    torch.manual_seed(0)
    lsa = LocalitySelfAttention(8, 2).eval()
    assert torch.equal(lsa.temperature, torch.full((2,), 2.0))  # √(8/2)
    mhsa = MultiHeadSelfAttention(8, 2).eval()
    mhsa.load_state_dict({k: v for k, v in lsa.state_dict().items() if k != "temperature"})
    x = torch.randn(2, 5, 8)
    q, k, v = mhsa.qkv(x).view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    out, weights = scaled_dot_product_attention(q, k, v, mask=diagonal_mask(5))
    expected = mhsa.proj(out.transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(lsa(x, fused=False), expected)
    torch.testing.assert_close(locality_attention_weights(q, k, 2.0), weights)


def test_capture_attention_sees_lsa_maps_with_an_empty_diagonal():
    model = tiny_vit(lsa=True, pool="cls").eval()
    maps = capture_attention(model, torch.randn(2, 1, 8, 8))
    assert len(maps) == 2 and maps[0].shape == (2, 2, 17, 17)
    for m in maps:
        assert (m.diagonal(dim1=-2, dim2=-1) == 0).all()
    assert model.config.attn_impl == "auto"  # restored


# ------------------------------------------------------------------ convolutional stems

def test_conv_stem_makes_the_grid_its_strides_say():
    stem = ConvStem(28, 1, 16, channels=(4, 8, 8), strides=(2, 2, 1))
    assert stem.grid_size == (7, 7)
    assert stem(torch.randn(2, 1, 28, 28)).shape == (2, 49, 16)
    assert ConvStem((30, 20), 3, 8, channels=(4,), strides=(2,)).grid_size == (15, 10)


@pytest.mark.parametrize("size, layers, kernel", [(32, 1, 3), (28, 2, 3), (30, 2, 7), (17, 3, 3)])
def test_cct_tokenizer_reports_the_number_of_tokens_it_makes(size, layers, kernel):
    tok = CCTTokenizer(1, 8, n_conv_layers=layers, kernel_size=kernel, hidden_channels=4)
    out = tok(torch.randn(1, 1, size, size))
    assert out.shape == (1, tok.num_tokens(size), 8)
    gh, gw = tok.grid_size(size)
    assert gh * gw == out.shape[1]


# ------------------------------------------------------------------ models

@pytest.mark.parametrize("name, count", PARAMS.items())
def test_exact_parameter_counts(name, count):
    with torch.device("meta"):
        model = create_model(name)
    assert n_params(model) == count


def test_cct_7_3x1_parameters_break_down_as_the_paper_code():
    with torch.device("meta"):
        model = create_model("cct_7_3x1_32")
    assert model.grid_size == (16, 16)  # 3x3 conv, stride 1 -> 32x32, maxpool -> 16x16
    assert n_params(model.tokenizer) == 3 * 256 * 9  # no conv bias
    assert model.pos_embed.numel() == 256 * 256
    assert n_params(model.blocks) == 7 * 526_336  # qkv without bias, MLP 512
    assert n_params(model.pool) == 257 and n_params(model.head) == 2570
    assert n_params(model) - model.pos_embed.numel() == 3_694_603  # without the position embedding


def test_small_data_vit_with_every_switch_off_is_vit_fmnist_p4():
    torch.manual_seed(0)
    reference = vitcourse.create_model("vit_fmnist_p4").eval()
    model = SmallDataViT().eval()
    assert n_params(model) == n_params(reference) == VIT_FMNIST_P4_PARAMS
    model.load_state_dict(reference.state_dict())  # strict: the same names and shapes
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), reference(x))
    cls = SmallDataViT(SmallDataViTConfig(pool="cls"))
    assert n_params(cls) == n_params(vitcourse.create_model("vit_fmnist_p4", pool="cls"))


@pytest.mark.parametrize("name", list(CCT_PRESETS) + list(SD_PRESETS))
def test_every_preset_is_registered_and_runs_forward_and_backward(name):
    assert name in list_models()
    torch.manual_seed(0)
    overrides = {"depth": 1} if name == "cct_7_3x1_32" else {}  # the full width, one block: fast
    model = create_model(name, **overrides).eval()
    c = model.config
    x = torch.randn(2, c.in_channels, *model.image_size)
    if name != "cct_7_3x1_32":
        assert x.shape == (2, 1, 28, 28)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    model = create_model(name, depth=1).train()  # backward through every kind of layer, one block
    out = model(x)
    loss = sum(o.logsumexp(-1).sum() for o in (out if isinstance(out, tuple) else (out,)))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("kw", [dict(stem="patch"), dict(stem="conv"), dict(stem="resnet"),
                                dict(stem="patch", spt=True, lsa=True), dict(pool="seq"), dict(pool="cls"),
                                dict(distilled=True, pool="mean"), dict(stem="conv", image_size=(10, 6))])
def test_small_data_vit_token_counts_and_shapes(kw):
    model = tiny_vit(**kw).eval()
    c = model.config
    x = torch.randn(2, 1, *model.image_size)
    tokens = model.forward_features(x)
    assert tokens.shape == (2, c.num_prefix_tokens + c.num_patches, 8)
    assert model.patch_embed(x).shape == (2, c.num_patches, 8)  # config.grid_size is what the stem makes
    assert model(x).shape == (2, 3)
    assert model.forward_head(tokens, pre_logits=True).shape == (2, 8)


def test_distilled_model_returns_both_heads_in_train_and_their_mean_in_eval():
    torch.manual_seed(0)
    model = tiny_vit(distilled=True, pool="cls", stem="conv")
    assert model.num_prefix_tokens == 2 and model.head_dist is not None
    x = torch.randn(2, 1, 8, 8)
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == out[1].shape == (2, 3)
    model.eval()
    tokens = model.forward_features(x)
    cls_logits, dist_logits = model.head(tokens[:, 0]), model.head_dist(tokens[:, 1])
    assert not torch.allclose(cls_logits, dist_logits)  # two different heads on two tokens
    merged = model(x)
    assert isinstance(merged, torch.Tensor)
    torch.testing.assert_close(merged, (cls_logits + dist_logits) / 2)


@pytest.mark.parametrize("make", [lambda: tiny_vit(lsa=True, pool="seq"), lambda: tiny_vit(stem="resnet"),
                                  lambda: tiny_cct()])
def test_explicit_and_fused_attention_give_the_same_logits(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 1, 8, 8)
    explicit = model.set_attn_impl("explicit")(x)
    fused = model.set_attn_impl("fused")(x)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: tiny_vit(stem="resnet", distilled=True, pool="cls"), lambda: tiny_cct()])
def test_models_rebuild_from_their_checkpoint_spec(make):
    model = make()
    rebuilt = build_from_spec(model_spec(model))
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())


def test_lsa_model_has_one_temperature_per_head_per_block():
    model = tiny_vit(lsa=True)
    temps = [n for n, _ in model.named_parameters() if n.endswith("temperature")]
    assert temps == ["blocks.0.attn.temperature", "blocks.1.attn.temperature"]
    assert n_params(model) - n_params(tiny_vit()) == 2 * 2


def test_drop_path_rates_reach_the_blocks():
    model = tiny_vit(depth=3, drop_path_rate=0.2)
    assert [b.drop_path.p for b in model.blocks] == pytest.approx([0.0, 0.1, 0.2])


# ------------------------------------------------------------------ argument checks

BAD = [
    (lambda: SmallDataViTConfig(stem="vit"), "stem"),
    (lambda: SmallDataViTConfig(pool="max"), "pool"),
    (lambda: SmallDataViTConfig(stem="conv", spt=True), "spt"),
    (lambda: SmallDataViTConfig(distilled=True, num_classes=0), "distilled"),
    (lambda: SmallDataViTConfig(drop_path_rate=1.0), "drop_path_rate"),
    (lambda: SmallDataViTConfig(stem="conv", conv_channels=(8,), conv_strides=(2, 2)), "conv_channels"),
    (lambda: SmallDataViTConfig(stem="resnet", resnet_widths=(8,), resnet_depths=(1, 1)), "resnet_widths"),
    (lambda: SmallDataViTConfig(patch_size=5), "patch_size"),
    (lambda: SmallDataViTConfig(dim=100, heads=3), "heads"),
    (lambda: SmallDataViTConfig(lsa=1), "lsa"),
    (lambda: CCTConfig(n_conv_layers=0), "n_conv_layers"),
    (lambda: CCTConfig(image_size=2, conv_padding=0), "image_size"),
    (lambda: CCTConfig(pos_embed="sine"), "pos_embed"),
    (lambda: CCTConfig(mlp_ratio=0.0), "mlp_ratio"),
    (lambda: CCTConfig(attn_dropout=-0.1), "attn_dropout"),
    (lambda: create_model("cct_fmnist", depthh=2), "depthh"),
    (lambda: create_model("vit_spt_lsa_fmnist", spt=True, stem="resnet"), "spt"),
    (lambda: DropPath(1.0), "p"),
    (lambda: drop_path_rates(0, 0.1), "depth"),
    (lambda: drop_path_rates(3, 1.5), "max_rate"),
    (lambda: SeqPool(0), "dim"),
    (lambda: sequence_pool(torch.zeros(2, 3, 4), torch.zeros(2, 4)), "scores"),
    (lambda: shifted_images(torch.zeros(1, 1, 4, 4), 0), "shift"),
    (lambda: shifted_images(torch.zeros(4, 4), 1), "x"),
    (lambda: ShiftedPatchTokenization(8, 1, 1, 4), "patch_size"),
    (lambda: ShiftedPatchTokenization(9, 2, 1, 4), "patch_size"),
    (lambda: diagonal_mask(1), "n"),
    (lambda: LocalitySelfAttention(8, 2)(torch.zeros(1, 1, 8)), "at least 2 tokens"),
    (lambda: ConvStem(28, 1, 8, channels=(4, 8), strides=(2,)), "strides"),
    (lambda: CCTTokenizer(1, 8, n_conv_layers=0), "n_conv_layers"),
    (lambda: tiny_vit()(torch.zeros(2, 3, 8, 8)), "(B, 1, 8, 8)"),
    (lambda: tiny_cct()(torch.zeros(2, 1, 9, 9)), "(B, 1, 8, 8)"),
    (lambda: SmallDataViT(CCTConfig()), "SmallDataViTConfig"),
    (lambda: tiny_vit().set_attn_impl("flash"), "impl"),
]


@pytest.mark.parametrize("make, fragment", BAD, ids=[f for _, f in BAD])
def test_bad_arguments_raise_a_value_error_naming_them(make, fragment):
    with pytest.raises(ValueError) as info:
        make()
    assert fragment in str(info.value)


# ------------------------------------------------------------------ layout

NEW_MODULES = ["layers/conv_stem.py", "layers/sequence_pool.py", "layers/spt.py", "layers/lsa.py",
               "layers/drop_path.py", "layers/blocks.py", "models/cct.py", "models/small_data_vit.py"]


@pytest.mark.parametrize("path", NEW_MODULES)
def test_new_modules_import_only_layers_models_and_third_party(path):
    allowed = ("vitcourse.layers",) if path.startswith("layers/") else ("vitcourse.layers", "vitcourse.models")
    for line, target in imported_modules(PACKAGE / path, PACKAGE):
        if target.startswith("vitcourse"):
            assert target.startswith(allowed), f"{path}:{line} imports {target}"
