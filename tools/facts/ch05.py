"""Chapter 05's measured facts, from the committed results:

* the cards of the shipped models, ``data/checkpoints/vit_fmnist.json`` (the chapter's own run:
  epochs, wall time, accuracy and per-epoch history) and
  ``data/checkpoints/vit_convstem_s_fmnist.json`` (chapter 13's shipped ViT, the upper orange bar);
* ``data/results/bench.json`` (``make bench``): D2L's speed and the plain ViT's accuracy within the
  10-minute budget.

Accuracies are whole percents where the prose says "about 90%", one decimal where it quotes one.
``card`` and ``bench`` are what the claims test (tests/test_claims_ch00_10.py) reads for the
claims that quote no number. The chapter's sections 1-4 quote no committed result: their numbers
are printed live by its code cells.
"""
from __future__ import annotations

import json
from typing import Any

from vitcourse.data import REPO_ROOT

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


def facts() -> dict[str, str | int | float]:
    """The numbers chapter 05's section 5 quotes, by name."""
    vit, best = card(VIT), card(BEST)
    history = vit["history"]
    return {
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
