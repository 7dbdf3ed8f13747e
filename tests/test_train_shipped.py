"""The shipped trained checkpoint (data/checkpoints/vit_fmnist.pt, made by `make checkpoint`)
re-measured on the full 10k test set against its JSON card."""
from __future__ import annotations

import json

import pytest

from vitcourse.training.checkpoint import PRETRAINED_DIR, load_pretrained
from vitcourse.data import load_fashion_mnist
from vitcourse.training.loop import evaluate

pytestmark = pytest.mark.results  # every test here reads the committed results or cards


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


def test_shipped_card_is_consistent_with_its_run_and_the_code():
    """What the card says about its run adds up, and it describes this repository's model."""
    import dataclasses
    import subprocess

    from vitcourse.training.checkpoint import load_checkpoint, model_spec, upgrade_spec
    from vitcourse.models import create_model
    from vitcourse.training.loop import TrainConfig

    card = json.loads((PRETRAINED_DIR / "vit_fmnist.json").read_text())
    history = card["history"]
    assert card["epochs"] == len(history) == card["config"]["epochs"]
    assert [h["epoch"] for h in history] == list(range(1, card["epochs"] + 1))
    assert card["wall_time_s"] == pytest.approx(sum(h["seconds"] for h in history), abs=1.0)
    assert card["test_accuracy"] == pytest.approx(history[-1]["test_acc"], abs=0.001)
    assert card["train_images"] == 60_000 and card["seed"] == 0
    # the recipe is TrainConfig's defaults (chapter 05 says so), bar the epochs
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig(epochs=card["epochs"]))))
    assert card["config"] == {k: v for k, v in defaults.items() if k in card["config"]}
    # fields the card predates are chapter 13's recipe parts, off by default: the run had none
    newer = set(defaults) - set(card["config"])
    assert newer <= {"trivial_augment", "random_erasing", "mixup_alpha", "cutmix_alpha", "ema_decay"}, newer
    assert not any(defaults[k] for k in newer)
    # the weights file carries the same card, and the model is today's vit_fmnist preset
    stored = load_checkpoint(PRETRAINED_DIR / "vit_fmnist.pt")
    assert stored["card"] == card
    # (saved by 0.1, before the package had folders: its class paths are the old ones)
    assert stored["model_spec"]["class"] == "vitcourse.vit.ViT"
    assert upgrade_spec(stored["model_spec"]) == json.loads(json.dumps(model_spec(create_model("vit_fmnist"))))
    # the command is what `make checkpoint` runs, and the commit is in this repository's history
    assert card["command"].startswith("python -m vitcourse train --model vit_fmnist --epochs 35 --seed 0")
    commit = card["commit"].removesuffix("-dirty")
    found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=PRETRAINED_DIR,
                           capture_output=True)
    assert found.returncode == 0, f"the card's commit {commit} is not in this repository"


BEST = "vit_convstem_s_fmnist"  # chapter 13's shipped ViT: the small-data ablation's regularised 60-minute run


@pytest.mark.slow
def test_chapter_13s_shipped_model_matches_its_card():
    card = json.loads((PRETRAINED_DIR / f"{BEST}.json").read_text())
    assert (PRETRAINED_DIR / f"{BEST}.pt").stat().st_size < 10e6, "should be a few MB"
    model = load_pretrained(BEST)
    assert not model.training
    images, labels = load_fashion_mnist("test")  # the full 10k test set, also in fast mode
    assert len(labels) == 10_000 == card["test_images"]
    accuracy = evaluate(model, images, labels)["accuracy"]
    assert abs(accuracy - card["test_accuracy"]) <= 0.001, (accuracy, card["test_accuracy"])


def test_chapter_13s_shipped_card_is_the_long_run_of_its_csv():
    """The card of vit_convstem_s_fmnist is the 60-minute run of `make smalldata`'s long part: its
    key, its plan from the recorded probe, its row in small_data_long.csv and today's model."""
    import dataclasses
    import subprocess

    from vitcourse.experiments import small_data as sd
    from vitcourse.experiments.budget import plan_epochs
    from vitcourse.models import create_model
    from vitcourse.training.checkpoint import load_checkpoint, model_spec
    from vitcourse.training.loop import TrainConfig

    run = sd.recipe_run("long", sd.SHIPPED_VARIANT, 0, max(sd.LONG_BUDGETS_S))
    card = json.loads((PRETRAINED_DIR / f"{BEST}.json").read_text())
    assert card["model"] == run.model == BEST and card["experiment_key"] == run.key
    assert card["budget_s"] == run.budget_s == 3600 and card["command"] == sd.run_files(run).command
    history = card["history"]
    assert card["epochs"] == len(history) == card["config"]["epochs"]
    assert card["epochs"] == plan_epochs(run.budget_s, card["probe_images_per_s"], 60_000, 10_000)
    assert card["wall_time_s"] == pytest.approx(sum(h["seconds"] for h in history), abs=1.0)
    assert card["train_images"] == 60_000 and card["seed"] == 0
    # the recipe is TrainConfig's defaults and the step's options (augmentation), bar epochs and compile
    expected = TrainConfig(**{"compile": False, **dict(run.train_overrides), "epochs": card["epochs"], "seed": 0})
    assert card["config"] == json.loads(json.dumps(dataclasses.asdict(expected)))
    rows = [r for r in sd.read_rows() if r["key"] == run.key]
    assert len(rows) == 1 and int(rows[0]["epochs"]) == card["epochs"]
    assert float(rows[0]["test_accuracy"]) == pytest.approx(card["test_accuracy"], abs=1e-4)
    stored = load_checkpoint(PRETRAINED_DIR / f"{BEST}.pt")
    assert stored["card"] == card
    built = create_model(BEST, **dict(run.model_overrides))  # the step's overrides (drop path)
    assert json.loads(json.dumps(stored["model_spec"])) == json.loads(json.dumps(model_spec(built)))
    commit = card["commit"].removesuffix("-dirty")
    found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=PRETRAINED_DIR,
                           capture_output=True)
    assert found.returncode == 0, f"the card's commit {commit} is not in this repository"
