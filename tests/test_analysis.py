"""vitcourse.analysis: rollout, attention distance, position similarity, filters, attention capture."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from vitcourse import analysis as A
from vitcourse.models import create_model


def random_attention(layers: int, b: int, h: int, n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, n, generator=g).mul(2).softmax(-1) for _ in range(layers)]


# ---------------------------------------------------------------- distances
def test_patch_distances_on_a_2x2_grid_are_pixel_distances_between_centres():
    d = A.patch_distances((2, 2), 7)
    s = 7 * math.sqrt(2)
    expected = torch.tensor([[0, 7, 7, s], [7, 0, s, 7], [7, s, 0, 7], [s, 7, 7, 0]])
    torch.testing.assert_close(d, expected)


def test_attention_to_self_only_has_distance_zero():
    eye = torch.eye(16).expand(3, 2, 16, 16)
    out = A.mean_attention_distance([eye, eye], grid=(4, 4), patch_size=7)
    assert out.shape == (2, 2)
    torch.testing.assert_close(out, torch.zeros(2, 2))


def test_uniform_attention_has_the_mean_pairwise_distance():
    grid, p = (4, 4), 7
    uniform = torch.full((2, 1, 16, 16), 1 / 16)
    out = A.mean_attention_distance([uniform], grid=grid, patch_size=p)
    # mean over all ordered pairs (including a patch with itself) of the centre distances
    centres = [(7 * i, 7 * j) for i in range(4) for j in range(4)]
    pairs = [math.dist(a, b) for a in centres for b in centres]
    assert out.item() == pytest.approx(sum(pairs) / len(pairs), rel=1e-6)


def test_each_head_and_layer_gets_its_own_distance():
    n = 4  # 2x2 grid
    swap = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.float)
    layer1 = torch.stack([torch.eye(n), swap])[None]  # (1, 2, 4, 4): head 0 self, head 1 right/left neighbour
    layer2 = torch.stack([swap, torch.eye(n)])[None]
    out = A.mean_attention_distance([layer1, layer2], grid=(2, 2), patch_size=5)
    torch.testing.assert_close(out, torch.tensor([[0.0, 5.0], [5.0, 0.0]]))


def test_class_token_is_dropped_and_patch_rows_are_renormalised():
    # 1 class token + 2x1 grid: each patch puts half its attention on the class token and half on
    # the other patch (10 px away). Renormalised over patches: all of it goes 10 px away.
    a = torch.tensor([[1.0, 0.0, 0.0],
                      [0.5, 0.0, 0.5],
                      [0.5, 0.5, 0.0]])[None, None]
    out = A.mean_attention_distance([a], grid=(2, 1), patch_size=10, num_prefix_tokens=1)
    assert out.item() == pytest.approx(10.0)


def test_mean_attention_distance_rejects_mismatched_token_counts():
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        A.mean_attention_distance([torch.eye(17)[None, None]], grid=(4, 4), patch_size=7)
    with pytest.raises(ValueError, match="grid"):
        A.mean_attention_distance([torch.eye(16)[None, None]], grid=(4, 0), patch_size=7)


# ---------------------------------------------------------------- rollout
@settings(max_examples=25, deadline=None)
@given(layers=st.integers(1, 4), n=st.integers(2, 10), seed=st.integers(0, 1000),
       fusion=st.sampled_from(A.HEAD_FUSIONS), discard=st.sampled_from([0.0, 0.3, 0.9]))
def test_rollout_rows_are_probability_distributions(layers, n, seed, fusion, discard):
    r = A.rollout_matrix(random_attention(layers, 2, 3, n, seed), fusion, discard)
    assert r.shape == (2, n, n)
    assert (r >= 0).all()
    torch.testing.assert_close(r.sum(-1), torch.ones(2, n))


def test_rollout_of_one_layer_is_half_attention_half_identity():
    att = random_attention(1, 2, 3, 5)
    expected = 0.5 * att[0].mean(1) + 0.5 * torch.eye(5)
    torch.testing.assert_close(A.rollout_matrix(att), expected)


def test_rollout_multiplies_later_layers_on_the_left():
    att = random_attention(2, 1, 2, 6, seed=3)
    a1 = (att[0].mean(1) + torch.eye(6)) / 2
    a2 = (att[1].mean(1) + torch.eye(6)) / 2
    torch.testing.assert_close(A.rollout_matrix(att), a2 @ a1)
    assert not torch.allclose(a2 @ a1, a1 @ a2, atol=1e-4)  # the order is really tested


def test_rollout_renormalises_rows_not_columns():
    # With max fusion the rows of A + I do not sum to 2, so dividing by the wrong sums (the
    # keepdim bug: column j divided by row j's sum) gives a different, non-stochastic matrix.
    att = random_attention(1, 1, 4, 5, seed=7)
    fused = att[0].amax(1) + torch.eye(5)
    right = fused / fused.sum(-1, keepdim=True)
    wrong = fused / fused.sum(-1)
    torch.testing.assert_close(A.rollout_matrix(att, "max"), right)
    assert not torch.allclose(A.rollout_matrix(att, "max"), wrong, atol=1e-3)


def test_discard_ratio_zeroes_the_weakest_weights_before_adding_the_identity():
    a = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.35, 0.4]])[None, None]
    kept = torch.tensor([[0.7, 0.0, 0.0], [0.0, 0.6, 0.3], [0.25, 0.35, 0.4]])  # weakest 3 of 9 zeroed
    expected = (kept + torch.eye(3)) / (kept + torch.eye(3)).sum(-1, keepdim=True)
    torch.testing.assert_close(A.rollout_matrix([a], discard_ratio=1 / 3 + 1e-6), expected[None])


def test_rollout_of_identity_attention_reads_the_class_token_or_the_mean_row():
    eye = [torch.eye(17).expand(2, 2, 17, 17)] * 3
    cls = A.attention_rollout(eye, num_prefix_tokens=1)
    torch.testing.assert_close(cls, torch.zeros(2, 16))  # the class token only ever saw itself
    eye16 = [torch.eye(16).expand(2, 2, 16, 16)] * 3
    mean_pool = A.attention_rollout(eye16, grid=(4, 4))  # num_prefix_tokens inferred: 0
    torch.testing.assert_close(mean_pool, torch.full((2, 4, 4), 1 / 16))


def test_rollout_class_row_matches_the_matrix():
    att = random_attention(3, 2, 2, 10, seed=1)  # 1 + 3x3
    r = A.rollout_matrix(att)
    torch.testing.assert_close(A.attention_rollout(att, grid=(3, 3)), r[:, 0, 1:].reshape(2, 3, 3))
    att0 = random_attention(3, 2, 2, 9, seed=1)  # mean pooling, 3x3
    torch.testing.assert_close(A.attention_rollout(att0, num_prefix_tokens=0), A.rollout_matrix(att0).mean(1))


def test_rollout_rejects_bad_arguments():
    att = random_attention(1, 1, 1, 4)
    with pytest.raises(ValueError, match="head_fusion"):
        A.rollout_matrix(att, head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        A.rollout_matrix(att, discard_ratio=1.0)
    with pytest.raises(ValueError, match="attentions"):
        A.rollout_matrix([])
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        A.attention_rollout(random_attention(1, 1, 1, 7))  # 7 and 6 are not squares


# ---------------------------------------------------------------- position similarity
def test_position_similarity_of_row_and_column_codes():
    # embedding = [one-hot(row), one-hot(col)]: cosine = (same row + same column) / 2
    gh, gw = 3, 4
    rows = torch.arange(gh).repeat_interleave(gw)
    cols = torch.arange(gw).repeat(gh)
    e = torch.cat([torch.nn.functional.one_hot(rows, gh), torch.nn.functional.one_hot(cols, gw)], -1).float()
    cls = torch.randn(1, gh + gw)
    sim = A.position_similarity(torch.cat([cls, e])[None], (gh, gw), num_prefix_tokens=1)
    assert sim.shape == (gh, gw, gh, gw)
    for i in range(gh):
        for j in range(gw):
            expected = ((rows == i).float() + (cols == j).float()).reshape(gh, gw) / 2
            torch.testing.assert_close(sim[i, j], expected)


def test_position_similarity_ignores_the_class_token_and_is_symmetric():
    pe = torch.randn(1, 17, 32)
    sim = A.position_similarity(pe, (4, 4), 1)
    pe2 = pe.clone()
    pe2[0, 0] = 100.0
    torch.testing.assert_close(A.position_similarity(pe2, (4, 4), 1), sim)
    flat = sim.reshape(16, 16)
    torch.testing.assert_close(flat, flat.T)
    torch.testing.assert_close(flat.diagonal(), torch.ones(16))


def test_position_similarity_rejects_a_wrong_grid():
    with pytest.raises(ValueError, match="needs 17"):
        A.position_similarity(torch.randn(1, 16, 8), (4, 4), num_prefix_tokens=1)


# ---------------------------------------------------------------- embedding filters
def test_embedding_filters_recover_the_dominant_direction():
    g = torch.Generator().manual_seed(0)
    pattern = torch.zeros(1, 7, 7)
    pattern[0, :, :3] = 1.0
    pattern[0, :, 4:] = -0.5
    mean = torch.randn(1, 1, 7, 7, generator=g)
    coef = torch.randn(64, 1, 1, 1, generator=g) * 5
    w = mean + coef * pattern + 0.01 * torch.randn(64, 1, 7, 7, generator=g)
    filters, var = A.embedding_filters(w, n=3, return_variance=True)
    assert filters.shape == (3, 1, 7, 7)
    expected = pattern / pattern.norm()
    torch.testing.assert_close(filters[0], expected, atol=5e-3, rtol=0)  # sign fixed: max |pixel| > 0
    assert var[0] > 0.99 and var.sum() <= 1.0 + 1e-6


def test_embedding_filters_of_a_linear_weight_match_the_conv_layout():
    w = torch.randn(32, 3, 4, 4)
    linear = rearrange(w, "d c p1 p2 -> d (p1 p2 c)")  # patchify's (p1, p2, c) order
    torch.testing.assert_close(A.embedding_filters(linear, 5, channels=3), A.embedding_filters(w, 5))


def test_embedding_filters_rejects_too_many_components():
    with pytest.raises(ValueError, match="n must be"):
        A.embedding_filters(torch.randn(8, 1, 7, 7), n=9)


# ---------------------------------------------------------------- plots
def test_plots_return_titled_figures():
    sim = A.position_similarity(torch.randn(16, 8), (4, 4))
    fig = A.plot_position_similarity(sim, fig=Figure(), highlight=(1, 2))
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() == "Input patch column"
    box = [p for p in ax.patches if p.get_gid() == "highlight"][0]
    assert box.get_xy() == (2 * 5 - 0.5, 1 * 5 - 0.5)
    fig = A.plot_embedding_filters(A.embedding_filters(torch.randn(20, 1, 7, 7), 6), ncols=3, fig=Figure())
    assert len(fig.axes) == 6
    fig = A.plot_mean_attention_distance(torch.rand(6, 2) * 20, patch_size=7, image_size=28, fig=Figure())
    assert fig.axes[0].get_ylabel() == "Mean attention distance (pixels)"


# ---------------------------------------------------------------- capturing attention from a ViT
@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_capture_attention_returns_one_row_stochastic_map_per_layer(images, pool):
    torch.manual_seed(0)
    model = create_model("vit_fmnist", pool=pool, depth=3)
    atts, logits = A.capture_attention(model, images, return_logits=True)
    n = 16 + model.num_prefix_tokens
    assert len(atts) == 3
    for a in atts:
        assert a.shape == (3, model.config.heads, n, n)
        torch.testing.assert_close(a.sum(-1), torch.ones(3, model.config.heads, n))
    assert logits.shape == (3, 10)


def test_captured_first_layer_equals_attention_recomputed_by_hand(images):
    torch.manual_seed(1)
    model = create_model("vit_fmnist", pool="cls", depth=2).eval()
    atts = A.capture_attention(model, images)
    x = A.prepare_images(model, images)
    with torch.no_grad():
        tokens = model.patch_embed(x)  # (B, 16, D)
        tokens = torch.cat([model.cls_token.expand(len(x), -1, -1), tokens], 1) + model.pos_embed
        attn = model.blocks[0].attn
        q, k, _ = rearrange(attn.qkv(model.blocks[0].norm1(tokens)), "b n (t h d) -> t b h n d",
                            t=3, h=attn.heads)
        expected = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    torch.testing.assert_close(atts[0], expected, atol=1e-5, rtol=1e-4)


def test_capture_attention_logits_equal_the_fused_forward_and_settings_are_restored(images):
    torch.manual_seed(2)
    model = create_model("vit_fmnist", depth=2, attn_impl="fused")
    model.train()
    _, logits = A.capture_attention(model, images, return_logits=True)
    assert model.training, "the model's train/eval mode must be restored"
    assert model.config.attn_impl == "fused"
    assert all(m.fused for m in A.attention_modules(model))
    assert all(not m.probe._forward_hooks for m in A.attention_modules(model)), "hooks must be removed"
    model.eval()
    with torch.no_grad():
        fused_logits = model(A.prepare_images(model, images))
    torch.testing.assert_close(logits, fused_logits, atol=1e-4, rtol=1e-4)


def test_capture_attention_restores_settings_after_an_error():
    model = create_model("vit_fmnist", depth=1, attn_impl="fused")
    with pytest.raises(ValueError):
        A.capture_attention(model, torch.zeros(2, 1, 32, 32))  # wrong image size: the ViT refuses it
    assert model.config.attn_impl == "fused"
    assert all(m.fused for m in A.attention_modules(model))
    assert all(not m.probe._forward_hooks for m in A.attention_modules(model))


def test_capture_attention_rejects_a_model_without_probes():
    with pytest.raises(ValueError, match="probe"):
        A.capture_attention(torch.nn.Linear(4, 4), torch.zeros(1, 1, 2, 2))


def test_mean_attention_distance_of_a_real_model_is_within_the_image(images):
    torch.manual_seed(0)
    model = create_model("vit_fmnist", depth=2)
    atts = A.capture_attention(model, images)
    d = A.mean_attention_distance(atts, model.grid_size, 7, model.num_prefix_tokens)
    assert d.shape == (2, model.config.heads)
    assert (d >= 0).all() and (d <= 21 * math.sqrt(2)).all()


# ---------------------------------------------------------------- chapter 06 exercise checks
from vitcourse.checks import ExerciseError  # noqa: E402
from vitcourse.checks import ch06_inside as ch06  # noqa: E402


def fails(check, answer, *fragments: str) -> None:
    with pytest.raises(ExerciseError) as info:
        check(answer)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


def good_similarity(pos_embed, grid, num_prefix_tokens):
    e = pos_embed[0, num_prefix_tokens:]
    e = e / e.norm(dim=-1, keepdim=True)
    return (e @ e.T).reshape(*grid, *grid)


def test_check_06_1_passes_the_reference_and_names_the_usual_mistakes(capsys):
    assert ch06.position_similarity.exercise_id == "06.1"
    ch06.position_similarity(good_similarity)
    assert "Exercise 06.1 passed" in capsys.readouterr().out
    ch06.position_similarity(A.position_similarity)

    def dot(pe, grid, k):
        e = pe[0, k:]
        return (e @ e.T).reshape(*grid, *grid)

    def with_cls(pe, grid, k):
        e = pe[0] / pe[0].norm(dim=-1, keepdim=True)
        return e @ e.T

    fails(ch06.position_similarity, dot, "06.1", "dot products")
    fails(ch06.position_similarity, with_cls, "leave out the class token")
    fails(ch06.position_similarity, lambda pe, grid, k: good_similarity(pe, grid, k).transpose(0, 1),
          "wrong values")
    with pytest.raises(NotImplementedError, match="06.1"):
        ch06.position_similarity(lambda *a: (_ for _ in ()).throw(NotImplementedError()))


def good_rollout(attentions, head_fusion="mean"):
    result = None
    for a in attentions:
        a = (a.mean(1) if head_fusion == "mean" else a.amax(1)) + torch.eye(a.shape[-1])
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result
    return result


def test_check_06_2_passes_the_reference_and_names_the_usual_mistakes(capsys):
    ch06.rollout(good_rollout)
    ch06.rollout(lambda atts, fusion: A.rollout_matrix(atts, head_fusion=fusion))
    assert "Exercise 06.2 passed" in capsys.readouterr().out

    def fuse(a, fusion):
        return a.mean(1) if fusion == "mean" else a.amax(1)

    def no_keepdim(attentions, fusion):
        result = None
        for a in attentions:
            a = fuse(a, fusion) + torch.eye(a.shape[-1])
            a = a / a.sum(-1)[:, None, :]  # the widely copied bug, batched
            result = a if result is None else a @ result
        return result

    def no_identity(attentions, fusion):
        result = None
        for a in attentions:
            a = fuse(a, fusion)
            a = a / a.sum(-1, keepdim=True)
            result = a if result is None else a @ result
        return result

    def reversed_order(attentions, fusion):
        result = None
        for a in attentions:
            a = fuse(a, fusion) + torch.eye(a.shape[-1])
            a = a / a.sum(-1, keepdim=True)
            result = a if result is None else result @ a
        return result

    fails(ch06.rollout, no_keepdim, "keepdim=True")
    fails(ch06.rollout, no_identity, "identity is missing")
    fails(ch06.rollout, reversed_order, "wrong order")
    fails(ch06.rollout, lambda atts, fusion: good_rollout(atts, fusion)[:, 0], "wrong shape")
    fails(ch06.rollout, lambda atts, fusion: good_rollout(atts, "mean"), "max")  # ignores head_fusion


def good_distance(attn, grid, patch_size):
    d = A.patch_distances(grid, patch_size)
    return float((attn * d).sum(-1).mean())


def test_check_06_3_passes_the_reference_and_names_the_usual_mistakes(capsys):
    ch06.mean_distance(good_distance)
    assert "Exercise 06.3 passed" in capsys.readouterr().out
    fails(ch06.mean_distance, lambda a, g, p: good_distance(a, g, p) / p, "in patches")
    fails(ch06.mean_distance, lambda a, g, p: good_distance(a, g, p) + 1.0, "0 pixels away")
    fails(ch06.mean_distance, lambda a, g, p: float((a * A.patch_distances(g, p)).sum(-1).max()),
          "expected", "average over queries")
    fails(ch06.mean_distance, lambda a, g, p: "far", "should return a number")


def test_capture_attention_refuses_a_model_that_still_takes_the_fused_path(monkeypatch):
    """The failure of public rollout code when timm switched to fused attention: the hooks see
    nothing. Forcing every block back to the fused kernel must give a clear error, not [] maps."""
    from vitcourse.layers.blocks import EncoderBlock
    torch.manual_seed(0)
    model = create_model("vit_fmnist", depth=2)
    real_forward = EncoderBlock.forward
    monkeypatch.setattr(EncoderBlock, "forward", lambda self, x, fused=None: real_forward(self, x, fused=True))
    with pytest.raises(RuntimeError, match="called 0 times"):
        A.capture_attention(model, torch.zeros(2, 28, 28, dtype=torch.uint8))


def test_model_attention_distance_over_batches_equals_one_pass():
    torch.manual_seed(0)
    model = create_model("vit_fmnist", depth=2, pool="cls")
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    one_pass = A.mean_attention_distance(A.capture_attention(model, images), model.grid_size,
                                         model.config.patch_size, model.num_prefix_tokens)
    batched = A.model_attention_distance(model, images, batch_size=2)  # batches of 2, 2, 1
    assert batched.shape == (2, model.config.heads)
    torch.testing.assert_close(batched, one_pass, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        A.model_attention_distance(model, images, batch_size=0)


def test_token_pitch_is_the_grid_step_of_any_stem_not_the_unused_patch_size_field():
    assert A.token_pitch(create_model("vit_fmnist")) == 7  # patch 7: 4 x 4 tokens
    conv = create_model("vit_convstem_s_fmnist")  # strides 1, 2, 2: 7 x 7 tokens of 4 px
    assert conv.grid_size == (7, 7) and A.token_pitch(conv) == 4
    # a stem whose strides say 2 px while the (unused) patch_size field still says 4
    fine = create_model("vit_convstem_s_fmnist", conv_strides=(1, 1, 2), depth=1)
    assert fine.grid_size == (14, 14) and fine.config.patch_size == 4
    assert A.token_pitch(fine) == 2
    images = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    expected = A.mean_attention_distance(A.capture_attention(fine, images), (14, 14), 2, 0)
    torch.testing.assert_close(A.model_attention_distance(fine, images), expected)
    with pytest.raises(ValueError, match="grid_size"):
        A.token_pitch(torch.nn.Linear(2, 2))


@pytest.mark.results
@pytest.mark.slow
def test_chapter_06s_descriptions_hold_for_the_shipped_model():
    """Chapter 06 describes what its live cells show for the shipped vit_fmnist_p4_cls on the test
    images (2,000 for the attention maps, 5,000 for the distances, as in full mode); each assert
    quotes the sentence it checks."""
    from vitcourse.data import load_fashion_mnist
    from vitcourse.settings import seed_everything
    from vitcourse.training.checkpoint import load_pretrained

    images, _ = load_fashion_mnist("test")
    model = load_pretrained("vit_fmnist_p4_cls")
    seed_everything(0)
    untrained = create_model("vit_fmnist_p4_cls").eval()
    gh, gw = model.grid_size
    pitch = A.token_pitch(model)
    assert (gh, gw, pitch, model.num_prefix_tokens) == (7, 7, 4, 1)

    # §3 "The untrained copy is exactly where training started (same seed, same architecture)"
    start, trained = untrained.patch_embed.proj.weight.detach(), model.patch_embed.proj.weight.detach()
    torch.manual_seed(1)
    other = create_model("vit_fmnist_p4_cls").patch_embed.proj.weight.detach()

    def corr(a, b):
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    assert corr(trained, start) > 0.9 and abs(corr(trained, other)) < 0.2
    # "Random filters spread their variance over all 16 components, and the trained ones still do"
    top4 = {name: float(A.embedding_filters(w, 16, return_variance=True)[1][:4].sum())
            for name, w in [("untrained", start), ("trained", trained), ("change", trained - start)]}
    assert top4["untrained"] < 0.45 and abs(top4["trained"] - top4["untrained"]) < 0.05, top4
    # "The change, though, is concentrated: its first component, a flat patch, is brightness; the
    # next, a ramp from top to bottom"
    pcs, share = A.embedding_filters(trained - start, 16, return_variance=True)
    assert top4["change"] > 0.7 and share[0] > 0.5, share
    flat, ramp = pcs[0, 0], pcs[1, 0]  # (4, 4) each
    assert (flat > 0).all() and flat.min() > 0.5 * flat.max()
    vertical = float((ramp[2:].mean() - ramp[:2].mean()).abs())
    horizontal = float((ramp[:, 2:].mean() - ramp[:, :2].mean()).abs())
    assert vertical > 2 * horizontal, (vertical, horizontal)

    # §4 "the similarity is highest with the mirror image, next with the neighbours, and about zero
    # from two patches on; for the untrained model it is about zero everywhere ... At the largest
    # distances it rises a little again"
    dist = A.patch_distances((gh, gw), 1)
    rows, cols = torch.arange(gh * gw) // gw, torch.arange(gh * gw) % gw
    near = torch.minimum(dist, dist[:, rows * gw + (gw - 1 - cols)]).round()
    others = ~torch.eye(gh * gw, dtype=torch.bool)
    levels = near[others].unique()

    def curve(m):
        s = A.position_similarity(m.pos_embed, (gh, gw), 1).reshape(gh * gw, gh * gw)
        return [float(s[others & (near == v)].mean()) for v in levels], float(s[others & (near >= 2)].mean())

    (mirror, neighbours, *farther), two_plus = curve(model)
    assert mirror > neighbours > 0.1 and abs(two_plus) < 0.1 and farther[-1] > min(farther), (mirror, neighbours)
    assert max(abs(v) for v in curve(untrained)[0][:-1]) < 0.05

    # §5 "Untrained, all three kinds sit on 1 ... Trained, the outline gets more than an even share in
    # every layer and the background less; the inside of the garment gets more only in layer 2."
    batch = images[:2000]
    garment = (batch.float().unfold(1, pitch, pitch).unfold(2, pitch, pitch) > 0.1 * 255).float().mean(dim=(-1, -2))
    kinds = {"background": garment == 0, "outline": (garment > 0) & (garment < 1), "inside": garment == 1}

    def relative(maps):
        maps = maps / maps.mean(dim=(1, 2), keepdim=True)
        return {kind: float(maps[mask].mean()) for kind, mask in kinds.items()}

    atts = {name: A.capture_attention(m, batch) for name, m in [("trained", model), ("untrained", untrained)]}
    layers = {name: [relative(a[:, :, 0, 1:].mean(1).reshape(-1, gh, gw)) for a in att] for name, att in atts.items()}
    assert all(abs(w - 1) < 0.1 for layer in layers["untrained"] for w in layer.values()), layers["untrained"]
    assert all(layer["outline"] > 1 > layer["background"] for layer in layers["trained"]), layers["trained"]
    assert [layer["inside"] > 1 for layer in layers["trained"]] == [False, True, False, False, False, False]

    # §6 "it is highest along the outline and lowest on the background, while the untrained model's is even"
    rolled = {name: relative(A.attention_rollout(att, num_prefix_tokens=1, grid=(gh, gw))) for name, att in atts.items()}
    r = rolled["trained"]
    assert r["outline"] > 1.05 and r["background"] < min(r["inside"], 1), r
    assert all(abs(w - 1) < 0.02 for w in rolled["untrained"].values()), rolled["untrained"]

    # §7 "Untrained, every head sits on the uniform line ... Trained, the heads move only about a pixel
    # away from that line: the two nearest-looking heads are in layers 2 and 4, and the last layer is
    # the only one whose heads both look farther than uniform." (summary: "the farthest in the last")
    uniform = float(A.patch_distances((gh, gw), pitch).mean())
    far = {name: A.model_attention_distance(m, images[:5000]) for name, m in [("trained", model), ("untrained", untrained)]}
    assert (far["untrained"] - uniform).abs().max() < 0.2
    d = far["trained"]
    assert (d - uniform).abs().max() < 1.5 and (d - uniform).abs().max() > 0.7, d
    nearest = d.flatten().argsort()[:2] // d.shape[1]  # the layers (from 0) of the two nearest heads
    assert sorted(nearest.tolist()) == [1, 3], d
    assert ((d > uniform).all(dim=1)).tolist() == [False] * (len(d) - 1) + [True], d
    assert int(d.mean(dim=1).argmax()) == len(d) - 1, d
