"""The shipped trained checkpoint (data/checkpoints/vit_fmnist.pt, made by `make checkpoint`)
re-measured on the full 10k test set against its JSON card."""
from __future__ import annotations

import json

import pytest

from vitcourse.checkpoint import PRETRAINED_DIR, load_pretrained
from vitcourse.data import load_fashion_mnist
from vitcourse.train import evaluate


@pytest.mark.slow
def test_shipped_checkpoint_matches_its_card():
    card = json.loads((PRETRAINED_DIR / "vit_fmnist.json").read_text())
    for key in ("command", "seed", "commit", "epochs", "test_accuracy", "wall_time_s", "hardware"):
        assert key in card, f"card lacks {key}"
    assert (PRETRAINED_DIR / "vit_fmnist.pt").stat().st_size < 10e6, "should be a few MB"
    model = load_pretrained("vit_fmnist")
    assert not model.training
    images, labels = load_fashion_mnist("test")  # the full 10k test set, also in fast mode
    assert len(labels) == 10_000 == card["test_images"]
    accuracy = evaluate(model, images, labels)["accuracy"]
    assert abs(accuracy - card["test_accuracy"]) <= 0.001, (accuracy, card["test_accuracy"])
    assert accuracy > 0.8
