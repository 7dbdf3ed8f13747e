"""The exercise checks of chapter 13: each reference answer passes, each known-wrong answer fails
with the message that explains it, a stub is reported as not implemented; and the code cells of
the chapter's source (chapters/13_small_data.md) compile."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import fails
from vitcourse.checks import ch13_small_data as ch13


def test_ids():
    assert ch13.seq_pool.exercise_id == "13.1"
    assert ch13.shift_images.exercise_id == "13.2"


# ---------------------------------------------------------------- 13.1
def pool(x, w, b):
    weights = torch.softmax(x @ w.T + b, dim=1)  # (B, N, 1): one weight per token
    return (weights * x).sum(dim=1)  # (B, D)


def test_seq_pool_reference_passes(capsys):
    ch13.seq_pool(pool)
    assert "Exercise 13.1 passed" in capsys.readouterr().out


def test_seq_pool_through_the_package_passes(capsys):
    from vitcourse.layers import sequence_pool
    ch13.seq_pool(lambda x, w, b: sequence_pool(x, x @ w.T + b))
    assert "Exercise 13.1 passed" in capsys.readouterr().out


def test_seq_pool_without_the_bias_passes_because_a_softmax_ignores_a_shift(capsys):
    # the bias adds the same number to every token's score, which the softmax over tokens cancels:
    # leaving it out is not a mistake, so the check must not call it one
    ch13.seq_pool(lambda x, w, b: (torch.softmax(x @ w.T, dim=1) * x).sum(1))
    assert "Exercise 13.1 passed" in capsys.readouterr().out


def test_seq_pool_softmax_over_the_last_axis_fails():
    fails(ch13.seq_pool, lambda x, w, b: (torch.softmax(x @ w.T + b, dim=-1) * x).sum(1),
          "13.1", "plain sum", "dim=1")


def test_seq_pool_softmax_over_the_channels_fails():
    fails(ch13.seq_pool, lambda x, w, b: (torch.softmax(x * w + b, dim=-1) * x).sum(1), "over the D channels")


def test_seq_pool_mean_pooling_fails():
    fails(ch13.seq_pool, lambda x, w, b: x.mean(1), "mean pooling")


def test_seq_pool_softmax_over_the_batch_fails():
    fails(ch13.seq_pool, lambda x, w, b: (torch.softmax(x @ w.T + b, dim=0) * x).sum(1), "over the batch")


def test_seq_pool_bias_on_the_output_fails():
    fails(ch13.seq_pool, lambda x, w, b: pool(x, w, b) + b, "adds the bias to the pooled vector")


def test_seq_pool_averaging_the_weighted_tokens_fails():
    fails(ch13.seq_pool, lambda x, w, b: (torch.softmax(x @ w.T + b, dim=1) * x).mean(1), "divided by N")


def test_seq_pool_keeping_the_token_axis_fails():
    fails(ch13.seq_pool, lambda x, w, b: (torch.softmax(x @ w.T + b, dim=1) * x).sum(1, keepdim=True),
          "(B, 1, D)")


def test_seq_pool_in_place_fails():
    def in_place(x, w, b):
        return x.mul_(torch.softmax(x @ w.T + b, dim=1)).sum(1)
    fails(ch13.seq_pool, in_place, "in place")


def test_seq_pool_stub_is_reported_as_not_implemented():
    def stub(x, w, b):
        raise NotImplementedError("Exercise 13.1: write seq_pool")
    with pytest.raises(NotImplementedError, match=r"Exercise 13.1 .* is not implemented yet: write seq_pool"):
        ch13.seq_pool(stub)


# ---------------------------------------------------------------- 13.2
def shift(x, s):
    h, w = x.shape[-2:]
    p = F.pad(x, (s, s, s, s))  # zeros around: (B, C, H + 2s, W + 2s)
    return torch.cat([x, p[..., 2 * s:, 2 * s:], p[..., 2 * s:, :w], p[..., :h, 2 * s:], p[..., :h, :w]], dim=1)


def test_shift_images_reference_passes(capsys):
    ch13.shift_images(shift)
    assert "Exercise 13.2 passed" in capsys.readouterr().out


def test_shift_images_the_package_passes(capsys):
    from vitcourse.layers.spt import shifted_images
    ch13.shift_images(shifted_images)
    assert "Exercise 13.2 passed" in capsys.readouterr().out


def test_shift_images_in_the_wrong_direction_fails():
    def opposite(x, s):
        h, w = x.shape[-2:]
        p = F.pad(x, (s, s, s, s))
        return torch.cat([x, p[..., :h, :w], p[..., :h, 2 * s:], p[..., 2 * s:, :w], p[..., 2 * s:, 2 * s:]], dim=1)
    fails(ch13.shift_images, opposite, "13.2", "opposite way", "x[i + s, j + s]")


def test_shift_images_with_a_wrapping_roll_fails():
    def rolled(x, s):
        return torch.cat([x] + [torch.roll(x, (dy * s, dx * s), (-2, -1))
                                for dy, dx in [(-1, -1), (-1, 1), (1, -1), (1, 1)]], dim=1)
    fails(ch13.shift_images, rolled, "wraps the pixels around", "with 0")


def test_shift_images_in_the_wrong_order_fails():
    def reordered(x, s):
        c = x.shape[1]
        out = shift(x, s)
        parts = [out[:, i * c:(i + 1) * c] for i in range(5)]
        return torch.cat([parts[0], parts[1], parts[3], parts[2], parts[4]], dim=1)  # column by column
    message = fails(ch13.shift_images, reordered, "another order", "[the image, left-up, right-up, left-down, right-down]")
    assert "got [the image, left-up, left-down, right-up, right-down]" in message


def test_shift_images_in_reverse_order_fails_as_the_opposite_direction():
    def reversed_order(x, s):  # the same tensor as every copy moved the opposite way
        c = x.shape[1]
        out = shift(x, s)
        parts = [out[:, i * c:(i + 1) * c] for i in range(5)]
        return torch.cat([parts[0], parts[4], parts[3], parts[2], parts[1]], dim=1)
    fails(ch13.shift_images, reversed_order, "opposite way", "reverse order")


def test_shift_images_transposed_for_square_images_only_fails():
    def transposed(x, s):  # slices with H where W belongs: right only for square images
        h, w = x.shape[-2:]
        p = F.pad(x, (s, s, s, s))
        return torch.cat([x, p[..., 2 * s:, 2 * s:], p[..., 2 * s:, :h], p[..., :w, 2 * s:], p[..., :h, :w]], dim=1)
    fails(ch13.shift_images, transposed, "13.2", "not square (H=6, W=10)", "H where W belongs")


def test_shift_images_stacked_instead_of_concatenated_fails():
    fails(ch13.shift_images, lambda x, s: shift(x, s).reshape(x.shape[0], 5, *x.shape[1:]), "(B, 5, C, H, W)")


def test_shift_images_without_the_image_itself_fails():
    fails(ch13.shift_images, lambda x, s: shift(x, s)[:, x.shape[1]:], "4C channels")


def test_shift_images_interleaved_channels_fails():
    def interleaved(x, s):
        b, c, h, w = x.shape
        return shift(x, s).reshape(b, 5, c, h, w).transpose(1, 2).reshape(b, 5 * c, h, w)
    fails(ch13.shift_images, interleaved, "interleaves")


def test_shift_images_along_the_axes_fails():
    def straight(x, s):
        h, w = x.shape[-2:]
        p = F.pad(x, (s, s, s, s))
        return torch.cat([x, p[..., s:s + h, 2 * s:], p[..., s:s + h, :w], p[..., 2 * s:, s:s + w],
                          p[..., :h, s:s + w]], dim=1)
    fails(ch13.shift_images, straight, "one axis only")


def test_shift_images_by_twice_the_shift_fails():
    fails(ch13.shift_images, lambda x, s: shift(x, 2 * s), "wrong number of pixels")


def test_shift_images_stub_is_reported_as_not_implemented():
    def stub(x, s):
        raise NotImplementedError
    with pytest.raises(NotImplementedError, match=r"Exercise 13.2 .* is not implemented yet"):
        ch13.shift_images(stub)


# ---------------------------------------------------------------- the chapter's source
def test_chapter_13_source_code_cells_compile():
    from tools.chapters import read_source
    from vitcourse.data import REPO_ROOT

    cells = read_source(REPO_ROOT / "chapters" / "13_small_data.md").cells
    sources = [c.source for c in cells if c.cell_type == "code"]
    for source in sources:
        python = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
        compile(python, "<ch13 cell>", "exec")
    text = "\n".join(c.source for c in cells)
    assert "TODO" not in text
    for ex, call in (("13.1", "check.seq_pool("), ("13.2", "check.shift_images(")):
        i = next(i for i, s in enumerate(sources) if s.startswith(f"# check: {ex}"))
        assert "### BEGIN SOLUTION" in sources[i - 1] and "### END SOLUTION" in sources[i - 1]
        assert call in sources[i]
    # section 7 reads the committed results and quotes them from the facts (its claims: test_small_data.py);
    # no runner machinery in the chapter: that is the experiments' appendix
    markdown = [c.source for c in cells if c.cell_type == "markdown"]
    start = next(i for i, s in enumerate(markdown) if s.startswith("## 7."))
    end = next(i for i, s in enumerate(markdown) if s.startswith("## 8."))
    section = "\n".join(markdown[start:end])
    assert "{{ conv_stem_s_mean }}" in section and "(appendix_experiments.md)" in section
    assert "read_rows()" in text and "load_pretrained(" in text
    assert "train_budgeted(" not in text and "planned_runs(" not in text
    prose = "\n".join(c.source for c in cells if c.cell_type == "markdown").lower()
    for word in ("probe", "budget", "planned", "csv"):
        assert word not in prose, word
