"""The exercise checks of chapters 08-10: each reference answer passes, each known-wrong answer
fails with the message that explains it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from helpers import fails
from vitcourse.checks import ch08_t2t as ch08
from vitcourse.checks import ch09_swin as ch09
from vitcourse.models.swin import window_partition, window_reverse
from vitcourse.models.t2t import soft_split


def test_ids():
    assert ch08.soft_split.exercise_id == "08.1"
    assert ch08.t2t_module.exercise_id == "08.2"
    assert ch09.window_partition.exercise_id == "09.1"
    assert ch09.shifted_window_mask.exercise_id == "09.2"
    assert ch09.swin_block.exercise_id == "09.3"


# ---------------------------------------------------------------- 08.1
def soft_split_by_hand(x, k, s, p, step=None, pad=True, channel_last=False, column_major=False):
    """The soft split in the paper's notation (s = overlap), with one mistake switched on at will."""
    step = k - s if step is None else step
    if pad:
        x = F.pad(x, (p, p, p, p))
    rows, cols = range(0, x.shape[-2] - k + 1, step), range(0, x.shape[-1] - k + 1, step)
    corners = [(i, j) for j in cols for i in rows] if column_major else [(i, j) for i in rows for j in cols]
    windows = [x[:, :, i:i + k, j:j + k] for i, j in corners]  # each (B, C, k, k)
    if channel_last:
        windows = [w.permute(0, 2, 3, 1) for w in windows]
    return torch.stack([w.flatten(1) for w in windows], dim=1)  # (B, L, C*k*k)


def test_soft_split_reference_and_unfold_pass(capsys):
    ch08.soft_split(soft_split_by_hand)
    ch08.soft_split(lambda x, k, s, p: F.unfold(x, k, padding=p, stride=k - s).transpose(1, 2))
    assert capsys.readouterr().out.count("Exercise 08.1 passed") == 2


def test_soft_split_with_the_overlap_as_stride_fails():
    fails(ch08.soft_split, lambda x, k, s, p: soft_split_by_hand(x, k, s, p, step=s),
          "08.1", "s is the overlap", "k - s = 2")


def test_soft_split_without_padding_fails():
    fails(ch08.soft_split, lambda x, k, s, p: soft_split_by_hand(x, k, s, p, pad=False), "without padding")


def test_soft_split_channel_last_flattening_fails():
    fails(ch08.soft_split, lambda x, k, s, p: soft_split_by_hand(x, k, s, p, channel_last=True),
          "channel-first")


def test_soft_split_column_major_windows_fails():
    fails(ch08.soft_split, lambda x, k, s, p: soft_split_by_hand(x, k, s, p, column_major=True),
          "column by column")


def test_soft_split_unfold_without_transpose_fails():
    fails(ch08.soft_split, lambda x, k, s, p: F.unfold(x, k, padding=p, stride=k - s), "(B, L, C*k*k)")


def test_stub_reports_not_implemented():
    def stub(*args):
        raise NotImplementedError
    with pytest.raises(NotImplementedError, match="Exercise 08.1"):
        ch08.soft_split(stub)


# ---------------------------------------------------------------- 08.2
def t2t_forward(module, images, plain_reshape=False, project=True):
    x = images
    for (k, stride, p), layer in zip(module.splits[:-1], module.token_layers):
        tokens = layer(soft_split(x, k, stride, p))  # (B, L, token_dim)
        b, n, c = tokens.shape
        side = int(round(n ** 0.5))
        x = tokens.reshape(b, c, side, side) if plain_reshape else tokens.transpose(1, 2).reshape(b, c, side, side)
    k, stride, p = module.splits[-1]
    tokens = soft_split(x, k, stride, p)
    return module.project(tokens) if project else tokens


def test_t2t_module_reference_passes(capsys):
    ch08.t2t_module(t2t_forward)
    assert "Exercise 08.2 passed" in capsys.readouterr().out


def test_t2t_module_plain_reshape_fails():
    fails(ch08.t2t_module, lambda m, x: t2t_forward(m, x, plain_reshape=True), "08.2", "transpose(1, 2)")


def test_t2t_module_without_projection_fails():
    fails(ch08.t2t_module, lambda m, x: t2t_forward(m, x, project=False), "module.project")


def test_t2t_module_calling_the_module_itself_fails():
    fails(ch08.t2t_module, lambda m, x: m(x), "build the forward from the module's parts")


def test_t2t_module_shape_error_inside_the_answer_is_explained():
    fails(ch08.t2t_module, lambda m, x: m.project(soft_split(x, *m.splits[0])), "raised RuntimeError")


# ---------------------------------------------------------------- 09.1
def good_partition(x, m):
    b, h, w, c = x.shape
    x = x.view(b, h // m, m, w // m, m, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, m * m, c)


def test_window_partition_reference_passes(capsys):
    ch09.window_partition(good_partition)
    assert "Exercise 09.1 passed" in capsys.readouterr().out


def test_window_partition_plain_reshape_fails():
    fails(ch09.window_partition, lambda x, m: x.reshape(-1, m * m, x.shape[-1]), "plain reshape")


def test_window_partition_column_major_fails():
    fails(ch09.window_partition,
          lambda x, m: rearrange(x, "b (nh m1) (nw m2) c -> (b nw nh) (m1 m2) c", m1=m, m2=m),
          "column by column")


# ---------------------------------------------------------------- 09.2
def good_mask(h, w, m, s):
    ids = torch.zeros(h, w)
    if s:
        cuts = (slice(0, -m), slice(-m, -s), slice(-s, None))
        n = 0
        for a in cuts:
            for b in cuts:
                ids[a, b] = n
                n += 1
    win = good_partition(ids[None, :, :, None], m)[..., 0]
    return win[:, :, None] == win[:, None, :]


def test_shifted_window_mask_reference_passes_bool_and_float(capsys):
    ch09.shifted_window_mask(good_mask)
    ch09.shifted_window_mask(lambda *a: torch.zeros(good_mask(*a).shape).masked_fill(~good_mask(*a), -1e9))
    assert capsys.readouterr().out.count("Exercise 09.2 passed") == 2


def test_shifted_window_mask_inverted_fails():
    fails(ch09.shifted_window_mask, lambda *a: ~good_mask(*a), "inverted")


def test_shifted_window_mask_all_allowed_fails():
    fails(ch09.shifted_window_mask, lambda *a: torch.ones(good_mask(*a).shape, dtype=torch.bool), "allows every pair")


def test_shifted_window_mask_small_negative_fails():
    fails(ch09.shifted_window_mask,
          lambda *a: torch.zeros(good_mask(*a).shape).masked_fill(~good_mask(*a), -1.0), "large negative")


def test_shifted_window_mask_wrong_regions_fails():
    def two_regions(h, w, m, s):  # forgets the middle band: only wrapped vs not along rows
        ids = torch.zeros(h, w)
        if s:
            ids[-s:, :] = 1
        win = good_partition(ids[None, :, :, None], m)[..., 0]
        return win[:, :, None] == win[:, None, :]
    fails(ch09.shifted_window_mask, two_regions, "is wrong at", "expected masked")


# ---------------------------------------------------------------- 09.3
def window_attention(attn, windows, bias):
    q, k, v = rearrange(attn.qkv(windows), "b n (three h d) -> three b h n d", three=3, h=attn.heads)
    weights = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + bias).softmax(-1)
    return attn.proj(rearrange(weights @ v, "b h n d -> b n (h d)"))


def swin_block_forward(block, x, roll=True, roll_back=True, sign=-1, mask=True, rel_bias=True,
                       interleave=False):
    """The block's forward from its parts, with one mistake switched on at will."""
    b, h, w, _ = x.shape
    m, s = block.window_size, block.shift
    y = block.norm1(x)
    if roll:
        y = torch.roll(y, shifts=(sign * s, sign * s), dims=(1, 2))
    windows = window_partition(y, m)
    bias = block.attn.relative_position_bias() if rel_bias else 0.0
    if mask and block.attn_mask is not None:
        per_image = block.attn_mask.repeat_interleave(b, 0) if interleave else block.attn_mask.repeat(b, 1, 1)
        bias = bias + per_image[:, None]
    y = window_reverse(window_attention(block.attn, windows, bias), m, h, w)
    if roll and roll_back:
        y = torch.roll(y, shifts=(-sign * s, -sign * s), dims=(1, 2))
    x = x + y
    return x + block.mlp(block.norm2(x))


def test_swin_block_reference_passes(capsys):
    ch09.swin_block(swin_block_forward)
    assert "Exercise 09.3 passed" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, fragment", [
    (dict(roll=False), "the windows are not shifted"),
    (dict(roll=False, mask=False), "the windows are not shifted"),
    (dict(roll_back=False), "never rolled back"),
    (dict(sign=1), "rolled the wrong way"),
    (dict(mask=False), "the shift mask is missing"),
    (dict(rel_bias=False), "the relative position bias is missing"),
    (dict(rel_bias=False, mask=False), "the relative position bias is missing"),
    (dict(interleave=True), "not repeat_interleave"),
])
def test_swin_block_known_mistakes_fail_with_their_message(mistake, fragment):
    fails(ch09.swin_block, lambda block, x: swin_block_forward(block, x, **mistake), "09.3", fragment)


def test_swin_block_calling_the_block_itself_fails():
    fails(ch09.swin_block, lambda block, x: block(x), "build the forward from the block's parts")


def test_swin_block_check_leaves_the_global_random_state_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ch09.swin_block(swin_block_forward)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- 10.1 / 10.2
from vitcourse.checks import ch10_compare as ch10  # noqa: E402


def test_ch10_ids():
    assert ch10.vit_macs.exercise_id == "10.1"
    assert ch10.basic_block.exercise_id == "10.2"


def good_vit_macs(s, p, c, d, depth, mlp, k):
    n = (s // p) ** 2
    block = n * (3 * d * d + d * d + 2 * d * mlp) + 2 * n * n * d
    return n * p * p * c * d + depth * block + d * k


def test_vit_macs_reference_passes(capsys):
    ch10.vit_macs(good_vit_macs)
    assert "Exercise 10.1 passed" in capsys.readouterr().out


def test_vit_macs_without_attention_fails():
    fails(ch10.vit_macs, lambda s, p, c, d, L, m, k: good_vit_macs(s, p, c, d, L, m, k) - L * 2 * (s // p) ** 4 * d,
          "attention itself is missing")


def test_vit_macs_without_patch_embedding_fails():
    fails(ch10.vit_macs, lambda s, p, c, d, L, m, k: good_vit_macs(s, p, c, d, L, m, k) - (s // p) ** 2 * p * p * c * d,
          "patch embedding")


def test_vit_macs_flops_instead_of_macs_fails():
    fails(ch10.vit_macs, lambda *a: 2 * good_vit_macs(*a), "10.1", "expected")


class Block(torch.nn.Module):
    """Exercise 10.2's answer: ResNet's basic block, with one mistake switched on at will."""

    def __init__(self, c_in, c_out, stride=1, mistake=""):
        super().__init__()
        nn = torch.nn
        self.mistake = mistake
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        projects = (stride != 1 or c_in != c_out) and mistake != "identity shortcut"
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
                         if projects else nn.Identity())

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.mistake == "no skip":
            return F.relu(out)
        if self.mistake == "relu before the sum":
            return F.relu(out) + self.shortcut(x)
        return F.relu(out + self.shortcut(x))


def block_with(mistake):
    return type("Block", (Block,), {"__init__": lambda self, a, b, s=1: Block.__init__(self, a, b, s, mistake)})


def test_basic_block_reference_and_the_packages_block_pass(capsys):
    from vitcourse.models.cnn import BasicBlock
    ch10.basic_block(Block)
    ch10.basic_block(BasicBlock)
    assert capsys.readouterr().out.count("Exercise 10.2 passed") == 2


def test_basic_block_without_the_skip_connection_fails():
    fails(ch10.basic_block, block_with("no skip"), "10.2", "shortcut is missing")


def test_basic_block_with_the_relu_before_the_sum_fails():
    fails(ch10.basic_block, block_with("relu before the sum"), "ReLU comes before the sum")


def test_basic_block_with_an_identity_shortcut_where_the_shape_changes_fails():
    fails(ch10.basic_block, block_with("identity shortcut"), "cannot be the identity")


def test_basic_block_with_other_names_or_biased_convolutions_fails():
    class Renamed(Block):
        def __init__(self, a, b, s=1):
            super().__init__(a, b, s)
            self.norm1 = self.bn1
            del self.bn1

    class Biased(Block):
        def __init__(self, a, b, s=1):
            super().__init__(a, b, s)
            self.conv1 = torch.nn.Conv2d(a, b, 3, stride=s, padding=1, bias=True)

    fails(ch10.basic_block, Renamed, "package's names", "['norm1']")
    fails(ch10.basic_block, Biased, "bias=False")
