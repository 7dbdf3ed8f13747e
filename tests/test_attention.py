"""Attention: the explicit formula, the fused kernel, and hooks on the probe."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
import torch.nn.functional as F

from vitcourse.layers.attention import AttentionProbe, MultiHeadSelfAttention, scaled_dot_product_attention


def test_explicit_attention_matches_formula_and_pytorch():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 5, 4) and weights.shape == (2, 3, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    manual = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    torch.testing.assert_close(weights, manual)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-6)


def test_masks_follow_pytorch_semantics():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 4, 8), torch.randn(1, 6, 8), torch.randn(1, 6, 8)
    keep = torch.rand(4, 6) > 0.4
    keep[:, 0] = True  # every query sees at least one key
    out, weights = scaled_dot_product_attention(q, k, v, mask=keep)
    assert torch.all(weights[0][~keep] == 0)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
                               rtol=1e-5, atol=1e-6)
    additive = torch.randn(4, 6)
    out2, _ = scaled_dot_product_attention(q, k, v, mask=additive)
    torch.testing.assert_close(out2, F.scaled_dot_product_attention(q, k, v, attn_mask=additive),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_fused_and_explicit_paths_agree_forward_and_backward(heads):
    torch.manual_seed(heads)
    attn = MultiHeadSelfAttention(16, heads, fused=True)
    x = torch.randn(3, 10, 16, requires_grad=True)
    out_fused = attn(x)
    g_fused, = torch.autograd.grad(out_fused.square().sum(), x)
    attn.fused = False
    out_explicit = attn(x)
    g_explicit, = torch.autograd.grad(out_explicit.square().sum(), x)
    assert out_fused.shape == (3, 10, 16)
    torch.testing.assert_close(out_fused, out_explicit, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_fused, g_explicit, rtol=1e-4, atol=1e-5)


def test_per_call_override_of_the_path():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, 2, fused=True)
    seen = []
    attn.probe.register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.randn(1, 5, 8)
    attn(x)
    assert seen == []  # the fused path never materialises the weights
    attn(x, fused=False)
    assert len(seen) == 1 and seen[0].shape == (1, 2, 5, 5)


def test_probe_hook_captures_weights_without_changing_output():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(12, 3, fused=False).eval()
    x = torch.randn(2, 6, 12)
    before = attn(x)
    captured = []
    handle = attn.probe.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    after = attn(x)
    handle.remove()
    assert torch.equal(before, after)
    weights = captured[0]
    assert weights.shape == (2, 3, 6, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 6))
    # the captured weights are the softmax of this module's own q kᵀ / √d
    q, k, _ = attn.qkv(x).reshape(2, 6, 3, 3, 4).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(weights, torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1))


def test_probe_is_identity():
    w = torch.rand(1, 2, 3, 3)
    assert AttentionProbe()(w) is w


def test_attention_dropout_only_in_training():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, 2, attn_dropout=0.5, fused=False)
    x = torch.randn(2, 5, 8)
    attn.eval()
    torch.testing.assert_close(attn(x), attn(x))
    attn.train()
    assert not torch.allclose(attn(x), attn(x))


@pytest.mark.parametrize("kwargs, match", [
    (dict(dim=10, heads=3), "dim=10 must be divisible by heads=3"),
    (dict(dim=0, heads=1), "dim must be a positive int"),
    (dict(dim=8, heads=2, attn_dropout=1.5), "attn_dropout"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadSelfAttention(**kwargs)


def test_bad_qkv_shapes():
    with pytest.raises(ValueError, match="same last dim"):
        scaled_dot_product_attention(torch.zeros(2, 4), torch.zeros(2, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="same number of tokens"):
        scaled_dot_product_attention(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2, 4))


def test_msa_rejects_tokens_of_the_wrong_width_or_rank():
    msa = MultiHeadSelfAttention(16, 2)
    with pytest.raises(ValueError, match=r"D=16, got \(2, 5, 12\)"):
        msa(torch.zeros(2, 5, 12))
    with pytest.raises(ValueError, match=r"\(B, N, D\) with D=16, got \(5, 16\)"):
        msa(torch.zeros(5, 16))


@settings(max_examples=30, deadline=None)
@given(heads=st.sampled_from([1, 2, 3, 4]), head_dim=st.integers(1, 8), n=st.integers(1, 20),
       b=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_fused_equals_explicit_for_any_shape(heads, head_dim, n, b, seed):
    torch.manual_seed(seed)
    attn = MultiHeadSelfAttention(heads * head_dim, heads).eval()
    x = torch.randn(b, n, heads * head_dim)
    torch.testing.assert_close(attn(x, fused=True), attn(x, fused=False), rtol=1e-4, atol=1e-5)
