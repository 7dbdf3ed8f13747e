"""D2L's ViT (vitcourse.models.d2l_vit) and vitcourse's d2l_vit compute the same function."""
from __future__ import annotations

import pytest
import torch

from vitcourse.models.d2l_vit import (D2L_CONFIG, build_d2l_vit, copy_to_vitcourse, d2l_train_step,
                                       matching_parameters)
from vitcourse.models import create_model


def small_pair():
    torch.manual_seed(0)
    ref = build_d2l_vit(img_size=32, num_hiddens=64, mlp_num_hiddens=128, num_heads=4,
                        emb_dropout=0.0, blk_dropout=0.0)
    vit = create_model("d2l_vit", image_size=32, dim=64, mlp_dim=128, heads=4, dropout=0.0,
                       attn_dropout=0.0)
    return ref, copy_to_vitcourse(ref, vit)


def test_same_weights_give_the_same_logits():
    ref, vit = small_pair()
    x = torch.randn(5, 1, 32, 32)
    ref.eval(), vit.eval()
    assert torch.allclose(ref(x), vit(x), atol=1e-5)
    assert sum(p.numel() for p in ref.parameters()) > 0


def test_same_batches_same_sgd_steps_same_losses():
    ref, vit = small_pair()
    opt_ref = ref.configure_optimizers()
    opt_vit = torch.optim.SGD(matching_parameters(vit), lr=D2L_CONFIG["lr"])
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(8, 1, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
        a = d2l_train_step(ref, opt_ref, x, y)
        loss = torch.nn.functional.cross_entropy(vit(x), y)
        opt_vit.zero_grad()
        loss.backward()
        opt_vit.step()
        assert a.item() == pytest.approx(loss.item(), rel=1e-4)


def test_unknown_d2l_argument_is_rejected():
    with pytest.raises(ValueError, match="num_layers"):
        build_d2l_vit(num_layers=3)
