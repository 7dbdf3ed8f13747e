"""Chapter 13's recipe parts inside `fit`: TrivialAugment, random erasing, mixup / CutMix with mixed
labels, the weights' EMA and DeiT hard distillation; each off by default, checked, and resumed bit
for bit with all of them on at once."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vitcourse.data import Augmentation, TensorLoader, load_data
from vitcourse.models.small_data_vit import SmallDataViT, SmallDataViTConfig
from vitcourse.training.checkpoint import load_checkpoint, save_checkpoint
from vitcourse.training.loop import TrainConfig, evaluate, fit
from vitcourse.training.losses import TrainingLoss, merge_heads

from test_train import Interrupting, assert_same_weights, weights

RECIPE = dict(trivial_augment=True, random_erasing=0.25, mixup_alpha=0.8, cutmix_alpha=1.0, ema_decay=0.9)


@pytest.fixture(scope="module")
def data():
    return load_data(train_size=512, test_size=256)


def student(seed: int = 0, **kw) -> SmallDataViT:
    torch.manual_seed(seed)
    base = dict(patch_size=7, dim=32, depth=1, heads=2, mlp_dim=64, dropout=0.1, drop_path_rate=0.1)
    return SmallDataViT(SmallDataViTConfig(**{**base, **kw}))


def teacher(seed: int = 1) -> nn.Module:
    """A small CNN with BatchNorm (whose running statistics must not move while it teaches)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_recipe_parts_are_off_by_default():
    config = TrainConfig()
    assert not config.trivial_augment
    assert config.random_erasing == config.mixup_alpha == config.cutmix_alpha == config.ema_decay == 0


@pytest.mark.parametrize("field,value", [("trivial_augment", "yes"), ("random_erasing", 1.5),
                                         ("mixup_alpha", -0.1), ("cutmix_alpha", -1.0), ("ema_decay", 1.0)])
def test_recipe_options_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"{field} must be .*got {value!r}"):
        TrainConfig(**{field: value})


def test_loader_yields_mixed_labels_only_when_mixing(data):
    plain = TensorLoader(data.train_images, data.train_labels, 64, seed=0,
                         augmentation=Augmentation(trivial_augment=True, random_erasing=0.5))
    x, y = next(iter(plain))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,) and y.dtype == torch.int64
    mixing = TensorLoader(data.train_images, data.train_labels, 64, seed=0, augmentation=Augmentation(mixup_alpha=0.8),
                          num_classes=10)
    x, y = next(iter(mixing))
    assert y.shape == (64, 10) and torch.allclose(y.sum(-1), torch.ones(64))
    assert (y.max(-1).values < 1).any(), "mixup mixes labels, not only images"


def test_augmented_batches_differ_from_plain_ones_and_repeat_with_the_seed(data):
    def first(seed: int, **kw):
        return next(iter(TensorLoader(data.train_images, data.train_labels, 64, seed=seed,
                                      augmentation=Augmentation(**kw))))[0]
    plain = first(0)
    augmented = first(0, trivial_augment=True, random_erasing=0.5)
    assert torch.equal(augmented, first(0, trivial_augment=True, random_erasing=0.5))
    assert not torch.equal(augmented, first(1, trivial_augment=True, random_erasing=0.5))
    changed = (augmented != plain).flatten(1).any(1).float().mean()
    assert changed > 0.5, f"only {changed:.0%} of the images were augmented"


def test_hard_distillation_is_the_mean_of_the_true_and_the_teachers_cross_entropy():
    torch.manual_seed(0)
    t = teacher()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    cls_logits, dist_logits = torch.randn(16, 10), torch.randn(16, 10)
    loss = TrainingLoss(label_smoothing=0.1, teacher=t)((cls_logits, dist_logits), y, x)
    with torch.no_grad():
        y_t = t.eval()(x).argmax(-1)
    expected = (F.cross_entropy(cls_logits, y, label_smoothing=0.1) + F.cross_entropy(dist_logits, y_t)) / 2
    assert torch.allclose(loss, expected)
    assert not torch.equal(y_t, y), "a teacher that agrees with the labels would not test the second term"
    single = TrainingLoss(teacher=t)(cls_logits, y, x)  # one head: both terms on it (DeiT Table 3)
    assert torch.allclose(single, (F.cross_entropy(cls_logits, y) + F.cross_entropy(cls_logits, y_t)) / 2)
    soft = F.one_hot(y, 10).float()
    assert torch.allclose(TrainingLoss()(cls_logits, soft, x), F.cross_entropy(cls_logits, y))
    assert torch.equal(merge_heads((cls_logits, dist_logits)), (cls_logits + dist_logits) / 2)


def test_a_distilled_model_without_a_teacher_gets_a_clear_error(data):
    with pytest.raises(ValueError, match="two heads.*teacher"):
        fit(student(distilled=True), data, TrainConfig(epochs=1, batch_size=64), progress=False)
    with pytest.raises(ValueError, match="teacher must be a trained nn.Module.*got str"):
        fit(student(), data, TrainConfig(epochs=1, batch_size=64), teacher="resnet_fmnist", progress=False)


def test_the_teacher_is_not_trained_and_keeps_its_statistics(data):
    t = teacher()
    before = weights(t)
    result = fit(student(distilled=True), data, TrainConfig(epochs=1, batch_size=64), teacher=t, progress=False)
    assert_same_weights(before, weights(t))
    assert not t.training and result.history[0]["train_loss"] > 0


def test_ema_weights_are_what_is_evaluated_and_returned(data):
    model = student()
    result = fit(model, data, TrainConfig(epochs=2, batch_size=64, ema_decay=0.9), progress=False)
    assert result.model is not model
    raw, averaged = weights(model), weights(result.model)
    assert raw.keys() == averaged.keys()
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw), "the average equals the raw weights"
    test_acc = evaluate(result.model, data.test_images, data.test_labels)["accuracy"]
    assert test_acc == pytest.approx(result.history[-1]["test_acc"], abs=1e-6)


@pytest.mark.slow
def test_every_recipe_part_on_resumes_bit_for_bit(data, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, seed=3, crop_padding=2, **RECIPE)
    reference = Interrupting(student(distilled=True, pool="cls"), at=-1, how="raise")
    ref = fit(reference, data, config, teacher=teacher(), progress=False)

    stopped = Interrupting(student(distilled=True, pool="cls"), at=11, how="sigint")  # in epoch 2
    result = fit(stopped, data, config, teacher=teacher(), checkpoint_dir=tmp_path, progress=False)
    assert result.interrupted and load_checkpoint(tmp_path / "last.pt")["ema"] is not None

    resumed = Interrupting(student(seed=99, distilled=True, pool="cls"), at=-1, how="raise")
    done = fit(resumed, data, config, teacher=teacher(), checkpoint_dir=tmp_path, resume=True, progress=False)
    assert_same_weights(weights(resumed), weights(reference))
    assert_same_weights(weights(done.model), weights(ref.model))  # the moving average too
    assert done.history == [dict(h, seconds=d["seconds"], images_per_s=d["images_per_s"])
                            for h, d in zip(ref.history, done.history)]


def test_resume_refuses_another_teacher(data, tmp_path):
    config = TrainConfig(epochs=1, batch_size=64)
    fit(student(distilled=True), data, config, teacher=teacher(1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="same teacher"):
        fit(student(distilled=True), data, dataclasses.replace(config, epochs=2), teacher=teacher(2),
            checkpoint_dir=tmp_path, resume=True, progress=False)


def test_a_checkpoint_older_than_the_recipe_options_still_resumes(data, tmp_path):
    config = TrainConfig(epochs=1, batch_size=64)
    fit(student(), data, config, checkpoint_dir=tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    for key in RECIPE:  # what a checkpoint written before these options holds
        del ckpt["config"][key]
    del ckpt["ema"], ckpt["teacher"]
    save_checkpoint(ckpt, tmp_path / "last.pt")
    result = fit(student(), data, dataclasses.replace(config, epochs=2), checkpoint_dir=tmp_path,
                 resume=True, progress=False)
    assert len(result.history) == 2
    with pytest.raises(ValueError, match="mixup_alpha"):  # ... but not into a run with a recipe part on
        fit(student(), data, dataclasses.replace(config, epochs=3, mixup_alpha=0.8), checkpoint_dir=tmp_path,
            resume=True, progress=False)


def test_the_train_command_takes_every_recipe_part_and_its_card_says_so(tmp_path):
    """`vitcourse train` with chapter 13's options (a teacher included) trains, and the exported
    card records them; the weights it ships score what the card says."""
    import json
    import subprocess
    import sys

    from vitcourse.data import load_data
    from vitcourse.training.checkpoint import load_model
    from vitcourse.training.loop import evaluate

    out = tmp_path / "cct.pt"
    done = subprocess.run([sys.executable, "-m", "vitcourse", "train", "--model", "cct_fmnist", "--fast",
                           "--epochs", "1", "--trivial-augment", "--random-erasing", "0.25", "--mixup-alpha", "0.2",
                           "--ema-decay", "0.9", "--teacher", "resnet_fmnist", "--no-progress", "--export", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["teacher"] == "resnet_fmnist" and card["model"] == "cct_fmnist"
    assert {k: card["config"][k] for k in ("trivial_augment", "random_erasing", "mixup_alpha", "ema_decay")} == {
        "trivial_augment": True, "random_erasing": 0.25, "mixup_alpha": 0.2, "ema_decay": 0.9}
    assert "--teacher resnet_fmnist" in card["command"]
    data = load_data(fast=True)
    assert evaluate(load_model(out), data.test_images, data.test_labels)["accuracy"] == card["test_accuracy"]
