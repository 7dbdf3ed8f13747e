"""Chapter 14's measured facts, from the committed results:

* the card of the pre-trained MAE, ``data/checkpoints/mae_fmnist.json`` (``make pretrain``);
* ``data/results/label_efficiency.csv`` (``make label-efficiency``): test accuracy of fine-tuning
  from the MAE encoder and from scratch, a linear probe and k-NN, at 100 / 600 / 6,000 / 60,000
  labels, three seeds each.

Accuracies are means over the seeds, in percent with one decimal; gaps are differences of means.
``table()`` is what the claims test (tests/test_pretraining_claims.py) reads for the seed-by-seed
claims.
"""
from __future__ import annotations

import json
from statistics import mean
from typing import Any

from vitcourse.data import REPO_ROOT
from vitcourse.experiments.label_efficiency import MODEL, RESULTS_CSV, read_label_efficiency
from vitcourse.experiments.results_csv import read_results

CHAPTER = "14_pretraining"
CARD = REPO_ROOT / "data" / "checkpoints" / "mae_fmnist.json"
P4CLS_CARD = REPO_ROOT / "data" / "checkpoints" / f"{MODEL}.json"  # chapter 06's model, from scratch


def card() -> dict[str, Any]:
    return json.loads(CARD.read_text(encoding="utf-8"))


def table() -> dict[str, dict[int, list[float]]]:
    """method -> labels -> test accuracies in percent (one per seed)."""
    return {m: {n: [100 * a for a in accs] for n, accs in by_n.items()}
            for m, by_n in read_label_efficiency(RESULTS_CSV).items()}


def steps(labels: int) -> int:
    """Optimiser steps of the fine-tuning runs at `labels` (the same for every seed and start)."""
    found = {int(r["steps"]) for r in read_results(RESULTS_CSV)
             if r["method"] in ("scratch", "mae_finetune") and int(r["labels"]) == labels}
    if len(found) != 1:
        raise ValueError(f"the fine-tuning runs at {labels} labels disagree on their steps: {sorted(found)}")
    return found.pop()


def facts() -> dict[str, str | int | float]:
    from vitcourse.models.registry import create_model

    t = table()

    def acc(method: str, n: int) -> float:
        return round(mean(t[method][n]), 1)

    model = create_model(MODEL)
    dim = model.config.dim
    p4cls = json.loads(P4CLS_CARD.read_text(encoding="utf-8"))
    return {
        "mae_epochs": int(card()["epochs"]),
        "p4cls_acc": round(100 * float(p4cls["test_accuracy"]), 1), "p4cls_epochs": int(p4cls["epochs"]),
        "mae_100": acc("mae_finetune", 100), "scratch_100": acc("scratch", 100),
        "gap_100": round(mean(t["mae_finetune"][100]) - mean(t["scratch"][100]), 1),
        "gap_600": round(mean(t["mae_finetune"][600]) - mean(t["scratch"][600]), 1),
        "gap_6000": round(mean(t["mae_finetune"][6_000]) - mean(t["scratch"][6_000]), 1),
        "scratch_6000": acc("scratch", 6_000), "scratch_60000": acc("scratch", 60_000),
        "mae_6000": acc("mae_finetune", 6_000), "mae_60000": acc("mae_finetune", 60_000),
        "probe_100": acc("linear_probe", 100), "probe_600": acc("linear_probe", 600),
        "probe_6000": acc("linear_probe", 6_000), "knn_100": acc("knn", 100),
        "steps_6000": steps(6_000), "steps_60000": steps(60_000),
        # weights fine-tuning moves (the whole ViT), and those of a linear probe on D features
        "finetune_params": f"{round(sum(p.numel() for p in model.parameters()), -3):,}",
        "probe_params": f"{dim * model.config.num_classes + model.config.num_classes:,}",
    }
