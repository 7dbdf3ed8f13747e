"""The encoder block and position embeddings."""
import pytest
import torch

from vitcourse.layers.blocks import MLP, EncoderBlock
from vitcourse.layers.pos_embed import resample_pos_embed, sincos_2d


def test_mlp_is_fc_gelu_fc():
    torch.manual_seed(0)
    mlp = MLP(6, 24, dropout=0.0)
    x = torch.randn(2, 3, 6)
    expected = mlp.fc2(torch.nn.functional.gelu(mlp.fc1(x)))  # exact (erf) GELU
    torch.testing.assert_close(mlp(x), expected)
    assert mlp.act.approximate == "none"


def test_encoder_block_is_pre_norm_with_residuals():
    torch.manual_seed(0)
    block = EncoderBlock(16, 4, 32).eval()
    x = torch.randn(2, 7, 16)
    h = x + block.attn(block.norm1(x))
    expected = h + block.mlp(block.norm2(h))
    torch.testing.assert_close(block(x), expected)
    assert block.norm1.eps == 1e-6


def test_block_with_zeroed_sublayers_is_identity():
    # Pre-norm keeps a clean identity path: zero output projections -> the block does nothing.
    block = EncoderBlock(8, 2, 16)
    with torch.no_grad():
        for lin in (block.attn.proj, block.mlp.fc2):
            lin.weight.zero_()
            lin.bias.zero_()
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(block(x), x)


def test_block_is_permutation_equivariant():
    torch.manual_seed(0)
    block = EncoderBlock(16, 2, 32).eval()
    x = torch.randn(2, 9, 16)
    perm = torch.randperm(9)
    for fused in (True, False):
        torch.testing.assert_close(block(x[:, perm], fused=fused), block(x, fused=fused)[:, perm],
                                   rtol=1e-5, atol=1e-5)


def test_sincos_2d_shape_range_and_structure():
    emb = sincos_2d((3, 4), 16, num_prefix_tokens=1)
    assert emb.shape == (1, 13, 16)
    assert torch.all(emb[0, 0] == 0)  # class-token slot
    grid = emb[0, 1:].reshape(3, 4, 16)
    assert emb.abs().max() <= 1.0
    # first half depends only on the row, second half only on the column
    assert torch.allclose(grid[:, 0, :8], grid[:, 3, :8]) and not torch.allclose(grid[0, :, :8], grid[2, :, :8])
    assert torch.allclose(grid[0, :, 8:], grid[2, :, 8:]) and not torch.allclose(grid[:, 0, 8:], grid[:, 1, 8:])
    # position (0, 0): sin 0 = 0 and cos 0 = 1 in each half
    assert grid[0, 0].tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4
    # every position is distinct
    flat = grid.reshape(12, 16)
    assert torch.cdist(flat, flat).add(torch.eye(12)).min() > 0.1


def test_sincos_2d_rejects_bad_dim():
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d(4, 10)


def test_resample_is_identity_for_same_grid():
    pe = torch.randn(1, 1 + 16, 8)
    assert resample_pos_embed(pe, (4, 4), num_prefix_tokens=1) is pe
    assert resample_pos_embed(pe, 4, num_prefix_tokens=1) is pe


def test_resample_matches_timm_bicubic():
    from timm.layers import resample_abs_pos_embed
    torch.manual_seed(0)
    pe = torch.randn(1, 1 + 49, 12)
    for new in ((10, 10), (5, 5), (7, 9)):
        ours = resample_pos_embed(pe, new, num_prefix_tokens=1)
        assert ours.shape == (1, 1 + new[0] * new[1], 12)
        torch.testing.assert_close(ours, resample_abs_pos_embed(pe, list(new), num_prefix_tokens=1))
        assert torch.equal(ours[:, :1], pe[:, :1])  # the class token is kept


def test_resample_preserves_a_smooth_embedding():
    # A linear ramp over the grid is resampled to (close to) the same ramp on the new grid.
    ramp = torch.linspace(0, 1, 8)[None, :].expand(8, 8).reshape(1, 64, 1)
    out = resample_pos_embed(ramp, (16, 16), num_prefix_tokens=0, antialias=False).reshape(16, 16)
    assert torch.all(out[:, 1:] >= out[:, :-1] - 1e-6)  # still increasing left to right
    torch.testing.assert_close(out[0], out[-1])  # still constant down the columns


@pytest.mark.parametrize("args, match", [
    ((torch.randn(1, 17, 4), (3, 3)), None),  # ok: just check it runs
    ((torch.randn(1, 1 + 15, 4), (3, 3)), "not a square"),
    ((torch.randn(17, 4), (3, 3)), r"\(1, prefix \+ N, D\)"),
])
def test_resample_bad_input(args, match):
    if match is None:
        assert resample_pos_embed(*args).shape == (1, 10, 4)
    else:
        with pytest.raises(ValueError, match=match):
            resample_pos_embed(*args)


def test_resample_old_grid_mismatch():
    with pytest.raises(ValueError, match="old_grid"):
        resample_pos_embed(torch.randn(1, 1 + 12, 4), (4, 4), old_grid=(2, 5))
