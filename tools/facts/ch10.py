"""Chapter 10's measured facts, from the committed results:

* ``data/results/comparisons.csv`` (``make compare``): ViT, T2T-ViT, Swin and the ResNet after
  3 epochs on all 60,000 images, one seed, with their MACs and best-of-3 training speeds;
* ``data/results/scaling.csv`` (chapter 07's sweep): the ViT's largest seed-to-seed spread, the
  yardstick the prose holds the comparison's gaps against.

Accuracies and gaps in points with one decimal, the CNN's lead in whole points, as the prose
quotes them; speeds preformatted with a thousands comma. The section "Equal time instead of equal
epochs" quotes no number: its claims are about chapter 13's runs (``data/results/small_data.csv``
and ``small_data_long.csv``), which ``ten_minutes`` and ``long_runs`` return for the claims test
(tests/test_claims_ch00_10.py), as ``rows`` returns the comparison's.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from vitcourse.experiments.budget import Summary
from vitcourse.experiments.compare import RESULTS_CSV, read_csv
from vitcourse.experiments.small_data import read_rows, recipe_summary

from tools.facts.ch07 import curves

CHAPTER = "10_comparisons"


def rows() -> dict[str, dict[str, str]]:
    """{model: its row} of the three-epoch comparison."""
    return {r["model"]: r for r in read_csv(RESULTS_CSV)}


def ten_minutes() -> dict[str, Summary]:
    """Chapter 13's 10-minute runs: per recipe step, its seeds' accuracies and epochs."""
    return recipe_summary(read_rows())


def long_runs() -> list[dict[str, str]]:
    """Chapter 13's long runs (30 and 60 minutes), as the CSV's rows."""
    return [r for r in read_rows() if r["experiment"] == "long"]


def acc(row: dict[str, str]) -> Decimal:
    """A row's test accuracy in percent, exactly as the CSV writes it (a count of 10,000 images)."""
    return 100 * Decimal(row["test_acc"])


def one_decimal(x: Decimal) -> float:
    """`x` to one decimal, halves up as a person rounds (87.65 -> 87.7; binary floats would give 87.6)."""
    return float(x.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def facts() -> dict[str, str | int | float]:
    """The numbers the section "How to read the two tables together" quotes, by name."""
    r = rows()
    vit, t2t, swin, cnn = (r[m] for m in ("vit_fmnist", "t2t_vit_fmnist", "swin_fmnist", "resnet_fmnist"))
    spread = curves()["vit"]
    return {
        "cnn_acc": one_decimal(acc(cnn)),
        "t2t_acc": one_decimal(acc(t2t)),
        "vit_acc": one_decimal(acc(vit)),
        "swin_acc": one_decimal(acc(swin)),
        "swin_train_images_per_s": f"{float(swin['train_images_per_s']):,.0f}",
        "vit_train_images_per_s": f"{float(vit['train_images_per_s']):,.0f}",
        # chapter 07's widest band of two seeds for the ViT: what one seed can move
        "vit_seed_spread_max": round(100 * float((spread["high"] - spread["low"]).max()), 1),
        # the gaps, from the unrounded accuracies
        "swin_vit_gap": one_decimal(acc(vit) - acc(swin)),
        "cnn_lead": int((acc(cnn) - acc(vit)).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        "t2t_lead": one_decimal(acc(t2t) - acc(vit)),
    }
