"""vitcourse.analysis.representations: per-layer outputs through forward hooks, for CKA."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vitcourse.analysis import (MinibatchCKA, cka_matrix, default_layers, iter_layer_outputs, layer_outputs,
                                prepare_images)
from vitcourse.models import create_model


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    torch.manual_seed(0)
    return create_model("vit_fmnist", depth=2)  # 28x28, patch 7: 16 tokens of D=128, mean pooling


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet_fmnist")  # stride-2 stem, stages at 14, 7, 4 pixels, 2 blocks each


def images(n: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_default_layers_are_the_vit_blocks_and_the_resnet_residual_blocks(vit, resnet):
    assert default_layers(vit) == list(vit.blocks)
    blocks = default_layers(resnet)
    assert len(blocks) == 6 and all(type(b).__name__ == "BasicBlock" for b in blocks)
    assert blocks[1] is resnet.stages[0][-1]  # the last block of a stage is the stage's output
    with pytest.raises(ValueError, match="pass layers explicitly"):
        default_layers(nn.Linear(3, 3))


def test_vit_shapes_for_flatten_and_mean(vit):
    flat = layer_outputs(vit, images(), reduce="flatten", batch_size=4)
    mean = layer_outputs(vit, images(), reduce="mean", batch_size=4)
    assert [f.shape for f in flat] == [(10, 16 * 128)] * 2
    assert [m.shape for m in mean] == [(10, 128)] * 2
    # mean = the average over the tokens of the flattened (B, N * D) output
    torch.testing.assert_close(mean[1], flat[1].reshape(10, 16, 128).mean(dim=1))


def test_vit_block_output_is_what_the_forward_pass_computes(vit):
    x = images(3)
    out = layer_outputs(vit, x, layers=["blocks.1"])[0]  # a name works as well as a module
    with torch.no_grad():
        tokens = vit.patch_embed(prepare_images(vit, x)) + vit.pos_embed  # (B, N, D)
        for block in vit.blocks:
            tokens = block(tokens)
    torch.testing.assert_close(out, tokens.flatten(1))


def test_resnet_shapes_for_flatten_and_mean(resnet):
    flat = layer_outputs(resnet, images(), reduce="flatten", batch_size=5)
    mean = layer_outputs(resnet, images(), reduce="mean", batch_size=10)
    sides, widths = [14, 14, 7, 7, 4, 4], [32, 32, 64, 64, 128, 128]
    assert [f.shape for f in flat] == [(10, c * s * s) for c, s in zip(widths, sides)]
    assert [m.shape for m in mean] == [(10, c) for c in widths]
    torch.testing.assert_close(mean[2], flat[2].reshape(10, 64, 7, 7).mean(dim=(2, 3)))


def test_a_class_token_is_left_out_of_the_mean():
    torch.manual_seed(0)
    model = create_model("vit_fmnist", depth=1, pool="cls")  # 1 + 16 tokens
    flat = layer_outputs(model, images(4))[0].reshape(4, 17, 128)
    mean = layer_outputs(model, images(4), reduce="mean")[0]
    torch.testing.assert_close(mean, flat[:, 1:].mean(dim=1))


def test_batches_are_yielded_one_at_a_time_and_agree_with_one_pass(vit):
    x = images(10)
    batches = list(iter_layer_outputs(vit, x, batch_size=4))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    whole = layer_outputs(vit, x, batch_size=10)
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), whole[0], rtol=1e-5, atol=1e-5)


def test_hooks_are_removed_and_mode_restored_between_batches_and_afterwards(vit):
    vit.train()
    it = iter_layer_outputs(vit, images(8), batch_size=4)
    next(it)
    assert hook_count(vit) == 0 and vit.training  # between batches the model is the caller's
    list(it)
    assert hook_count(vit) == 0 and vit.training
    vit.eval()


def test_hooks_are_removed_and_mode_restored_when_the_model_raises(vit):
    def boom(_module, _inputs):
        raise RuntimeError("boom")

    handle = vit.norm.register_forward_pre_hook(boom)  # fails after the hooked blocks ran
    vit.train()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            layer_outputs(vit, images(2))
    finally:
        handle.remove()
    assert hook_count(vit) == 0 and vit.training
    vit.eval()


def test_outputs_feed_cka_batch_by_batch(vit, resnet):
    x = images(24)
    acc = MinibatchCKA()
    for a, b in zip(iter_layer_outputs(vit, x, reduce="mean", batch_size=8),
                    iter_layer_outputs(resnet, x, reduce="mean", batch_size=8)):
        acc.update(a, b)
    streamed = acc.compute()
    assert streamed.shape == (2, 6) and torch.isfinite(streamed).all()
    collected = cka_matrix(layer_outputs(vit, x, reduce="mean"), layer_outputs(resnet, x, reduce="mean"),
                           batch_size=8)
    torch.testing.assert_close(streamed, collected, rtol=1e-4, atol=1e-4)


def test_bad_arguments_raise_value_errors(vit):
    with pytest.raises(ValueError, match="reduce must be one of"):
        layer_outputs(vit, images(2), reduce="max")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        iter_layer_outputs(vit, images(2), batch_size=0)  # raised at the call, not at next()
    with pytest.raises(ValueError, match=r"layers\[0\] names no submodule"):
        layer_outputs(vit, images(2), layers=["blocks.9"])
    with pytest.raises(ValueError, match=r"layers\[0\] must be a submodule of the model"):
        layer_outputs(vit, images(2), layers=[nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="images must be a non-empty tensor"):
        layer_outputs(vit, images(0))


def test_a_layer_the_forward_pass_skips_is_an_error():
    model = create_model("vit_fmnist", depth=1)
    model.unused = nn.Linear(2, 2)  # a submodule that forward never calls
    with pytest.raises(RuntimeError, match="ran 0 times"):
        layer_outputs(model, images(2), layers=[model.unused])
    assert hook_count(model) == 0
