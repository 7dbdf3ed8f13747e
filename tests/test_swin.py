"""Swin Transformer: windows, shifted-window mask, relative position bias, patch merging, the model
against torchvision's (parameter counts, logits), both attention paths, dropout only in training."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vitcourse.analysis import capture_attention
from vitcourse.models import create_model
from vitcourse.models.swin import (DropPath, PatchMerging, SwinConfig, relative_position_index,
                            shifted_window_mask, swin_b, swin_fmnist, swin_s, swin_t,
                            window_attention_macs, window_partition, window_reverse)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), nh=st.integers(1, 3), nw=st.integers(1, 3), m=st.integers(1, 4),
       c=st.integers(1, 5))
def test_window_partition_round_trip_and_content(b, nh, nw, m, c):
    x = torch.randn(b, nh * m, nw * m, c)
    windows = window_partition(x, m)
    assert windows.shape == (b * nh * nw, m * m, c)
    assert torch.equal(window_reverse(windows, m, nh * m, nw * m), x)
    # window (image 0, row i, col j) holds exactly the pixels of that M x M block, row-major
    i, j = nh - 1, nw - 1
    block = x[0, i * m:(i + 1) * m, j * m:(j + 1) * m].reshape(m * m, c)
    assert torch.equal(windows[i * nw + j], block)


def test_window_partition_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="window_size=3"):
        window_partition(torch.zeros(1, 8, 8, 2), 3)


@pytest.mark.parametrize("m", [1, 2, 3, 7])
def test_relative_position_index_encodes_offsets(m):
    idx = relative_position_index(m)
    assert idx.shape == (m * m, m * m)
    assert idx.min() == 0 and idx.max() == (2 * m - 1) ** 2 - 1
    coords = [(r, c) for r in range(m) for c in range(m)]
    # same index <=> same (dy, dx) offset, for every pair of token pairs
    offsets = {}
    for i, (ri, ci) in enumerate(coords):
        for j, (rj, cj) in enumerate(coords):
            offsets.setdefault(int(idx[i, j]), set()).add((ri - rj, ci - cj))
    assert all(len(v) == 1 for v in offsets.values())
    assert len(offsets) == (2 * m - 1) ** 2


@pytest.mark.parametrize("size,m,shift", [(8, 4, 2), (14, 7, 3), (12, 4, 2), (6, 3, 1)])
def test_shifted_window_mask_keeps_wrapped_tokens_apart(size, m, shift):
    """Brute force: after rolling by -shift, two tokens of a window may attend iff the roll did not
    wrap one of them around, i.e. their offset in the original image equals their offset now."""
    mask = shifted_window_mask(size, size, m, shift)
    assert mask.shape == ((size // m) ** 2, m * m, m * m)
    rows = torch.arange(size)
    orig = (rows + shift) % size  # original coordinate of rolled position
    pos = torch.stack(torch.meshgrid(rows, rows, indexing="ij"), -1)  # (H, W, 2)
    opos = torch.stack(torch.meshgrid(orig, orig, indexing="ij"), -1)
    win_pos = window_partition(pos[None].float(), m)  # (nW, M*M, 2)
    win_opos = window_partition(opos[None].float(), m)
    same_offset = ((win_pos[:, :, None] - win_pos[:, None]) == (win_opos[:, :, None] - win_opos[:, None])).all(-1)
    assert torch.equal(mask == 0, same_offset)
    assert set(mask.unique().tolist()) == {0.0, -100.0}


def test_unshifted_mask_is_all_zero():
    assert not shifted_window_mask(8, 8, 4, 0).any()


def test_patch_merging_concatenates_2x2_neighbourhoods_in_papers_order():
    pm = PatchMerging(3)
    torch.nn.init.ones_(pm.norm.weight)
    x = torch.randn(2, 4, 6, 3)
    cat = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    expected = pm.reduction(pm.norm(cat))
    out = pm(x)
    assert out.shape == (2, 2, 3, 6)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="even grid"):
        pm(torch.randn(1, 3, 4, 3))


@pytest.mark.slow
def test_parameter_counts_equal_torchvision():
    assert n_params(swin_t()) == 28_288_354
    assert n_params(swin_s()) == 49_606_258
    assert n_params(swin_b()) == 87_768_224
    from torchvision.models import swin_t as tv_swin_t
    assert n_params(swin_t()) == n_params(tv_swin_t())


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["explicit", "fused"])
def test_logits_equal_torchvision_swin_t_with_mapped_weights(impl):
    from torchvision.models import swin_t as tv_swin_t

    from vitcourse import from_torchvision
    torch.manual_seed(0)
    tv = tv_swin_t().eval()
    # A fresh torchvision model has every LayerNorm at 1 and every bias (and the relative-position
    # bias table) near 0: a swapped norm or bias in the mapping would go unseen. Randomise all.
    with torch.no_grad():
        for name, p in tv.named_parameters():
            if p.ndim <= 1 or "relative_position_bias_table" in name:
                p.add_(torch.randn_like(p) * 0.1)
    ours = from_torchvision(tv, attn_impl=impl)
    assert not ours.training
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - tv(x)).abs().max().item()
    assert diff < 1e-5, diff


def test_converter_rejects_non_swin():
    from vitcourse import from_torchvision
    with pytest.raises(ValueError, match="tv_model"):
        from_torchvision(torch.nn.Linear(2, 2))


def test_small_preset_shapes_and_hierarchy():
    model = swin_fmnist()
    assert model.config.grid_sizes == (14, 7)
    assert [s.blocks[1].shift for s in model.stages] == [3, 0]  # one window covers the 7x7 map
    x = torch.randn(2, 1, 28, 28)
    feats = model.forward_features(x)
    assert feats.shape == (2, 7, 7, 128)
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("kwargs,match", [
    (dict(window_size=5), "window_size=5 of stage 1 must divide its 14x14"),
    (dict(window_size=(7, 4)), "window_size=4 of stage 2"),
    (dict(patch_size=3), "patch_size=3 must divide image_size=28"),
    (dict(depths=(2, 2, 2), heads=(2, 4, 8)), "needs an even grid, got 7x7"),
    (dict(heads=(3, 4)), "divisible by heads"),
    (dict(drop_path=1.0), "drop_path"),
    (dict(attn_impl="flash"), "attn_impl"),
])
def test_config_rejects_bad_sizes_with_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        swin_fmnist(**kwargs)


def test_fused_and_explicit_paths_agree_and_train():
    torch.manual_seed(0)
    model = swin_fmnist(attn_impl="explicit")
    x = torch.randn(3, 1, 28, 28)
    out_explicit = model(x)
    model.set_attn_impl("fused")
    out_fused = model(x)
    torch.testing.assert_close(out_fused, out_explicit, atol=1e-5, rtol=1e-4)
    # gradients reach the relative position bias tables through both paths
    out_fused.sum().backward()
    assert model.stages[0].blocks[1].attn.relative_position_bias_table.grad.abs().sum() > 0


def test_attention_capture_gives_window_maps_with_masked_pairs_near_zero():
    torch.manual_seed(0)
    model = swin_fmnist()
    maps = capture_attention(model, torch.randn(2, 1, 28, 28))
    assert len(maps) == 6  # one per block
    assert maps[0].shape == (2 * 4, 2, 49, 49)  # (B * windows, heads, M*M, M*M)
    assert maps[-1].shape == (2, 4, 49, 49)  # stage 2: one window
    for a in maps:
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))
    shifted = maps[1].view(2, 4, 2, 49, 49)
    mask = shifted_window_mask(14, 14, 7, 3)  # (4, 49, 49)
    assert shifted.permute(0, 2, 1, 3, 4)[..., mask != 0].max() < 1e-30
    assert model.config.attn_impl == "auto"  # restored


@pytest.mark.parametrize("impl", ["explicit", "fused"])
def test_dropout_and_drop_path_only_in_training(impl):
    # both attention paths: the fused one passes its dropout to SDPA, which must get 0 in eval
    torch.manual_seed(0)
    model = swin_fmnist(dropout=0.3, attn_dropout=0.3, drop_path=0.5, attn_impl=impl)
    plain = swin_fmnist(attn_impl=impl)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(4, 1, 28, 28)
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))
        torch.testing.assert_close(model(x), model(x))
        model.train()
        assert not torch.allclose(model(x), plain(x))


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    dp = DropPath(0.5).train()
    y = dp(torch.ones(4000, 3))
    assert set(y[:, 0].unique().tolist()) == {0.0, 2.0}
    assert (y == y[:, :1]).all()  # per sample, not per element
    assert abs(y.mean().item() - 1.0) < 0.06
    assert torch.equal(dp.eval()(torch.ones(5, 3)), torch.ones(5, 3))
    with pytest.raises(ValueError, match="drop path probability"):
        DropPath(1.0)


def test_window_attention_cost_is_linear_in_tokens():
    # doubling the side (4x tokens): global attention's N² term grows 16x, windows' grows 4x
    g1, g2 = (window_attention_macs(s, 96, None) for s in (28, 56))
    w1, w2 = (window_attention_macs(s, 96, 7) for s in (28, 56))
    assert w2 == 4 * w1
    assert g2 > 4 * g1 * 2
    assert window_attention_macs(56, 96, 56) == window_attention_macs(56, 96, None)


def test_create_model_and_config_round_trip():
    import dataclasses
    model = create_model("swin_fmnist", num_classes=5)
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 5)
    cfg = dataclasses.asdict(model.config)
    assert SwinConfig(**cfg) == model.config
    assert create_model("Swin-T").config.embed_dim == 96


def test_checkpoint_round_trip_rebuilds_the_model(tmp_path):
    from vitcourse.training.checkpoint import export_model, load_model
    model = swin_fmnist(window_size=(7, 7)).eval()
    export_model(model, tmp_path / "swin.pt")
    again = load_model(tmp_path / "swin.pt")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(again(x), model(x))
