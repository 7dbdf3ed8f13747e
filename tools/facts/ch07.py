"""Chapter 07's measured facts, from the committed scaling sweep ``data/results/scaling.csv``
(``make sweep``: ViT and CNN over training-set size with 2 seeds, model size and patch size on 10k
images, seed 0) and the card ``data/checkpoints/vit_fmnist.json`` (chapter 05's long run).

Accuracies and gaps are in points with one decimal, as the prose quotes them; the power-law
slopes have three decimals. The curves are `scaling_plots.data_curve`'s, the same the notebook
plots and prints. ``rows``, ``curves``, ``model_axis`` and ``patch_axis`` are what the claims test
(tests/test_claims_ch00_10.py) reads for the claims that quote no number.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vitcourse.experiments.scaling_plots import data_curve, fit_power_law, load_results, on_axis
from vitcourse.experiments.sweep import DEFAULT_CSV

from tools.facts.ch05 import card

CHAPTER = "07_scaling"
FAMILIES = ("vit", "cnn")


def rows() -> list[dict[str, Any]]:
    """Every committed point of the sweep, numbers parsed."""
    return load_results(DEFAULT_CSV)


def curves(points: list[dict[str, Any]] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{family: data_curve} on the data axis: sizes, mean, low, high over seeds."""
    points = rows() if points is None else points
    return {fam: data_curve(points, fam) for fam in FAMILIES}


def model_axis(points: list[dict[str, Any]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """{family: its model-size points, smallest first}."""
    points = rows() if points is None else points
    return {fam: sorted((r for r in on_axis(points, "model") if r["family"] == fam), key=lambda r: r["params"])
            for fam in FAMILIES}


def patch_axis(points: list[dict[str, Any]] | None = None) -> dict[int, dict[str, Any]]:
    """{patch size: its point} of the ViT's patch-size axis."""
    points = rows() if points is None else points
    return {r["patch_size"]: r for r in on_axis(points, "patch")}


def train_accuracy(points: list[dict[str, Any]], family: str, size: int) -> float:
    """The mean over seeds of `family`'s base model's training accuracy in its last pass, at `size`."""
    accs = [r["train_accuracy"] for r in on_axis(points, "data")
            if r["family"] == family and r["train_size"] == size and not r["overrides"]
            and r["model"] in ("vit_fmnist", "resnet_fmnist")]
    if not accs:
        raise ValueError(f"no {family} point of {size} images on the data axis")
    return float(np.mean(accs))


def points(x: float) -> float:
    """A fraction as percentage points with one decimal, as the prose quotes them."""
    return round(100 * float(x), 1)


def facts() -> dict[str, str | int | float]:
    """The numbers chapter 07's sections 3, 5, 6 and 8 quote, by name."""
    pts = rows()
    c = curves(pts)
    vit, cnn = c["vit"], c["cnn"]
    sizes = [int(n) for n in vit["sizes"]]
    assert sizes == [int(n) for n in cnn["sizes"]], "both families must cover the same sizes"
    at = {n: i for i, n in enumerate(sizes)}
    gaps = cnn["mean"] - vit["mean"]  # the CNN's lead at each size
    out: dict[str, str | int | float] = {}

    # section 3: who wins and by how much, at each size
    out["gap_min"], out["gap_max"] = points(gaps.min()), points(gaps.max())
    for n in sizes:
        out[f"gap_{n // 1000}k"] = points(gaps[at[n]])
    out["vit_1k_acc"], out["vit_30k_acc"] = points(vit["mean"][at[1_000]]), points(vit["mean"][at[30_000]])
    out["vit_10k_acc"], out["cnn_1k_acc"] = points(vit["mean"][at[10_000]]), points(cnn["mean"][at[1_000]])
    # over-fitting at the small sizes: the ViT's accuracy on its own training images during its
    # last pass (with the recipe's flips), mean over seeds, next to its test accuracy
    for n in (1_000, 10_000):
        out[f"vit_{n // 1000}k_train_acc"] = points(train_accuracy(pts, "vit", n))
    out["vit_60k_acc"], out["cnn_60k_acc"] = points(vit["mean"][at[60_000]]), points(cnn["mean"][at[60_000]])
    # what the 60k point (twice the images seen) adds over the 30k one
    out["vit_gain_60k"] = points(vit["mean"][at[60_000]] - vit["mean"][at[30_000]])
    out["cnn_gain_60k"] = points(cnn["mean"][at[60_000]] - cnn["mean"][at[30_000]])
    vit_card = card("vit_fmnist")
    out["vit_card_epochs"] = int(vit_card["epochs"])
    out["vit_card_acc"] = round(100 * float(vit_card["test_accuracy"]))
    # the seeds' spread: the widest band of each family
    out["vit_seed_spread_max"] = points((vit["high"] - vit["low"]).max())
    out["cnn_seed_spread_max"] = points((cnn["high"] - cnn["low"]).max())

    # the power-law fits of the mean error (exercise 07.1's plot)
    out["vit_slope"] = round(fit_power_law(vit["sizes"], 1 - vit["mean"])[0], 3)
    out["cnn_slope"] = round(fit_power_law(cnn["sizes"], 1 - cnn["mean"])[0], 3)

    # section 5: three widths per family, smallest first
    for fam, widths in model_axis(pts).items():
        for size, r in zip(("small", "medium", "large"), widths, strict=True):
            out[f"{fam}_{size}_acc"] = points(r["test_accuracy"])

    # section 6: the ViT at patch 14, 7 and 4
    for p, r in patch_axis(pts).items():
        out[f"patch{p}_acc"] = points(r["test_accuracy"])

    # section 8: the CNN's lead over every data size and every width
    leads = list(gaps) + [c_["test_accuracy"] - v["test_accuracy"]
                          for v, c_ in zip(*model_axis(pts).values(), strict=True)]
    out["lead_min"], out["lead_max"] = points(min(leads)), points(max(leads))
    return out
