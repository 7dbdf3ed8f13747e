"""CorruptionExplorer (vitcourse.analysis.widgets): drive its controls programmatically (no kernel, no
browser) and check that what it shows is what the two models predict on the corrupted image."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn as nn

from vitcourse import analysis
from vitcourse.analysis import corruption_suite
from vitcourse.analysis.widgets import CorruptionExplorer
from vitcourse.data import CLASS_NAMES, load_fashion_mnist
from vitcourse.models import create_model


@pytest.fixture(scope="module")
def data():
    images, labels = load_fashion_mnist("test")
    return images[:100], labels[:100]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return create_model("vit_fmnist", depth=2).eval(), create_model("resnet_fmnist_s").eval()


class ForwardCounter:
    """How many times each model's forward ran (a forward hook per model)."""

    def __init__(self, *named: tuple[str, nn.Module]) -> None:
        self.calls = {name: 0 for name, _ in named}
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in named]

    def _hook(self, name: str):
        def hook(*_):
            self.calls[name] += 1
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def own_probabilities(model: nn.Module, corrupted_uint8: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(analysis.prepare_images(model, corrupted_uint8[None])).softmax(-1)[0]


def test_shown_predictions_are_the_models_own_on_the_corrupted_image(data, models):
    vit, cnn = models
    images, labels = data
    ex = CorruptionExplorer(vit, cnn, images, labels)
    ex.picker.select(7)
    ex.corruption.value = "patch_drop_random_7"
    ex.strength.value = 0.5
    spec = corruption_suite.CORRUPTIONS["patch_drop_random_7"]
    corrupted = spec.apply(images[7:8], 0.5, torch.Generator().manual_seed(ex.seed))[0]  # (28, 28) uint8
    assert (corrupted == 0).sum() > (images[7] == 0).sum()  # patches were really dropped
    torch.testing.assert_close(ex.corrupted, corrupted.float() / 255)
    vit_p, cnn_p = own_probabilities(vit, corrupted), own_probabilities(cnn, corrupted)
    torch.testing.assert_close(ex.vit_probabilities, vit_p, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ex.cnn_probabilities, cnn_p, atol=1e-5, rtol=1e-4)
    title = ex.figure().axes[0].get_title()
    assert f"true: {CLASS_NAMES[int(labels[7])]}" in title
    assert f"ViT: {CLASS_NAMES[int(vit_p.argmax())]} ({100 * float(vit_p.max()):.0f}%)" in title
    assert f"ResNet: {CLASS_NAMES[int(cnn_p.argmax())]} ({100 * float(cnn_p.max()):.0f}%)" in title
    ax_img = ex.figure().axes[0]
    torch.testing.assert_close(torch.as_tensor(ax_img.images[0].get_array()), corrupted.float() / 255)


def test_the_rollout_is_the_vits_on_the_corrupted_image(data, models):
    vit, cnn = models
    ex = CorruptionExplorer(vit, cnn, *data, corruption="low_pass")
    ex.strength.value = 2.0
    corrupted = (ex.corrupted * 255).round().to(torch.uint8)
    atts = analysis.capture_attention(vit, corrupted[None])
    expected = analysis.attention_rollout(atts, num_prefix_tokens=0, grid=(4, 4))[0]
    torch.testing.assert_close(ex.rollout_map(), expected)
    ax_map = ex.figure().axes[1]
    shown = [im for im in ax_map.images if im.get_gid() == "rollout"]
    assert len(shown) == 1
    torch.testing.assert_close(torch.as_tensor(shown[0].get_array()), analysis.upsample_map(expected, (28, 28)))


def test_changing_only_the_strength_runs_each_model_once(data, models):
    vit, cnn = models
    ex = CorruptionExplorer(vit, cnn, *data, corruption="gaussian_noise")
    _ = ex.ui  # displayed: every control change redraws
    counter = ForwardCounter(("vit", vit), ("cnn", cnn))
    try:
        for snr in (20.0, 10.0, 0.0):
            before = dict(counter.calls)
            ex.strength.value = snr
            ex.figure()  # a static copy of the same state: no new pass
            assert {k: counter.calls[k] - before[k] for k in before} == {"vit": 1, "cnn": 1}, snr
        before = dict(counter.calls)
        ex.strength.value = 20.0  # back to a state seen before: cached
        assert counter.calls == before
    finally:
        counter.remove()


def test_a_clean_strength_shows_the_clean_image(data, models):
    vit, cnn = models
    ex = CorruptionExplorer(vit, cnn, *data)
    for name, spec in corruption_suite.CORRUPTIONS.items():
        ex.corruption.value = name
        assert ex.strength.options[0][0].endswith("(clean)")
        ex.strength.value = spec.clean
        torch.testing.assert_close(ex.corrupted, ex.picker.image.float() / 255, msg=name)


def test_choosing_a_corruption_resets_the_strength_and_redraws_once(data, models):
    ex = CorruptionExplorer(*models, *data)
    _ = ex.ui
    before = ex.redraws
    ex.corruption.value = "patch_shuffle"
    assert ex.redraws == before + 1
    assert [v for _, v in ex.strength.options] == [1.0, 2.0, 4.0, 7.0] and ex.strength.value == 4.0
    assert ex.target.disabled
    ex.corruption.value = "fgsm"
    assert not ex.target.disabled


def test_an_attack_is_made_against_the_chosen_target(data, models):
    vit, cnn = models
    images, labels = data
    ex = CorruptionExplorer(vit, cnn, images, labels, corruption="fgsm")
    ex.picker.select(3)
    ex.strength.value = 8.0
    for target, model in (("vit", vit), ("cnn", cnn)):
        ex.target.value = target
        expected = analysis.fgsm(model, images[3:4], labels[3:4], 8 / 255)[0]
        torch.testing.assert_close(ex.corrupted, expected)
        assert (ex.corrupted - images[3].float() / 255).abs().max() <= 8 / 255 + 1e-6
        assert f"against the {'ViT' if target == 'vit' else 'ResNet'}" in ex.figure()._suptitle.get_text()


def test_bad_models_are_refused(data, models):
    vit, cnn = models
    with pytest.raises(ValueError, match="probes"):
        CorruptionExplorer(cnn, cnn, *data)
    with pytest.raises(ValueError, match="name must be one of"):
        CorruptionExplorer(vit, cnn, *data, corruption="blur")
