"""Chapter 08's measured facts, from chapter 10's committed comparison
``data/results/comparisons.csv`` (``make compare``: 3 epochs on all 60,000 images, one seed): the
T2T-ViT against the ViT with the same backbone.

Accuracies with two decimals, as the prose quotes them; the MAC ratio with one; training speeds
(the best-of-3 timing) preformatted with a thousands comma. ``row`` is what the claims test
(tests/test_claims_ch00_10.py) reads for the claims that quote no number.
"""
from __future__ import annotations

from vitcourse.experiments.compare import RESULTS_CSV, read_csv

CHAPTER = "08_tokens_to_token"


def row(model: str) -> dict[str, str]:
    """`model`'s row of the comparison."""
    return next(r for r in read_csv(RESULTS_CSV) if r["model"] == model)


def facts() -> dict[str, str | int | float]:
    """The numbers section "Training the small T2T-ViT against the small ViT" quotes, by name."""
    t2t, vit = row("t2t_vit_fmnist"), row("vit_fmnist")
    return {
        "t2t_acc": round(100 * float(t2t["test_acc"]), 2),
        "vit_acc": round(100 * float(vit["test_acc"]), 2),
        "t2t_macs_ratio": round(int(t2t["macs"]) / int(vit["macs"]), 1),
        "t2t_train_images_per_s": f"{float(t2t['train_images_per_s']):,.0f}",
        "vit_train_images_per_s": f"{float(vit['train_images_per_s']):,.0f}",
    }
