"""Chapter 05's measured facts, from the committed results:

* the cards of the shipped models, ``data/checkpoints/vit_fmnist.json`` (the chapter's own run:
  epochs, wall time, speed, accuracy and per-epoch history) and
  ``data/checkpoints/vit_convstem_s_fmnist.json`` (chapter 13's shipped ViT, the second orange bar);
* ``data/results/comparisons.csv`` (``make compare``): the best-of-3 training speed of ``vit_fmnist``;
* ``data/results/bench.json`` (``make bench``): D2L's speed and the plain ViT's accuracy within the
  10-minute budget.

Accuracies are whole percents where the prose says "about 90%", one decimal where it quotes one;
speeds are preformatted ("2,201") because the prose writes them with a thousands comma.
``card``, ``bench`` and ``compare_row`` are what the claims test (tests/test_claims_ch00_10.py)
reads for the claims that quote no number.
"""
from __future__ import annotations

import json
from typing import Any

from vitcourse.data import REPO_ROOT
from vitcourse.experiments.compare import RESULTS_CSV, read_csv

CHAPTER = "05_training"
CARDS = REPO_ROOT / "data" / "checkpoints"
BENCH_JSON = REPO_ROOT / "data" / "results" / "bench.json"
VIT = "vit_fmnist"                 # the chapter's model, trained by `make checkpoint`
BEST = "vit_convstem_s_fmnist"     # chapter 13's shipped ViT, the chapter's last bar


def card(model: str) -> dict[str, Any]:
    """The JSON card of a shipped checkpoint."""
    return json.loads((CARDS / f"{model}.json").read_text(encoding="utf-8"))


def bench() -> dict[str, Any]:
    """The committed figures of `python -m vitcourse bench` (the AMX machine, bf16)."""
    return json.loads(BENCH_JSON.read_text(encoding="utf-8"))


def compare_row(model: str) -> dict[str, str]:
    """`model`'s row of chapter 10's three-epoch comparison."""
    return next(r for r in read_csv(RESULTS_CSV) if r["model"] == model)


def thousands(value: float, step: int = 1) -> str:
    """`value` rounded to a multiple of `step`, written with a thousands comma: "2,200"."""
    return f"{step * round(value / step):,}"


def facts() -> dict[str, str | int | float]:
    """The numbers chapter 05's sections 2-4 quote, by name."""
    vit, best = card(VIT), card(BEST)
    history = vit["history"]
    # the speeds of vit_fmnist on the course's 2-core CPU: the card's average over its 35 epochs
    # (a shared machine) and chapter 10's best-of-3 timing of the training step; the prose gives
    # their range in hundreds and the card's figure itself
    speeds = [float(vit["images_per_s"]), float(compare_row(VIT)["train_images_per_s"])]
    return {
        "vit_images_per_s_low": thousands(min(speeds), 100),
        "vit_images_per_s_high": thousands(max(speeds), 100),
        "vit_card_images_per_s": thousands(float(vit["images_per_s"])),
        "vit_epochs": int(vit["epochs"]),
        "vit_minutes": round(float(vit["wall_time_s"]) / 60),
        "vit_acc": round(100 * float(vit["test_accuracy"])),
        "vit_final_train_acc": round(100 * float(history[-1]["train_acc"])),
        # the epoch where the test loss stops falling
        "vit_lowest_test_loss_epoch": min(history, key=lambda h: h["test_loss"])["epoch"],
        # `make bench`'s plain ViT after its 10-minute budget (the goal is 92%)
        "bench_vit_acc_10_min": round(100 * float(bench()["reference_acc_at_10_min"])),
        "best_vit_acc": round(100 * float(best["test_accuracy"]), 1),
    }
