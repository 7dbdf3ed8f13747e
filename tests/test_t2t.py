"""Tokens-to-Token ViT: soft split (length formula, overlap, content), re-structurisation, the T2T
module's token counts, the paper's parameter counts and MACs, the small preset, attention capture."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from vitcourse.analysis import capture_attention
from vitcourse.models import create_model
from vitcourse.models.t2t import (PRESETS, T2TModule, T2TViTConfig, TokenPerformer, TokenTransformer,
                           restructurize, soft_split, soft_split_length, t2t_vit_fmnist)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 40), kernel=st.integers(1, 9), stride=st.integers(1, 6),
       padding=st.integers(0, 4))
def test_soft_split_length_formula_matches_unfold(size, kernel, stride, padding):
    if kernel > size + 2 * padding:
        with pytest.raises(ValueError, match="kernel"):
            soft_split_length(size, kernel, stride, padding)
        return
    n = soft_split_length(size, kernel, stride, padding)
    assert n == (size + 2 * padding - kernel) // stride + 1
    out = F.unfold(torch.zeros(1, 1, size, size), kernel, padding=padding, stride=stride)
    assert out.shape[-1] == n * n
    tokens = soft_split(torch.zeros(2, 3, size, size), kernel, stride, padding)
    assert tokens.shape == (2, n * n, 3 * kernel * kernel)


def test_soft_split_tokens_are_overlapping_windows():
    x = torch.arange(2 * 9 * 9, dtype=torch.float32).view(1, 2, 9, 9)
    k, s = 3, 2
    tokens = soft_split(x, k, s, 0)  # 4 x 4 windows
    assert tokens.shape == (1, 16, 2 * 9)
    # token (row 1, col 2) is the 3x3 window starting at (2, 4), channel-first
    window = x[0, :, 2:5, 4:7].reshape(-1)
    assert torch.equal(tokens[0, 1 * 4 + 2], window)
    # neighbours share a column of pixels: stride < kernel
    right = x[0, :, 2:5, 6:9]
    assert torch.equal(window.view(2, 3, 3)[:, :, 2], right[:, :, 0])


def test_soft_split_with_stride_equal_kernel_is_a_hard_split():
    from vitcourse.layers.patches import patchify
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(soft_split(x, 7, 7, 0), patchify(x, 7))  # one channel: same order


def test_soft_split_and_restructurize_reject_bad_input():
    with pytest.raises(ValueError, match="images must be a 4D tensor"):
        soft_split(torch.zeros(3, 8, 8), 3, 1, 1)
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        soft_split_length(10, 3, 0, 1)
    with pytest.raises(ValueError, match=r"tokens must be \(B, 4\*4=16, C\)"):
        restructurize(torch.zeros(1, 15, 3), 4)


def test_restructurize_inverts_flattening():
    img = torch.randn(2, 5, 3, 4)
    tokens = img.flatten(2).transpose(1, 2)  # (B, 12, C)
    assert torch.equal(restructurize(tokens, 3, 4), img)


def test_t2t_module_token_counts_follow_the_formula():
    mod = T2TModule(224, 3, 64, 384, tokens_type="transformer")
    assert mod.sizes == [224, 56, 28, 14]
    assert mod.num_patches == 196
    small = T2TModule(28, 1, 32, 128, (7, 3, 3), (2, 2, 2), (3, 1, 1), "transformer")
    assert small.sizes == [28, 14, 7, 4]
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 16, 128)


def test_token_layers_change_width_with_a_value_skip():
    torch.manual_seed(0)
    for layer in (TokenTransformer(27, 8), TokenPerformer(27, 8)):
        y = layer(torch.randn(2, 10, 27))
        assert y.shape == (2, 10, 8) and torch.isfinite(y).all()


def test_performer_features_estimate_the_softmax_kernel():
    """φ(q)·φ(k) is an unbiased estimate of exp(q·k), the unnormalised softmax score; with many
    random features (and short vectors, where its variance is small) it is close."""
    torch.manual_seed(0)
    perf = TokenPerformer(4, 16, kernel_ratio=256.0)  # m = 4096 features
    q, k = 0.15 * torch.randn(2, 1, 12, 16)
    estimate = perf._features(q) @ perf._features(k).transpose(1, 2)
    exact = torch.exp(q @ k.transpose(1, 2))
    assert ((estimate - exact).abs() / exact).max() < 0.15
    assert (perf._features(q) > 0).all()  # positive features: no negative attention weights


@pytest.mark.slow
@pytest.mark.parametrize("name,params_m,macs_g", [
    ("t2t_vit_14", 21.5, 4.8), ("t2t_vit_19", 39.2, 8.5), ("t2t_vit_24", 64.1, 13.8)])
def test_presets_match_the_papers_params_and_macs(name, params_m, macs_g):
    model = PRESETS[name]().eval()
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 1) == params_m
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 224, 224))
    macs = counter.get_total_flops() / 2 / 1e9
    assert abs(macs - macs_g) / macs_g < 0.03, macs


def test_small_preset_fused_equals_explicit_and_trains():
    torch.manual_seed(0)
    model = t2t_vit_fmnist(attn_impl="explicit")
    assert model.grid_size == (4, 4)
    x = torch.randn(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))
    out = model(x)
    model.set_attn_impl("fused")
    torch.testing.assert_close(model(x), out, atol=1e-5, rtol=1e-4)
    model.set_attn_impl("explicit")  # SDPA's backward is slow on CPU (see ViT._fused_for)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_attention_capture_sees_the_backbone_blocks():
    torch.manual_seed(0)
    model = t2t_vit_fmnist()
    maps = capture_attention(model, torch.randint(0, 255, (2, 28, 28), dtype=torch.uint8))
    assert len(maps) == model.config.depth
    assert maps[0].shape == (2, 2, 16, 16)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 2, 16))


def test_fixed_position_table_is_not_trained():
    model = create_model("t2t_vit_14", num_classes=10)
    assert not model.pos_embed.requires_grad
    assert create_model("t2t_vit_fmnist").pos_embed.requires_grad


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = t2t_vit_fmnist(dropout=0.5)
    x = torch.randn(2, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        model.train()
        assert not torch.allclose(model(x), model(x))


@pytest.mark.parametrize("kwargs,match", [
    (dict(heads=3), "divisible by heads"),
    (dict(tokens_type="conv"), "tokens_type"),
    (dict(kernels=(7, 3)), "equal length"),
    (dict(image_size=4, kernels=(7, 3, 3), paddings=(0, 1, 1)), "kernel=7 is larger"),
    (dict(pool="max"), "pool"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        t2t_vit_fmnist(**kwargs)


def test_config_round_trips_through_asdict():
    cfg = t2t_vit_fmnist().config
    assert T2TViTConfig(**dataclasses.asdict(cfg)) == cfg


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    from vitcourse.training.checkpoint import export_model, load_model
    model = t2t_vit_fmnist().eval()
    export_model(model, tmp_path / "t2t.pt")
    again = load_model(tmp_path / "t2t.pt")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(again(x), model(x))
