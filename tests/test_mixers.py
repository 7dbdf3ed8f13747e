"""Token mixers, token norms and the MetaFormer block: what each mixer lets a token see, what each
norm averages over, and that the block with attention is the ViT's encoder block."""
import itertools

import pytest
import torch

from vitcourse.layers.blocks import EncoderBlock
from vitcourse.layers.metaformer import LayerScale, MetaFormerBlock
from vitcourse.layers.mixers import (MIXERS, DepthwiseConvMixer, IdentityMixer, PoolingMixer, TokenMLP,
                                     make_mixer)
from vitcourse.layers.norms import NORMS, TokenBatchNorm, TokenGroupNorm, ffn_norm, make_norm


def changed_tokens(module: torch.nn.Module, x: torch.Tensor, token: int) -> set[int]:
    """Which output tokens move when input token `token` (of image 0) changes."""
    with torch.no_grad():
        before = module(x)
        y = x.clone()
        y[0, token] += torch.randn(x.shape[-1], generator=torch.Generator().manual_seed(5))
        after = module(y)
    return {i for i in range(x.shape[1]) if not torch.allclose(before[0, i], after[0, i], atol=1e-6)}


# ------------------------------------------------------------------ pooling

def test_pooling_equals_a_hand_computation_on_a_3x3_grid_borders_included():
    # two channels: 0..8 and their squares, laid out row-major on the 3x3 grid
    values = torch.arange(9.0)
    x = torch.stack([values, values ** 2], dim=-1)[None]  # (1, 9, 2)
    out = PoolingMixer((3, 3))(x)
    expected = torch.zeros(9, 2)
    for r, c in itertools.product(range(3), range(3)):
        # count_include_pad=False: average only the neighbours that exist (4 at a corner, 6 on an edge)
        neighbours = [3 * rr + cc for rr in range(r - 1, r + 2) for cc in range(c - 1, c + 2)
                      if 0 <= rr < 3 and 0 <= cc < 3]
        expected[3 * r + c] = x[0, neighbours].mean(0) - x[0, 3 * r + c]
    torch.testing.assert_close(out[0], expected)
    # the numbers themselves, channel 0: corner (0+1+3+4)/4 - 0 = 2; edge (0..5)/6 - 1 = 1.5; centre 0
    assert out[0, 0, 0].item() == pytest.approx(2.0)
    assert out[0, 1, 0].item() == pytest.approx(1.5)
    assert out[0, 4, 0].item() == pytest.approx(0.0, abs=1e-6)
    # zero padding counted in (count_include_pad=True) would give (0+1+3+4)/9 at the corner instead
    assert out[0, 0, 0].item() != pytest.approx(8 / 9)


def test_pooling_mixes_only_a_tokens_3x3_neighbourhood_and_never_channels():
    mixer = PoolingMixer((4, 4))
    x = torch.randn(2, 16, 3)
    assert changed_tokens(mixer, x, token=0) == {0, 1, 4, 5}  # corner (0, 0) and its 3 neighbours
    assert changed_tokens(mixer, x, token=5) == {0, 1, 2, 4, 5, 6, 8, 9, 10}  # (1, 1): a full 3x3
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(mixer(x[..., perm]), mixer(x)[..., perm])


def test_pooling_of_a_constant_map_is_zero_everywhere():
    # the average of equal values is that value, also at the borders (count_include_pad=False), minus x
    out = PoolingMixer((5, 3))(torch.full((1, 15, 4), 7.0))
    assert torch.allclose(out, torch.zeros_like(out))


# ------------------------------------------------------------------ token MLP, identity, dwconv

def test_token_mlp_mixes_across_tokens_within_each_channel_only():
    torch.manual_seed(0)
    mixer = TokenMLP((2, 3), hidden=8)
    x = torch.randn(2, 6, 4)
    # the same MLP for every channel: permuting channels permutes the output's channels
    perm = torch.tensor([3, 1, 0, 2])
    torch.testing.assert_close(mixer(x[..., perm]), mixer(x)[..., perm])
    # a change in token 0, channel 1 reaches every token of channel 1 and no other channel
    with torch.no_grad():
        y = x.clone()
        y[0, 0, 1] += 1.0
        diff = (mixer(y) - mixer(x))[0].abs()  # (N, D)
    assert (diff[:, 1] > 1e-6).all()
    assert torch.allclose(diff[:, [0, 2, 3]], torch.zeros(6, 3))
    assert mixer.fc1.in_features == 6 and mixer.fc2.out_features == 6  # weights over N, not D


def test_identity_mixer_leaves_every_token_unmixed():
    x = torch.randn(2, 9, 5)
    mixer = IdentityMixer((3, 3))
    assert torch.equal(mixer(x), x)
    for token in range(9):
        assert changed_tokens(mixer, x, token) == {token}


def test_dwconv_is_local_and_per_channel():
    torch.manual_seed(0)
    mixer = DepthwiseConvMixer((4, 4), dim=3)
    assert sum(p.numel() for p in mixer.parameters()) == 3 * 9 + 3
    assert changed_tokens(mixer, torch.randn(1, 16, 3), token=0) == {0, 1, 4, 5}


@pytest.mark.parametrize("mixer, reach", [("identity", {0}), ("pooling", {0, 1, 4, 5}),
                                          ("attention", set(range(16))), ("mlp", set(range(16)))])
def test_in_a_block_a_token_reaches_what_its_mixer_lets_it(mixer, reach):
    """The MLP, the norms and the layer scale are per token: only the mixer moves information."""
    torch.manual_seed(0)
    block = MetaFormerBlock(8, (4, 4), mixer, heads=2, layer_scale_init=0.5).eval()
    assert changed_tokens(block, torch.randn(2, 16, 8), token=0) == reach


# ------------------------------------------------------------------ the block

def test_attention_block_is_the_vits_encoder_block():
    torch.manual_seed(0)
    vit_block = EncoderBlock(16, 2, 32).eval()
    block = MetaFormerBlock(16, (2, 2), "attention", heads=2, mlp_ratio=2.0).eval()
    state = {k.replace("attn.", "token_mixer."): v for k, v in vit_block.state_dict().items()}
    block.load_state_dict(state, strict=True)  # the same tensors, the same shapes
    x = torch.randn(3, 4, 16)
    with torch.no_grad():
        expected = vit_block(x)
        for fused in (True, False):
            torch.testing.assert_close(block(x, fused=fused), expected)
    assert block.attn is block.token_mixer and hasattr(block.attn, "probe")
    assert MetaFormerBlock(16, (2, 2), "pooling").attn is None


def test_layer_scale_multiplies_each_channel_and_starts_small():
    ls = LayerScale(4, 1e-5)
    assert torch.equal(ls.scale, torch.full((4,), 1e-5))
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(ls(x), x * 1e-5)
    # a block with a tiny layer scale starts near the identity
    block = MetaFormerBlock(4, (1, 3), "pooling", layer_scale_init=1e-5, norm="groupnorm")
    assert (block(x) - x).abs().max() < 1e-3


@pytest.mark.parametrize("norm", NORMS)
def test_norm_choice_changes_parameter_count_only_for_bn_ffn(norm):
    ln = MetaFormerBlock(16, (2, 2), "pooling", "layernorm", mlp_ratio=4.0)
    block = MetaFormerBlock(16, (2, 2), "pooling", norm, mlp_ratio=4.0)
    extra = 2 * 64 if norm == "bn_ffn" else 0  # the FFN's BatchNorm: weight and bias per hidden unit
    assert sum(p.numel() for p in block.parameters()) == sum(p.numel() for p in ln.parameters()) + extra
    if norm == "bn_ffn":
        assert isinstance(block.norm1, TokenBatchNorm) and isinstance(block.mlp.norm, TokenBatchNorm)
        assert block.mlp.norm.num_features == 64
    else:
        assert isinstance(block.mlp.norm, torch.nn.Identity)


def test_bn_ffn_normalises_the_ffn_hidden_layer_before_the_gelu():
    torch.manual_seed(0)
    block = MetaFormerBlock(8, (2, 2), "identity", "bn_ffn", mlp_ratio=2.0).train()
    seen = {}
    block.mlp.act.register_forward_hook(lambda m, inp, out: seen.setdefault("pre_gelu", inp[0]))
    block(torch.randn(4, 4, 8) * 3 + 1)
    h = seen["pre_gelu"].reshape(-1, 16)  # (B*N, hidden)
    torch.testing.assert_close(h.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.var(0, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)


# ------------------------------------------------------------------ norms over tokens

def test_token_batchnorm_uses_per_channel_statistics_over_batch_and_tokens_in_training():
    torch.manual_seed(0)
    bn = TokenBatchNorm(3).train()
    # channel c has mean 10c and std c + 1; tokens differ from each other too
    x = torch.randn(4, 5, 3) * torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([0.0, 10.0, 20.0])
    x = x + torch.arange(5.0)[None, :, None]
    out = bn(x)
    mean, var = x.mean((0, 1)), x.var((0, 1), unbiased=False)
    torch.testing.assert_close(out, (x - mean) / torch.sqrt(var + bn.eps))
    torch.testing.assert_close(out.mean((0, 1)), torch.zeros(3), atol=1e-5, rtol=0)
    assert out.mean((0, 2)).abs().max() > 0.1  # per channel, not per token: token means are not 0
    # the running statistics moved 10% of the way (momentum 0.1) to this batch's (unbiased variance)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * x.var((0, 1), unbiased=True))


def test_token_batchnorm_in_eval_uses_running_statistics_so_images_are_independent():
    bn = TokenBatchNorm(2)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    bn.eval()
    x = torch.randn(3, 6, 2)
    expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(bn(x), expected)
    torch.testing.assert_close(bn(x[:1]), bn(x)[:1])  # the rest of the batch does not matter
    torch.testing.assert_close(bn(x[:, 0]), expected[:, 0])  # (B, D) pooled features too


def test_token_groupnorm_is_groupnorm_on_the_map():
    torch.manual_seed(0)
    gn = TokenGroupNorm(4)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 2.0)
        gn.bias.normal_()
    ref = torch.nn.GroupNorm(1, 4)
    ref.load_state_dict(gn.state_dict())
    grid = torch.randn(2, 4, 3, 5)  # (B, D, H, W)
    tokens = grid.flatten(2).transpose(1, 2)  # (B, N, D)
    torch.testing.assert_close(gn(tokens), ref(grid).flatten(2).transpose(1, 2))


def test_make_norm_defaults_follow_each_library():
    assert isinstance(make_norm("layernorm", 8), torch.nn.LayerNorm) and make_norm("layernorm", 8).eps == 1e-6
    assert make_norm("groupnorm", 8).eps == 1e-5 and make_norm("batchnorm", 8).eps == 1e-5
    assert make_norm("layernorm", 8, eps=1e-3).eps == 1e-3
    assert ffn_norm("layernorm", 32) is None and ffn_norm("batchnorm", 32) is None
    assert ffn_norm("bn_ffn", 32).num_features == 32


# ------------------------------------------------------------------ bad arguments

def test_unknown_mixer_and_norm_names_raise_naming_the_argument():
    with pytest.raises(ValueError, match=r"mixer must be one of .*'pooling'.* got 'poling'"):
        make_mixer("poling", 8, (2, 2))
    with pytest.raises(ValueError, match=r"norm must be one of .*'layernorm'.* got 'rmsnorm'"):
        make_norm("rmsnorm", 8)
    assert set(MIXERS) == {"attention", "pooling", "mlp", "identity", "dwconv"}


@pytest.mark.parametrize("mixer", ["pooling", "mlp", "identity", "dwconv"])
def test_grid_mixers_reject_tokens_that_do_not_match_their_grid(mixer):
    module = make_mixer(mixer, 8, (4, 4))
    with pytest.raises(ValueError, match=r"grid_size=\(4, 4\), i.e. N=16 tokens, got N=9"):
        module(torch.randn(1, 9, 8))
    with pytest.raises(ValueError, match="grid_size must be a pair"):
        make_mixer(mixer, 8, (4, 0))


def test_even_pool_size_is_rejected():
    with pytest.raises(ValueError, match="pool_size must be a positive odd int.*got 2"):
        PoolingMixer((3, 3), pool_size=2)
