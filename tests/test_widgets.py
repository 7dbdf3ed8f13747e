"""vitcourse.analysis.widgets: drive the explorers' controls programmatically (no kernel, no browser) and
check that the figure follows."""
from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn.functional as F

from vitcourse import analysis
from vitcourse.analysis import capture
from vitcourse.data import CLASS_NAMES, load_fashion_mnist
from vitcourse.models import create_model
from vitcourse.analysis.widgets import AttentionExplorer, PatchExplorer, PositionEmbeddingExplorer


@pytest.fixture(scope="module")
def data():
    images, labels = load_fashion_mnist("test")
    return images[:200], labels[:200]


def box(ax, gid):
    found = [p for p in ax.patches if p.get_gid() == gid]
    assert len(found) == 1, f"expected one {gid!r} rectangle, found {len(found)}"
    return found[0]


# ---------------------------------------------------------------- PatchExplorer
def test_patch_explorer_highlight_follows_the_token_slider(data):
    ex = PatchExplorer(*data)
    assert ex.patch_size.value == 7 and ex.num_tokens == 16
    ax_img, ax_tok, _ = ex.figure().axes
    assert box(ax_img, "highlight").get_xy() == (-0.5, -0.5)
    ex.patch.value = 6  # row 1, column 2 of the 4x4 grid
    ax_img, ax_tok, ax_patch = ex.figure().axes
    assert box(ax_img, "highlight").get_xy() == (2 * 7 - 0.5, 1 * 7 - 0.5)
    assert box(ax_tok, "highlight-token").get_xy() == (5.5, -0.5)
    torch.testing.assert_close(torch.as_tensor(ax_patch.images[0].get_array()), ex.picker.image[7:14, 14:21])


def test_patch_explorer_patch_size_changes_the_sequence(data):
    ex = PatchExplorer(*data)
    ex.patch_size.value = 4
    assert ex.num_tokens == 49 and ex.patch.max == 48
    ax_img, ax_tok, _ = ex.figure().axes
    assert ax_tok.images[0].get_array().shape == (16, 49)  # one column of 4x4 pixels per token
    assert "N = 49" in ax_tok.get_title() and "2,401" in ax_tok.get_title()
    ex.patch.value = 48
    ex.patch_size.value = 14  # 2x2 grid: the token index is clamped to the last token
    assert ex.patch.value == 3
    assert box(ex.figure().axes[0], "highlight").get_xy() == (13.5, 13.5)


def test_patch_explorer_shows_the_chosen_class_and_image(data):
    images, labels = data
    ex = PatchExplorer(images, labels)
    ex.class_picker.value = 8
    ex.index.value = 2
    expected = images[(labels == 8).nonzero().flatten()[2]]
    ax_img = ex.figure().axes[0]
    torch.testing.assert_close(torch.as_tensor(ax_img.images[0].get_array()), expected)
    assert ax_img.get_title().startswith(CLASS_NAMES[8])


def test_patch_explorer_redraws_once_per_change_when_displayed(data):
    ex = PatchExplorer(*data)
    ui = ex.ui
    assert ui.children[-1] is ex.image_widget
    first = bytes(ex.image_widget.value)
    assert first.startswith(b"\x89PNG")
    before = ex.redraws
    ex.patch_size.value = 2  # also changes the token slider's range: still one redraw
    ex.class_picker.value = 3
    assert ex.redraws == before + 2
    assert bytes(ex.image_widget.value) != first


def test_patch_explorer_rejects_a_patch_size_that_does_not_divide_the_image(data):
    with pytest.raises(ValueError, match="patch_sizes"):
        PatchExplorer(*data, patch_sizes=[5, 7])


# ---------------------------------------------------------------- PositionEmbeddingExplorer
def row_col_model():
    """A ViT whose position embeddings are [one-hot(row), one-hot(col), 0...]: known similarities."""
    model = create_model("vit_fmnist", pool="cls", depth=1)
    rows = torch.arange(4).repeat_interleave(4)
    cols = torch.arange(4).repeat(4)
    codes = torch.cat([F.one_hot(rows, 4), F.one_hot(cols, 4)], -1).float()  # (16, 8)
    with torch.no_grad():
        model.pos_embed.zero_()
        model.pos_embed[0, 0, -1] = 1.0  # the class token: excluded, must not matter
        model.pos_embed[0, 1:, :8] = codes
    return model


def test_position_explorer_shows_the_chosen_patch_and_moves_the_outline():
    torch.manual_seed(0)
    models = {"row/col code": row_col_model(), "untrained": create_model("vit_fmnist", depth=1)}
    ex = PositionEmbeddingExplorer(models)
    ex.choose(1, 2)
    ax_one, ax_all = ex.figure().axes[:2]  # then two colour bars
    expected = torch.zeros(4, 4)
    expected[1, :] += 0.5
    expected[:, 2] += 0.5
    torch.testing.assert_close(torch.as_tensor(ax_one.images[0].get_array()), expected)
    assert box(ax_one, "highlight").get_xy() == (1.5, 0.5)
    assert box(ax_all, "highlight").get_xy() == (2 * 5 - 0.5, 1 * 5 - 0.5)
    ex.model_picker.value = "untrained"
    ax_one = ex.figure().axes[0]
    other = analysis.position_similarity(models["untrained"].pos_embed, (4, 4), 0)[1, 2]
    torch.testing.assert_close(torch.as_tensor(ax_one.images[0].get_array()), other)


def test_position_explorer_buttons_choose_a_patch():
    ex = PositionEmbeddingExplorer(row_col_model())
    _ = ex.ui  # builds the buttons
    before = ex.redraws
    ex.buttons[3][0].click()
    assert (ex.row.value, ex.col.value) == (3, 0)
    assert ex.redraws == before + 1
    assert box(ex.figure().axes[0], "highlight").get_xy() == (-0.5, 2.5)


def test_position_explorer_rejects_a_model_without_position_embeddings():
    with pytest.raises(ValueError, match="no position embedding"):
        PositionEmbeddingExplorer({"none": create_model("vit_fmnist", depth=1, pos_embed="none")})


# ---------------------------------------------------------------- AttentionExplorer
@pytest.fixture(scope="module")
def cls_model():
    torch.manual_seed(0)
    return create_model("vit_fmnist", pool="cls", depth=2).eval()


def shown_map(fig):
    ax_map = fig.axes[1]
    found = [im for im in ax_map.images if im.get_gid() == "attention"]
    assert len(found) == 1
    return ax_map, torch.as_tensor(found[0].get_array())


def test_attention_explorer_map_follows_layer_head_and_query(data, cls_model):
    ex = AttentionExplorer(cls_model, *data)
    atts = analysis.capture_attention(cls_model, ex.picker.image[None])
    assert ex.query.value == "cls"
    _, m = shown_map(ex.figure())
    torch.testing.assert_close(m, analysis.upsample_map(atts[0][0].mean(0)[0, 1:].reshape(4, 4), (28, 28)))
    ex.layer.value, ex.head.value, ex.query.value = 1, 1, 5  # layer 2, head 2, patch (1, 1)
    ax_map, m = shown_map(ex.figure())
    expected = atts[1][0, 1, 1 + 5, 1:].reshape(4, 4)
    torch.testing.assert_close(m, analysis.upsample_map(expected, (28, 28)))
    assert box(ax_map, "query").get_xy() == (6.5, 6.5)
    ex.query.value = 15
    assert box(ex.figure().axes[1], "query").get_xy() == (20.5, 20.5)


def test_attention_explorer_rollout_toggle(data, cls_model):
    ex = AttentionExplorer(cls_model, *data)
    ex.rollout.value = True
    assert ex.layer.disabled and ex.head.disabled and ex.query.disabled
    ax_map, m = shown_map(ex.figure())
    atts = analysis.capture_attention(cls_model, ex.picker.image[None])
    expected = analysis.attention_rollout(atts, num_prefix_tokens=1, grid=(4, 4))[0]
    torch.testing.assert_close(m, analysis.upsample_map(expected, (28, 28)))
    assert "rollout" in ax_map.get_title()
    assert not [p for p in ax_map.patches if p.get_gid() == "query"]


def test_attention_explorer_prediction_and_one_forward_pass_per_image(data, cls_model, monkeypatch):
    calls = []
    real = analysis.capture_attention
    monkeypatch.setattr(capture, "capture_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    images, labels = data
    ex = AttentionExplorer(cls_model, images, labels)
    ex.picker.select(17)
    for layer, head in [(0, "mean"), (1, 0), (1, 1)]:
        ex.layer.value, ex.head.value = layer, head
        ex.figure()
    assert len(calls) == 1, "changing layer/head must not re-run the model"
    with torch.no_grad():
        probs = cls_model(analysis.prepare_images(cls_model, images[17:18])).softmax(-1)[0]
    torch.testing.assert_close(ex.probabilities, probs, atol=1e-5, rtol=1e-4)
    title = ex.figure().axes[0].get_title()
    assert f"true: {CLASS_NAMES[int(labels[17])]}" in title
    assert f"predicted: {CLASS_NAMES[int(probs.argmax())]}" in title


def test_attention_explorer_mean_pooled_model_offers_mean_over_queries(data):
    torch.manual_seed(0)
    model = create_model("vit_fmnist", depth=1)  # mean pooling, no class token
    ex = AttentionExplorer(model, *data)
    values = [v for _, v in ex.query.options]
    assert "cls" not in values and ex.query.value == "mean"
    atts = analysis.capture_attention(model, ex.picker.image[None])
    torch.testing.assert_close(ex.attention_map(), atts[0][0].mean(0).mean(0).reshape(4, 4))


def _timed(changes) -> list[float]:
    times = []
    for change in changes:
        start = time.perf_counter()
        change()
        times.append(time.perf_counter() - start)
    return times


def test_every_explorer_updates_well_under_a_second_on_the_shipped_checkpoint(data):
    """The issue's bar: "well under a second on a CPU for the shipped checkpoint". Each explorer
    is driven through its controls (a redraw each); the median must stay under 0.5 s and no
    single update over 1.5 s (the machine is shared: one slow outlier is noise, a slow median
    is not). Measured here: 0.1-0.25 s per update."""
    from vitcourse.training.checkpoint import load_pretrained
    trained = load_pretrained("vit_fmnist")
    untrained = create_model("vit_fmnist")
    patch = PatchExplorer(*data)
    _ = patch.ui  # built, as when displayed
    pos = PositionEmbeddingExplorer({"trained": trained, "untrained": untrained})
    _ = pos.ui  # built, as when displayed
    att = AttentionExplorer(trained, *data)
    _ = att.ui  # built, as when displayed

    def set_(widget, value):
        return lambda: setattr(widget, "value", value)

    times = {
        "PatchExplorer": _timed([set_(patch.patch, 5), set_(patch.patch_size, 4), set_(patch.patch, 30),
                                 set_(patch.patch_size, 14), set_(patch.class_picker, 3)]),
        "PositionEmbeddingExplorer": _timed([set_(pos.row, 0), set_(pos.col, 3),
                                             set_(pos.model_picker, "untrained"), set_(pos.row, 2)]),
        "AttentionExplorer": _timed([set_(att.query, 3), set_(att.layer, 5), set_(att.head, 1),
                                     set_(att.rollout, True), set_(att.rollout, False),
                                     set_(att.class_picker, 4)]),  # the last: a new image, a forward pass
    }
    for name, ts in times.items():
        ts = sorted(ts)
        assert ts[len(ts) // 2] < 0.5 and ts[-1] < 1.5, f"{name}: updates took {[round(t, 3) for t in ts]} s"


def test_attention_explorer_rejects_a_model_without_probes(data):
    with pytest.raises(ValueError, match="probes"):
        AttentionExplorer(torch.nn.Linear(3, 3), *data)
