"""Chapter 13's measured facts, sections 7 and 8: the ten-minute runs of every remedy
(``data/results/small_data.csv``), the long runs (``small_data_long.csv``) and the cards of the
shipped checkpoints (``data/checkpoints/{vit_convstem_s_fmnist,vit_fmnist,resnet_fmnist}.json``).

`measured()` is the analysis (raw numbers, in percent); `facts()` rounds what the prose quotes.
The conclusions the runners depend on, the best recipe step and the shipped long run, are
derived here from the same rows (`best_variant`, `shipped_variant`); tests/test_small_data.py
asserts they are `small_data.BEST_VARIANT` and `SHIPPED_VARIANT`, and asserts every comparison
the prose makes on these numbers.

Section 8's class-by-class sentence quotes no number: it names classes, which the code cell above
it evaluates live on the 10,000 test images, and the slow claims test checks it against that
evaluation.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vitcourse.experiments import small_data as sd
from vitcourse.training.checkpoint import PRETRAINED_DIR

CHAPTER = "13_small_data"

# Two results closer than this (points) are within seed noise: three 10-minute seeds of
# conv_stem_s span 0.08 points, of the other steps up to 0.8.
SEED_NOISE = 0.3
# The long part's runs the prose names: the best step's hour as it is, the same hour regularised
# (small_data.REGULARISED), and the model chapter 05 trained, which section 8 compares with.
REGULARISED = next(iter(sd.REGULARISED))
SHIPPED_MODEL = sd.STEPS[REGULARISED][0]  # vit_convstem_s_fmnist: the checkpoint section 8 ships
CHAPTER_05 = "vit_fmnist"
TEACHER = sd.TEACHER  # resnet_fmnist: the distillation teacher's card
HALF_HOUR_S, HOUR_S = sd.LONG_BUDGETS_S  # the prose says "30 minutes" and "60 minutes"


def _card(name: str, folder: Path = PRETRAINED_DIR) -> dict[str, Any]:
    return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))


def _step(runs: list[dict[str, str]], accuracies: list[float], epochs: list[int], macs: int) -> dict[str, Any]:
    """One recipe step's figures over its seeds, in percent."""
    histories = [json.loads(r["history"]) for r in runs]
    # test accuracy gained over the last two epochs (the cosine schedule's tail), in points
    tail = [100 * (h[-1]["test_acc"] - h[max(0, len(h) - 3)]["test_acc"]) for h in histories]
    return {"mean": 100 * sum(accuracies) / len(accuracies), "min": 100 * min(accuracies),
            "max": 100 * max(accuracies), "seeds": len(accuracies), "epochs": epochs[0],
            "all_epochs": sorted(set(epochs)), "mmacs": macs / 1e6,
            # the last epoch's training accuracy: a running mean over its (augmented) batches
            "train_acc": 100 * sum(h[-1]["train_acc"] for h in histories) / len(histories),
            "tail_gain": sum(tail) / len(tail)}


def _long(row: dict[str, str]) -> dict[str, Any]:
    """One long run's figures from its CSV row, in percent."""
    steps = json.loads(row["history"])
    peak = max(steps, key=lambda h: h["test_acc"])
    return {"accuracy": 100 * float(row["test_accuracy"]), "epochs": int(row["epochs"]),
            "minutes": float(row["fit_wall_s"]) / 60, "train_acc": 100 * steps[-1]["train_acc"],
            "best_epoch": int(peak["epoch"]), "best_acc": 100 * peak["test_acc"],
            # test accuracy gained over the last five epochs, in points: is the curve still rising?
            "tail_gain": 100 * (steps[-1]["test_acc"] - steps[max(0, len(steps) - 6)]["test_acc"]),
            "overrides": json.loads(row["model_overrides"] or "{}"),
            "options": json.loads(row["train_overrides"] or "{}")}


def best_variant(steps: dict[str, dict[str, Any]]) -> str:
    """The recipe's best ViT step: the highest mean test accuracy over its seeds (the ResNet is
    the yardstick, not a step a ViT can take)."""
    vits = {k: v["mean"] for k, v in steps.items() if k != sd.LONG_REFERENCE}
    return max(vits, key=vits.get)


def shipped_variant(long: dict[tuple[str, float], dict[str, Any]]) -> str:
    """The long run that ships: the better of the longest-budget ViT runs."""
    hours = {v: run["accuracy"] for (v, budget), run in long.items()
             if budget == HOUR_S and v != sd.LONG_REFERENCE}
    return max(hours, key=hours.get)


def measured(results: Path = sd.RESULTS_DIR, checkpoints: Path = PRETRAINED_DIR) -> dict[str, Any]:
    """Everything sections 8 and 9 quote, unrounded: per recipe step (`_step`), the long runs
    by (variant, budget in s) (`_long`), the best and the shipped variant, and the cards."""
    rows = sd.read_rows(results)
    steps = {}
    for variant, summary in sd.recipe_summary(rows).items():
        runs = [r for r in rows if r["experiment"] == "recipe" and r["variant"] == variant]
        steps[variant] = _step(runs, summary.accuracies, summary.epochs, summary.macs)
    long = {(r["variant"], float(r["budget_s"])): _long(r) for r in rows if r["experiment"] == "long"}
    cards = {name: _card(name, checkpoints) for name in (SHIPPED_MODEL, CHAPTER_05, TEACHER)}
    return {"steps": steps, "long": long, "best": best_variant(steps), "shipped": shipped_variant(long),
            "cards": cards}


def _f(value: float, digits: int = 2, sign: bool = False) -> str:
    """A number as the prose shows it: fixed decimals ("92.90", not 92.9), a sign where asked."""
    return f"{value:{'+' if sign else ''}.{digits}f}"


def facts() -> dict[str, str | int | float]:
    """Sections 7 and 8's numbers: accuracies in percent as fixed-decimal strings (the prose
    shows "92.90" and "+0.45"), epochs and MMACs as ints."""
    m = measured()
    st, long, cards = m["steps"], m["long"], m["cards"]
    best = st[m["best"]]
    out: dict[str, str | int | float] = {}
    # section 7: every step's mean (the table beside it prints the range of its seeds); section 8
    # quotes the range of the ResNet's seeds
    for name, step in st.items():
        out[f"{name}_mean"] = _f(step["mean"])
    resnet = st[sd.LONG_REFERENCE]
    out["resnet_range"] = f"{_f(resnet['min'])}-{_f(resnet['max'])}"
    for name in ("vit", "conv_stem", "conv_stem_s", "spt_lsa", "cct", "distill"):
        out[f"{name}_epochs"] = st[name]["epochs"]
    for name in ("vit", "conv_stem", "conv_stem_s", "spt_lsa"):
        out[f"{name}_mmacs"] = round(st[name]["mmacs"])
    for name in ("vit", "cct"):
        out[f"{name}_train_acc"] = _f(st[name]["train_acc"], 1)
        out[f"{name}_mean_1dp"] = _f(st[name]["mean"], 1)
    out["best_vs_vit"] = _f(best["mean"] - st["vit"]["mean"], sign=True)
    out["teacher_acc"] = _f(100 * cards[TEACHER]["test_accuracy"])
    out["best_tail_gain"] = _f(best["tail_gain"], sign=True)
    # section 8: the best step for 30 and 60 minutes, the same hour regularised, the ResNet's hour
    half, plain = long[(m["best"], HALF_HOUR_S)], long[(m["best"], HOUR_S)]
    reg, resnet_hour = long[(REGULARISED, HOUR_S)], long[(sd.LONG_REFERENCE, HOUR_S)]
    out["half_hour_epochs"] = half["epochs"]
    out["half_hour_vs_best"] = _f(half["accuracy"] - best["mean"], sign=True)
    out["plain_hour_epochs"] = plain["epochs"]
    out["plain_hour_acc"] = _f(plain["accuracy"])
    out["plain_hour_train_acc"] = _f(plain["train_acc"], 1)
    out["regularised_hour_acc"] = _f(reg["accuracy"])
    out["regularised_vs_plain_hour"] = _f(reg["accuracy"] - plain["accuracy"], sign=True)
    out["resnet_hour_acc"] = _f(resnet_hour["accuracy"])
    # the shipped model's card (its accuracy is the card's, on all 10,000 test images) and chapter 05's
    shipped_acc = 100 * cards[SHIPPED_MODEL]["test_accuracy"]
    ch05_acc = 100 * cards[CHAPTER_05]["test_accuracy"]
    out["shipped_acc"] = _f(shipped_acc)
    out["ch05_acc"] = _f(ch05_acc)
    out["shipped_vs_ch05"] = _f(shipped_acc - ch05_acc, sign=True)
    return out
