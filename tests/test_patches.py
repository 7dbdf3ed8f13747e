"""patchify / unpatchify / PatchEmbed: shapes, order, round trips, and the convolution trick."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vitcourse.layers.patches import PatchEmbed, patchify, unpatchify


@st.composite
def images_and_patch(draw):
    p = draw(st.integers(1, 6))
    gh, gw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    b, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    x = torch.randn(b, c, gh * p, gw * p, generator=torch.Generator().manual_seed(seed))
    return x, p


@settings(max_examples=60, deadline=None)
@given(images_and_patch())
def test_patchify_shape_and_round_trip(case):
    x, p = case
    b, c, h, w = x.shape
    tokens = patchify(x, p)
    assert tokens.shape == (b, (h // p) * (w // p), p * p * c)
    assert torch.equal(unpatchify(tokens, p, (h, w)), x)
    assert torch.equal(unpatchify(tokens, p, (h, w), channels=c), x)


@settings(max_examples=40, deadline=None)
@given(images_and_patch())
def test_unpatchify_then_patchify_is_identity(case):
    x, p = case
    h, w = x.shape[-2:]
    tokens = torch.randn_like(patchify(x, p))
    assert torch.equal(patchify(unpatchify(tokens, p, (h, w)), p), tokens)


@settings(max_examples=40, deadline=None)
@given(images_and_patch())
def test_patchify_keeps_every_pixel_once(case):
    x, p = case
    tokens = patchify(x, p)
    assert torch.equal(tokens.flatten().sort().values, x.flatten().sort().values)


def test_patch_order_is_row_major_and_pixels_are_row_column_channel():
    # Pixel value encodes (channel, row, col) so each token's content can be read back.
    c, h, w, p = 2, 4, 6, 2
    cc, rr, ww = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    x = (cc * 100 + rr * 10 + ww).float()[None]
    tokens = patchify(x, p)
    assert tokens.shape == (1, 6, 8)
    # token 1 is the second patch of the top row: rows 0-1, cols 2-3
    assert tokens[0, 1].tolist() == [2, 102, 3, 103, 12, 112, 13, 113]
    # token 3 starts the second row of patches: rows 2-3, cols 0-1
    assert tokens[0, 3, 0].item() == 20


def test_conv_patch_embed_equals_patchify_then_linear():
    torch.manual_seed(0)
    embed = PatchEmbed(image_size=(12, 8), patch_size=4, in_channels=3, dim=5)
    x = torch.randn(2, 3, 12, 8)
    linear = torch.nn.Linear(4 * 4 * 3, 5)
    with torch.no_grad():
        linear.weight.copy_(embed.linear_weight())
        linear.bias.copy_(embed.proj.bias)
    assert embed.grid_size == (3, 2) and embed.num_patches == 6
    out = embed(x)
    assert out.shape == (2, 6, 5)
    torch.testing.assert_close(out, linear(patchify(x, 4)), rtol=1e-5, atol=1e-5)


def test_cpu_matmul_path_equals_the_convolution_forward_and_backward():
    # On a CPU PatchEmbed computes the conv as patchify + matmul (faster backward); the same map.
    torch.manual_seed(0)
    embed = PatchEmbed(image_size=(12, 8), patch_size=4, in_channels=3, dim=5)
    x = torch.randn(2, 3, 12, 8)
    out = embed(x)
    conv_out = embed.proj(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, conv_out, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), [embed.proj.weight, embed.proj.bias])
    conv_grads = torch.autograd.grad(conv_out.square().sum(), [embed.proj.weight, embed.proj.bias])
    for g, h in zip(grads, conv_grads):
        torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda: patchify(torch.zeros(1, 1, 10, 10), 3), "divisible by patch_size=3"),
    (lambda: patchify(torch.zeros(1, 10, 10), 2), "4D"),
    (lambda: patchify(torch.zeros(1, 1, 4, 4), 0), "patch_size must be a positive int"),
    (lambda: unpatchify(torch.zeros(1, 5, 4), 2, 4), "needs 2x2=4"),
    (lambda: unpatchify(torch.zeros(1, 4, 12), 2, 4, channels=1), "channels=1"),
    (lambda: unpatchify(torch.zeros(1, 4, 5), 2, 4), "multiple of patch_size"),
    (lambda: unpatchify(torch.zeros(4, 12), 2, 4), "3D"),
    (lambda: PatchEmbed(30, 16, 3, 8), "divisible by patch_size=16"),
    (lambda: PatchEmbed(32, 16, 0, 8), "in_channels"),
    # a ragged edge the convolution would drop, more patches than built for, wrong channels, 3D
    (lambda: PatchEmbed(28, 7, 1, 16)(torch.zeros(1, 1, 30, 30)), r"image_size=\(28, 28\), got images of 30x30"),
    (lambda: PatchEmbed(28, 7, 1, 16)(torch.zeros(1, 1, 35, 35)), "got images of 35x35"),
    (lambda: PatchEmbed(28, 7, 1, 16)(torch.zeros(1, 3, 28, 28)), "in_channels=1, got images with 3 channels"),
    (lambda: PatchEmbed(28, 7, 1, 16)(torch.zeros(1, 28, 28)), r"\(B, C, H, W\), got \(1, 28, 28\)"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@settings(max_examples=40, deadline=None)
@given(p=st.integers(1, 5), gh=st.integers(1, 4), gw=st.integers(1, 4), c=st.integers(1, 3),
       dim=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_patch_embed_is_patchify_then_linear_for_any_shape(p, gh, gw, c, dim, seed):
    torch.manual_seed(seed)
    embed = PatchEmbed(image_size=(gh * p, gw * p), patch_size=p, in_channels=c, dim=dim)
    x = torch.randn(2, c, gh * p, gw * p)
    expected = patchify(x, p) @ embed.linear_weight().T + embed.proj.bias  # (B, N, D)
    torch.testing.assert_close(embed(x), expected, rtol=1e-4, atol=1e-5)
    conv = embed.proj(x).flatten(2).transpose(1, 2)  # the convolution itself
    torch.testing.assert_close(embed(x), conv, rtol=1e-4, atol=1e-5)
