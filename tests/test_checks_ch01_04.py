"""The exercise checks of chapters 01-04: each reference answer passes, and each known-wrong answer
(wrong shape, wrong values, swapped axes, a forgotten step) fails with the message that explains it."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from helpers import fails
from vitcourse.checks import ch01_patches as ch01


def test_checks_carry_their_exercise_ids():
    assert ch01.patchify.exercise_id == "01.1"
    assert ch01.unpatchify.exercise_id == "01.2"
    assert ch01.conv_from_linear.exercise_id == "01.3"


# ---------------------------------------------------------------- 01.1 patchify
def good_patchify(images, p):
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def test_patchify_reference_passes(capsys):
    ch01.patchify(good_patchify)
    assert "Exercise 01.1 passed" in capsys.readouterr().out


def test_patchify_wrong_shape_fails():
    fails(ch01.patchify, lambda x, p: good_patchify(x, p).transpose(1, 2),
          "01.1", "wrong shape", "expected (2, 9, 16), got (2, 16, 9)")


def test_patchify_column_major_order_fails():
    fails(ch01.patchify, lambda x, p: rearrange(x, "b c (h p1) (w p2) -> b (w h) (p1 p2 c)", p1=p, p2=p),
          "column-major", "row by row")


def test_patchify_channel_first_flattening_fails():
    fails(ch01.patchify, lambda x, p: rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=p, p2=p),
          "channel-first", "(p1, p2, c)")


def test_patchify_transposed_patches_fail():
    # Each patch transposed (p2 before p1): the values are right, the order inside a patch is not.
    fails(ch01.patchify, lambda x, p: rearrange(x, "b c (h p1) (w p2) -> b (h w) (p2 p1 c)", p1=p, p2=p),
          "wrong values at", "expected", "got")


def test_patchify_stub_reports_not_implemented():
    def stub(images, p):
        raise NotImplementedError("complete my_patchify")
    with pytest.raises(NotImplementedError, match="Exercise 01.1 .* not implemented yet"):
        ch01.patchify(stub)


# ---------------------------------------------------------------- 01.2 unpatchify
def good_unpatchify(tokens, p, image_size):
    b, n, d = tokens.shape
    h, w = image_size
    c = d // (p * p)
    x = tokens.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)  # (B, C, H/P, P, W/P, P)
    return x.reshape(b, c, h, w)


def _unpatchify_as(pattern):
    """An unpatchify that reads the tokens in another order (`pattern`'s left side)."""
    def answer(tokens, p, image_size):
        h, w = image_size
        c = tokens.shape[-1] // (p * p)
        return rearrange(tokens, pattern, h=h // p, w=w // p, p1=p, p2=p, c=c)
    return answer


def test_unpatchify_reference_passes(capsys):
    ch01.unpatchify(good_unpatchify)
    assert "Exercise 01.2 passed" in capsys.readouterr().out


def test_unpatchify_is_the_inverse_of_the_students_patchify():
    from vitcourse.layers.patches import unpatchify
    x = torch.randn(3, 2, 6, 10)
    assert torch.equal(good_unpatchify(good_patchify(x, 2), 2, (6, 10)), x)
    ch01.unpatchify(lambda tokens, p, size: unpatchify(tokens, p, size))  # the package's own passes


def test_unpatchify_transposed_grid_fails():
    # Patches put back down the columns first: the grid of patches comes out transposed.
    fails(ch01.unpatchify, _unpatchify_as("b (w h) (p1 p2 c) -> b c (h p1) (w p2)"),
          "01.2", "column-major", "row by row")


def test_unpatchify_channel_first_tokens_fail():
    fails(ch01.unpatchify, _unpatchify_as("b (h w) (c p1 p2) -> b c (h p1) (w p2)"),
          "channel-first", "(p1, p2, c)", "(P, P, C)")


def test_unpatchify_channels_last_images_fail():
    fails(ch01.unpatchify, _unpatchify_as("b (h w) (p1 p2 c) -> b (h p1) (w p2) c"),
          "channels-last", "(B, C, H, W) = (2, 1, 12, 12)")


def test_unpatchify_transposed_patches_fail():
    fails(ch01.unpatchify, _unpatchify_as("b (h w) (p2 p1 c) -> b c (h p1) (w p2)"),
          "transposed (its rows and columns swapped)")


def test_unpatchify_single_reshape_fails():
    def one_reshape(tokens, p, image_size):
        return tokens.reshape(tokens.shape[0], -1, *image_size)
    fails(ch01.unpatchify, one_reshape, "single reshape", "permute")


def test_unpatchify_swapped_height_and_width_fail():
    fails(ch01.unpatchify, lambda t, p, size: good_unpatchify(t, p, size[::-1]),
          "wrong shape", "expected (3, 3, 10, 15), got (3, 3, 15, 10)", "swapped")


def test_unpatchify_stub_reports_not_implemented():
    def stub(tokens, p, image_size):
        raise NotImplementedError("Exercise 01.2: complete my_unpatchify")
    with pytest.raises(NotImplementedError, match="Exercise 01.2 .* not implemented yet: complete my_unpatchify"):
        ch01.unpatchify(stub)


# ---------------------------------------------------------------- 01.3 conv from linear
def good_conv_from_linear(linear, p, c):
    d = linear.out_features
    conv = nn.Conv2d(c, d, p, stride=p)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(d, p, p, c).permute(0, 3, 1, 2))
        conv.bias.copy_(linear.bias)
    return conv


def test_conv_from_linear_reference_passes(capsys):
    ch01.conv_from_linear(good_conv_from_linear)
    assert "Exercise 01.3 passed" in capsys.readouterr().out


def test_conv_from_linear_naive_reshape_fails():
    def naive(linear, p, c):
        conv = nn.Conv2d(c, linear.out_features, p, stride=p)
        with torch.no_grad():
            conv.weight.copy_(linear.weight.reshape(linear.out_features, c, p, p))
            conv.bias.copy_(linear.bias)
        return conv
    fails(ch01.conv_from_linear, naive, "(D, P, P, C)")


def test_conv_from_linear_overlapping_stride_fails():
    def stride_one(linear, p, c):
        conv = good_conv_from_linear(linear, p, c)
        conv.stride = (1, 1)
        return conv
    fails(ch01.conv_from_linear, stride_one, "stride", "expected (4, 4), got (1, 1)")


def test_conv_from_linear_transposed_kernel_fails():
    def transposed(linear, p, c):
        conv = good_conv_from_linear(linear, p, c)
        with torch.no_grad():
            conv.weight.copy_(conv.weight.transpose(-1, -2).clone())
        return conv
    fails(ch01.conv_from_linear, transposed, "wrong values at")


def test_conv_from_linear_missing_bias_fails():
    def no_bias(linear, p, c):
        conv = nn.Conv2d(c, linear.out_features, p, stride=p, bias=False)
        with torch.no_grad():
            conv.weight.copy_(linear.weight.reshape(linear.out_features, p, p, c).permute(0, 3, 1, 2))
        return conv
    fails(ch01.conv_from_linear, no_bias, "no bias")


# ---------------------------------------------------------------- 02.1 attention
from vitcourse.checks import ch02_attention as ch02  # noqa: E402


def good_attention(q, k, v):
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return w @ v, w


def test_attention_reference_passes(capsys):
    ch02.attention(good_attention)
    assert "Exercise 02.1 passed" in capsys.readouterr().out


def test_attention_without_scale_fails():
    def unscaled(q, k, v):
        w = (q @ k.transpose(-2, -1)).softmax(-1)
        return w @ v, w
    fails(ch02.attention, unscaled, "02.1", "without the scale", "sqrt(d)")


def test_attention_divided_by_d_fails():
    def by_d(q, k, v):
        w = (q @ k.transpose(-2, -1) / q.shape[-1]).softmax(-1)
        return w @ v, w
    fails(ch02.attention, by_d, "divided by d")


def test_attention_softmax_over_queries_fails():
    def over_queries(q, k, v):
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2)
        return w @ v, w
    fails(ch02.attention, over_queries, "over the queries")


def test_attention_transposed_weights_fail():
    def transposed(q, k, v):
        out, w = good_attention(q, k, v)
        return out, w.transpose(-2, -1)
    fails(ch02.attention, transposed, "weights of attention", "transpose")


def test_attention_output_only_fails():
    fails(ch02.attention, lambda q, k, v: good_attention(q, k, v)[0], "should return a pair")


def test_attention_wrong_output_shape_fails():
    fails(ch02.attention, lambda q, k, v: (good_attention(q, k, v)[0][..., :1], good_attention(q, k, v)[1]),
          "output of attention", "wrong shape")


# ---------------------------------------------------------------- 02.2 multi-head attention
def good_mha(x, qkv, proj, heads):
    b, n, dim = x.shape
    hd = dim // heads
    q, k, v = qkv(x).reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    w = (q @ k.transpose(-2, -1) / math.sqrt(hd)).softmax(-1)
    return proj((w @ v).transpose(1, 2).reshape(b, n, dim))


def test_mha_reference_passes(capsys):
    ch02.multi_head_attention(good_mha)
    assert "Exercise 02.2 passed" in capsys.readouterr().out


def test_mha_single_head_fails():
    fails(ch02.multi_head_attention, lambda x, qkv, proj, heads: good_mha(x, qkv, proj, 1),
          "single-head", "Split q, k")


def test_mha_wrong_head_merge_fails():
    def bad_merge(x, qkv, proj, heads):  # (B, h, N, d) reshaped to (B, N, D) without moving the head axis
        b, n, dim = x.shape
        hd = dim // heads
        q, k, v = qkv(x).reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
        w = (q @ k.transpose(-2, -1) / math.sqrt(hd)).softmax(-1)
        return proj((w @ v).reshape(b, n, dim))
    fails(ch02.multi_head_attention, bad_merge, "02.2", "wrong values")


def test_mha_without_output_projection_fails():
    def no_proj(x, qkv, proj, heads):
        return good_mha(x, qkv, nn.Identity(), heads)
    fails(ch02.multi_head_attention, no_proj, "wrong values")


def test_mha_wrong_shape_fails():
    fails(ch02.multi_head_attention, lambda x, qkv, proj, heads: good_mha(x, qkv, proj, heads)[:, 0],
          "wrong shape", "expected (2, 5, 12), got (2, 12)")


# ---------------------------------------------------------------- 03.1 layer norm
from vitcourse.checks import ch03_encoder as ch03  # noqa: E402


def good_layer_norm(x, w, b, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def test_layer_norm_reference_passes(capsys):
    ch03.layer_norm(good_layer_norm)
    assert "Exercise 03.1 passed" in capsys.readouterr().out


def test_layer_norm_over_the_batch_fails():
    def batch_norm(x, w, b, eps=1e-6):
        dims = tuple(range(x.dim() - 1))
        return (x - x.mean(dims, keepdim=True)) / torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps) * w + b
    fails(ch03.layer_norm, batch_norm, "03.1", "BatchNorm", "last axis")


def test_layer_norm_unbiased_variance_fails():
    def unbiased(x, w, b, eps=1e-6):
        return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * w + b
    fails(ch03.layer_norm, unbiased, "unbiased", "d - 1")


def test_layer_norm_without_affine_fails():
    fails(ch03.layer_norm, lambda x, w, b, eps=1e-6: F.layer_norm(x, x.shape[-1:], eps=eps),
          "not scaled and shifted")


def test_layer_norm_wrong_shape_fails():
    fails(ch03.layer_norm, lambda x, w, b, eps=1e-6: good_layer_norm(x, w, b, eps).mean(-1),
          "wrong shape", "expected (2, 5, 8), got (2, 5)")


# ---------------------------------------------------------------- 03.2 encoder block
def good_block_forward(block, x):
    x = x + block.attn(block.norm1(x))
    return x + block.mlp(block.norm2(x))


def test_block_reference_passes(capsys):
    ch03.encoder_block(good_block_forward)
    assert "Exercise 03.2 passed" in capsys.readouterr().out


def test_block_post_norm_fails():
    def post(block, x):
        x = block.norm1(x + block.attn(x))
        return block.norm2(x + block.mlp(x))
    fails(ch03.encoder_block, post, "03.2", "post-norm", "x = x + attn(norm1(x))")


def test_block_without_residuals_fails():
    fails(ch03.encoder_block, lambda block, x: block.mlp(block.norm2(block.attn(block.norm1(x)))),
          "residual connections are missing")


def test_block_with_swapped_norms_fails():
    def swapped(block, x):
        x = x + block.attn(block.norm2(x))
        return x + block.mlp(block.norm1(x))
    fails(ch03.encoder_block, swapped, "wrong values at")


# ---------------------------------------------------------------- 03.3 class token
def good_add_class_token(tokens, cls, pos):
    return torch.cat([cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos


def test_class_token_reference_passes(capsys):
    ch03.add_class_token(good_add_class_token)
    assert "Exercise 03.3 passed" in capsys.readouterr().out


def test_class_token_at_the_end_fails():
    fails(ch03.add_class_token,
          lambda t, c, p: torch.cat([t, c.expand(t.shape[0], -1, -1)], dim=1) + p, "at the end", "first")


def test_class_token_without_positions_fails():
    fails(ch03.add_class_token, lambda t, c, p: torch.cat([c.expand(t.shape[0], -1, -1), t], dim=1),
          "position embeddings are not added")


def test_class_token_missing_fails():
    fails(ch03.add_class_token, lambda t, c, p: t + p[:, 1:], "wrong shape", "expected (2, 5, 6), got (2, 4, 6)")


# ---------------------------------------------------------------- 04.1 (the ViT class) / 04.2 (parameter count)
from vitcourse.checks import ch04_vit as ch04  # noqa: E402
from vitcourse.layers.blocks import EncoderBlock  # noqa: E402
from vitcourse.layers.patches import PatchEmbed  # noqa: E402


def test_chapter_04_checks_carry_their_exercise_ids():
    assert ch04.vit_class.exercise_id == "04.1"
    assert ch04.param_count.exercise_id == "04.2"


class GoodViT(nn.Module):
    """The chapter's reference answer to 04.1."""

    def __init__(self, image_size, patch_size, in_channels, num_classes, dim, depth, heads, mlp_dim):
        super().__init__()
        self.patch_embed = PatchEmbed(image_size, patch_size, in_channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, dim))
        self.blocks = nn.ModuleList([EncoderBlock(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, images):
        x = self.patch_embed(images)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed

    def encode(self, x):
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, images):
        return self.head(self.norm(self.encode(self.tokens(images)))[:, 0])


def test_vit_class_reference_passes(capsys):
    ch04.vit_class(GoodViT)
    assert "Exercise 04.1 passed" in capsys.readouterr().out


def test_vit_class_accepts_a_sequential_of_blocks(capsys):
    class Sequential(GoodViT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.blocks = nn.Sequential(*self.blocks)  # same parameter names: blocks.0, blocks.1, ...

        def encode(self, x):
            return self.blocks(x)
    ch04.vit_class(Sequential)
    assert "Exercise 04.1 passed" in capsys.readouterr().out


def test_vit_class_without_class_token_fails():
    class NoClassToken(GoodViT):  # mean pooling, no class token: the lucidrains "mean" variant
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            del self.cls_token
            self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, self.norm.weight.shape[0]))

        def forward(self, images):
            x = self.patch_embed(images) + self.pos_embed
            return self.head(self.norm(self.encode(x)).mean(1))
    fails(ch04.vit_class, NoClassToken, "04.1", "there is no class token", "parameters: yours",
          "cls_token 0/24")


def test_vit_class_without_position_embeddings_fails():
    class NoPositions(GoodViT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            del self.pos_embed

        def tokens(self, images):
            x = self.patch_embed(images)
            return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
    fails(ch04.vit_class, NoPositions, "04.1", "there are no position embeddings", "bag of patches")


def test_vit_class_without_final_norm_fails():
    class NoNorm(GoodViT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            del self.norm

        def forward(self, images):
            return self.head(self.encode(self.tokens(images))[:, 0])
    fails(ch04.vit_class, NoNorm, "04.1", "the final LayerNorm is missing", "eps=1e-6")


def test_vit_class_with_the_norm_built_but_not_applied_fails():
    class NormUnused(GoodViT):
        def forward(self, images):
            return self.head(self.encode(self.tokens(images))[:, 0])
    fails(ch04.vit_class, NormUnused, "04.1", "the final LayerNorm is not applied")


def test_vit_class_with_mean_pooling_fails():
    class MeanPool(GoodViT):
        def forward(self, images):
            return self.head(self.norm(self.encode(self.tokens(images)))[:, 1:].mean(1))
    fails(ch04.vit_class, MeanPool, "04.1", "mean of the patch tokens", "x[:, 0]")


def test_vit_class_reading_the_last_token_fails():
    class LastToken(GoodViT):
        def forward(self, images):
            return self.head(self.norm(self.encode(self.tokens(images)))[:, -1])
    fails(ch04.vit_class, LastToken, "04.1", "the head reads the last token")


def test_vit_class_with_positions_built_but_not_added_fails():
    class PositionsUnused(GoodViT):
        def tokens(self, images):
            x = self.patch_embed(images)
            return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
    fails(ch04.vit_class, PositionsUnused, "04.1", "the position embeddings are not added")


def test_vit_class_with_the_class_token_last_fails():
    class TokenLast(GoodViT):
        def tokens(self, images):
            x = self.patch_embed(images)
            return torch.cat([x, self.cls_token.expand(x.shape[0], -1, -1)], dim=1) + self.pos_embed

        def forward(self, images):
            return self.head(self.norm(self.encode(self.tokens(images)))[:, -1])
    fails(ch04.vit_class, TokenLast, "04.1", "it goes first")


def test_vit_class_with_one_block_too_few_fails_with_the_counts():
    class Shallow(GoodViT):
        def __init__(self, image_size, patch_size, in_channels, num_classes, dim, depth, heads, mlp_dim):
            super().__init__(image_size, patch_size, in_channels, num_classes, dim, depth - 1, heads, mlp_dim)
    message = fails(ch04.vit_class, Shallow, "04.1", "depth = 2 encoder blocks", "it holds 1",
                    "parameters: yours")
    assert "blocks 4,480/8,960" in message, message


def test_vit_class_with_positions_for_the_patches_only_fails_on_shape():
    class PatchPositions(GoodViT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, self.norm.weight.shape[0]))
    fails(ch04.vit_class, PatchPositions, "04.1", "pos_embed has shape (1, 16, 24), expected (1, 17, 24)",
          "1 + N rows")


def test_vit_class_with_pytorch_default_eps_fails():
    class DefaultEps(GoodViT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.norm = nn.LayerNorm(self.norm.weight.shape[0])
    fails(ch04.vit_class, DefaultEps, "04.1", "eps=1e-05", "1e-6")


def test_vit_class_with_the_head_on_every_token_fails_on_shape():
    class EveryToken(GoodViT):
        def forward(self, images):
            return self.head(self.norm(self.encode(self.tokens(images))))
    fails(ch04.vit_class, EveryToken, "04.1", "logits for every token", "x[:, 0]")


def test_vit_class_with_other_names_is_told_the_expected_names():
    class OtherNames(GoodViT):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.to_logits = self.head
            del self.head

        def forward(self, images):
            return self.to_logits(self.norm(self.encode(self.tokens(images)))[:, 0])
    fails(ch04.vit_class, OtherNames, "04.1", "the classification head is missing",
          "self.head = nn.Linear(dim, num_classes)", "no parameters named to_logits.weight, to_logits.bias",
          "name the parts patch_embed, cls_token")


def test_vit_class_with_another_signature_cannot_be_built():
    class Positional(GoodViT):
        def __init__(self, config):
            super().__init__(**config)
    fails(ch04.vit_class, Positional, "04.1", "could not be built", "TypeError")


def test_vit_class_stub_and_non_class_report_their_problem():
    class Stub(nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            raise NotImplementedError("Exercise 04.1: replace this stub with your code")

        def forward(self, images):
            raise NotImplementedError("Exercise 04.1: replace this stub with your code")
    with pytest.raises(NotImplementedError, match="Exercise 04.1 .* not implemented yet"):
        ch04.vit_class(Stub)
    fails(ch04.vit_class, GoodViT(32, 8, 3, 7, 24, 2, 3, 40), "04.1", "pass the class itself")


def good_param_count(cfg):
    d, n = cfg.dim, (cfg.image_size // cfg.patch_size) ** 2
    prefix = 1 if cfg.pool == "cls" else 0
    block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d * cfg.mlp_dim + cfg.mlp_dim + d
    return (cfg.patch_size ** 2 * cfg.in_channels * d + d + prefix * d + (n + prefix) * d
            + cfg.depth * block + 2 * d + d * cfg.num_classes + cfg.num_classes)


def test_param_count_reference_passes(capsys):
    ch04.param_count(good_param_count)
    assert "Exercise 04.2 passed" in capsys.readouterr().out


def test_param_count_without_final_norm_fails():
    fails(ch04.param_count, lambda cfg: good_param_count(cfg) - 2 * cfg.dim, "04.2", "final LayerNorm")


def test_param_count_mistakes_get_their_hints():
    fails(ch04.param_count, lambda cfg: good_param_count(cfg) - (1 if cfg.pool == "cls" else 0) * cfg.dim
          if cfg.pool == "cls" else good_param_count(cfg), "04.2", "class token")
    fails(ch04.param_count, lambda cfg: good_param_count(cfg) - ((cfg.image_size // cfg.patch_size) ** 2
          + (cfg.pool == "cls")) * cfg.dim, "04.2", "position embeddings")
    fails(ch04.param_count, lambda cfg: good_param_count(cfg) + 1, "04.2", "expected", "got")
    fails(ch04.param_count, lambda cfg: float(good_param_count(cfg)) + 0.5, "04.2", "is wrong")
