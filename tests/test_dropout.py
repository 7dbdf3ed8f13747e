"""vitcourse.layers.dropout.Dropout: nn.Dropout's behaviour with a cheaper mask on CPU tensors."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vitcourse.layers.dropout import Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = Dropout(p).train()(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / x.numel()) ** 0.5  # within 5 standard errors
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased: E[y] = x


def test_mask_bits_are_unbiased_in_every_16_bit_lane():
    # Each 64-bit draw gives four 16-bit numbers: each of the four lanes must drop at rate p.
    torch.manual_seed(1)
    keep = keep_mask(torch.Size([4 * 250_000]), 0.25).view(-1, 4).float()
    rates = 1 - keep.mean(0)
    assert torch.all((rates - 0.25).abs() < 5 * (0.25 * 0.75 / 250_000) ** 0.5), rates


def test_backward_uses_the_same_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.3).train()(x)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.7)


def test_reproducible_with_the_seed_and_different_draw_to_draw():
    d = Dropout(0.5).train()
    x = torch.ones(100, 100)
    torch.manual_seed(3)
    a, b = d(x), d(x)
    torch.manual_seed(3)
    assert torch.equal(d(x), a)
    assert not torch.equal(a, b)


def test_identity_in_eval_and_at_zero_and_zero_at_one():
    x = torch.randn(10, 10)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_bf16_values_scaled_like_nn_dropout():
    torch.manual_seed(0)
    x = torch.ones(200, 200, dtype=torch.bfloat16)
    ours = Dropout(0.1).train()(x)
    theirs = nn.Dropout(0.1).train()(x)
    assert ours.dtype == torch.bfloat16
    assert ours.max().item() == theirs.max().item()  # the same rounded 1/(1-p)


def test_inplace_and_is_an_nn_dropout():
    d = Dropout(0.5, inplace=True).train()
    assert isinstance(d, nn.Dropout) and d.p == 0.5
    x = torch.ones(50, 50)
    y = d(x)
    assert y.data_ptr() == x.data_ptr()


def test_bad_probability_is_refused():
    with pytest.raises(ValueError, match="p must be a probability"):
        keep_mask(torch.Size([3]), 1.5)
    with pytest.raises(ValueError):
        Dropout(-0.1)  # nn.Dropout's own check
