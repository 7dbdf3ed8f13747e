"""Chapter 12's experiments: do Vision Transformers see like CNNs? The shipped ViT (`vit_fmnist`)
and ResNet (`resnet_fmnist`) checkpoints, side by side, in three parts (each resumable):

1. **corruptions**: test accuracy under every corruption of `vitcourse.analysis.corruption_suite`
   (patch drop with 7x7 and 4x4 patches, centre and border drop, patch shuffle, Gaussian noise,
   low- and high-pass filters) at each of its strengths, the first of which is the clean image,
   on the whole 10,000-image test set -> ``data/results/robustness.csv``.
2. **attacks**: accuracy under FGSM and 10-step PGD (L-inf, eps 0 to 16 grey levels), each made
   against the model it is tested on, on a stratified 1,000-image subset (PGD is 10 forward and
   backward passes per image) -> the same CSV, its `images` column says how many.
3. **cka**: minibatch linear CKA (Raghu et al. 2021's Figures 1-2) between every pair of layers of
   ViT-ViT, ResNet-ResNet and ViT-ResNet, on mean-pooled per-layer features of the test images ->
   ``data/results/cka.csv``.

    python -m vitcourse robustness                          # all three parts (see below for the time)
    python -m vitcourse robustness --parts cka --cka-reduce flatten

Time: a timed run of the default grid on 300 images, on one niced thread of a shared 2-core CPU,
went at ~1,500 (ViT) and ~1,050 (ResNet) images/s for the corruptions, ~500 / ~370 for FGSM and
~95 / ~70 for PGD (10 steps): about 15 minutes for the full grid there (corruptions 11.5, attacks 3,
CKA under 1), less with two threads on an idle machine. Each part prints its measured time.

One CSV row per (model, corruption, strength, seed, images): a row already in the file is
skipped, so a stopped run (or one cut by ``--max-minutes``) picks up where it stopped. The
chapter reads the files with `read_robustness` / `read_cka` and draws them with
`plot_accuracy_curves` / `plot_cka`.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn

from ..analysis.cka import MinibatchCKA
from ..analysis.corruption_suite import ALL, ATTACKS, CORRUPTIONS
from ..analysis.corruptions import pixels_to_input
from ..analysis.representations import REDUCTIONS, default_layers, eval_mode, iter_layer_outputs
from ..cli_args import (CommandError, device_name, non_negative_int, number, one_of, output_folder,
                        positive_float, test_subset)
from ..data import REPO_ROOT, load_fashion_mnist, stratified_subset
from ..training.provenance import provenance_columns
from ..training.checkpoint import PRETRAINED, PRETRAINED_DIR
from .results_csv import SweepReport, append_row, read_results

RESULTS_DIR = REPO_ROOT / "data" / "results"
ROBUSTNESS_CSV = RESULTS_DIR / "robustness.csv"
CKA_CSV = RESULTS_DIR / "cka.csv"
MODELS: tuple[str, ...] = ("vit_fmnist", "resnet_fmnist")
PARTS: tuple[str, ...] = ("corruptions", "attacks", "cka")
SEED = 0                  # seeds every random corruption (the same seed at every strength)
EVAL_BATCH = 512          # `evaluate`'s default, so the clean row is bit for bit its accuracy
ATTACK_IMAGES = 1_000     # PGD costs ~30 forward passes per image: a subset keeps it to minutes
ATTACK_BATCH = 250
SUBSET_SEED = 1           # the stratified test subsets (as the scaling sweep's --test-size)
CKA_BATCH = 500           # >= 256 keeps the minibatch estimator's noise small; 500 divides 10,000
CKA_REDUCE = "mean"       # average over tokens / positions: (B, D) per layer, comparable across models
CLEAN = "clean"           # the corruption name of the uncorrupted row


def model_card(name: str) -> dict[str, Any]:
    """The JSON card next to a shipped checkpoint (test accuracy, commit, ...); {} if there is none."""
    path = PRETRAINED_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class Deadline:
    """`max_minutes` from its creation (None: never): no new piece of work starts after it."""
    max_minutes: float | None = None
    start: float = field(default_factory=time.perf_counter)

    def passed(self) -> bool:
        return self.max_minutes is not None and time.perf_counter() - self.start > 60 * self.max_minutes


def robustness_key(model: str, corruption: str, strength: float, seed: int, images: int) -> str:
    return f"{model}/{corruption}/{float(strength):g}/seed={seed}/images={images}"


def _row(name: str, card: Mapping[str, Any], corruption: str, strength: float, unit: str, images: int,
         accuracy: float, seed: int, wall_s: float, provenance: Mapping[str, str]) -> dict[str, Any]:
    """One robustness.csv row."""
    return {"key": robustness_key(name, corruption, strength, seed, images), "model": name,
            "card_test_accuracy": card.get("test_accuracy", ""), "card_commit": card.get("commit", ""),
            "corruption": corruption, "strength": float(strength), "strength_unit": unit, "images": images,
            "accuracy": round(accuracy, 5), "seed": seed, "wall_s": round(wall_s, 3), **provenance}


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1).cpu() == labels.cpu()).float().mean().item()


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _checked_grid(grid: Mapping[str, Sequence[float]] | None, known: Mapping[str, Any]
                  ) -> dict[str, Sequence[float]]:
    """`grid`, or every entry of `known` at its own strengths; names outside `known` are an error."""
    grid = {name: c.strengths for name, c in known.items()} if grid is None else dict(grid)
    unknown = [name for name in grid if name not in known]
    if unknown:
        raise ValueError(f"grid must name entries of {list(known)}, got {unknown}")
    return grid


# ---------------------------------------------------------------------------------------------
# 1. Corruptions

def run_corruptions(models: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor,
                    csv_path: str | Path = ROBUSTNESS_CSV, grid: Mapping[str, Sequence[float]] | None = None,
                    seed: int = SEED, cards: Mapping[str, Mapping[str, Any]] | None = None,
                    deadline: Deadline | None = None, log: Callable[[str], None] = print) -> SweepReport:
    """Accuracy of every model on the clean images and on each corruption at each strength.

    The images are corrupted once per (corruption, strength), with a generator seeded by `seed`,
    and every model sees the same corrupted images. A corruption that leaves the images unchanged
    (its clean strength) reuses the clean predictions instead of computing them again.

    Args:
        models: {name: model}, evaluated on their own device (`predict`, fp32, eval mode).
        images, labels: uint8 test images (N, 28, 28) and their classes (N,).
        csv_path: robustness.csv; rows already there are skipped.
        grid: {corruption name in `CORRUPTIONS`: strengths}; default every corruption's own grid.
        seed: the corruptions' generator seed (recorded in each row).
        cards: {name: checkpoint card} for the card columns.
        deadline: start no new (corruption, strength) after it.
    """
    from ..training.loop import predict

    grid = _checked_grid(grid, CORRUPTIONS)
    n, cards, deadline = len(labels), cards or {}, deadline or Deadline()
    done = {r["key"] for r in read_results(csv_path)}
    provenance = provenance_columns()
    clean_logits: dict[str, torch.Tensor] = {}
    report = SweepReport()
    groups = [(CLEAN, 0.0, "none")] + [(name, s, CORRUPTIONS[name].unit) for name, ss in grid.items() for s in ss]
    for i, (name, strength, unit) in enumerate(groups):
        keys = {m: robustness_key(m, name, strength, seed, n) for m in models}
        todo = [m for m in models if keys[m] not in done]
        report.skipped += [keys[m] for m in models if keys[m] in done]
        if not todo:
            continue
        if deadline.passed():
            left = [robustness_key(m, g, s, seed, n) for g, s, _ in groups[i:] for m in models]
            report.remaining += [k for k in left if k not in done]
            log(f"time limit of {deadline.max_minutes} min reached: run the same command again to go on")
            break
        start = time.perf_counter()
        corrupted = images if name == CLEAN else CORRUPTIONS[name].apply(images, strength,
                                                                         torch.Generator().manual_seed(seed))
        unchanged = corrupted is images or torch.equal(corrupted, images)
        corrupt_s = time.perf_counter() - start
        accs = []
        for m in todo:
            t0 = time.perf_counter()
            if unchanged and m in clean_logits:
                logits = clean_logits[m]
            else:
                logits = predict(models[m], corrupted, EVAL_BATCH, device=_model_device(models[m]))
                if unchanged:
                    clean_logits[m] = logits
            acc = _accuracy(logits, labels)
            wall = corrupt_s + time.perf_counter() - t0
            append_row(csv_path, _row(m, cards.get(m, {}), name, strength, unit, n, acc, seed, wall, provenance))
            report.done.append(keys[m])
            accs.append(f"{m} {acc:.3f}")
        seconds = time.perf_counter() - start
        reused = ", images unchanged: the clean predictions" if unchanged and name != CLEAN else ""
        log(f"  {name:20s} {strength:>5g}: {', '.join(accs)}  ({seconds:.1f} s, "
            f"{n * len(todo) / seconds:,.0f} images/s{reused})")
    return report


# ---------------------------------------------------------------------------------------------
# 2. Attacks

def attack_accuracy(model: nn.Module, attack: str, images: torch.Tensor, labels: torch.Tensor,
                    strength: float, seed: int = SEED, batch_size: int = ATTACK_BATCH) -> float:
    """Accuracy of `model` on `attack` (a name in `ATTACKS`) made against itself at eps = `strength`
    grey levels, batch by batch (one generator for the whole set, seeded by `seed`)."""
    spec = ATTACKS[attack]
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    for start in range(0, len(labels), batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        adv = spec.apply(model, x, y, strength, generator)  # float pixels (B, H, W) in [0, 1]
        with torch.no_grad(), eval_mode(model):
            logits = model(pixels_to_input(model, adv.to(_model_device(model))))
        correct += int((logits.argmax(-1).cpu() == y).sum())
    return correct / len(labels)


def run_attacks(models: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor,
                csv_path: str | Path = ROBUSTNESS_CSV, grid: Mapping[str, Sequence[float]] | None = None,
                seed: int = SEED, cards: Mapping[str, Mapping[str, Any]] | None = None,
                deadline: Deadline | None = None, log: Callable[[str], None] = print) -> SweepReport:
    """Accuracy of each model under each attack in `grid` ({name in `ATTACKS`: eps in grey
    levels}; default: both attacks at every eps), each attack made against the model it tests
    (white-box). `images` is the attack set (the runner passes a stratified 1,000-image subset).
    Other arguments as in `run_corruptions`."""
    grid = _checked_grid(grid, ATTACKS)
    n, cards, deadline = len(labels), cards or {}, deadline or Deadline()
    done = {r["key"] for r in read_results(csv_path)}
    provenance = provenance_columns()
    report = SweepReport()
    points = [(name, s, m) for name, ss in grid.items() for s in ss for m in models]
    for i, (name, strength, m) in enumerate(points):
        key = robustness_key(m, name, strength, seed, n)
        if key in done:
            report.skipped.append(key)
            continue
        if deadline.passed():
            left = [robustness_key(mm, g, s, seed, n) for g, s, mm in points[i:]]
            report.remaining += [k for k in left if k not in done]
            log(f"time limit of {deadline.max_minutes} min reached: run the same command again to go on")
            break
        start = time.perf_counter()
        acc = attack_accuracy(models[m], name, images, labels, strength, seed)
        seconds = time.perf_counter() - start
        append_row(csv_path, _row(m, cards.get(m, {}), name, strength, ATTACKS[name].unit, n, acc, seed,
                                  seconds, provenance))
        report.done.append(key)
        log(f"  {name:5s} eps {strength:>4g}/255 {m}: {acc:.3f}  ({seconds:.1f} s, {n / seconds:,.0f} images/s)")
    return report


# ---------------------------------------------------------------------------------------------
# 3. CKA

def cka_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every model with itself, then every pair of different models: ViT-ViT, ResNet-ResNet, ViT-ResNet."""
    return [(a, a) for a in names] + list(combinations(names, 2))


def _layer_names(model: nn.Module) -> list[str]:
    names = {id(m): name for name, m in model.named_modules()}
    return [names[id(m)] for m in default_layers(model)]


def cka_key(a: str, b: str, i: int, j: int, images: int, batch_size: int, reduce: str) -> str:
    return f"{a}|{b}|{i}|{j}|images={images}|batch={batch_size}|reduce={reduce}"


def run_cka(models: Mapping[str, nn.Module], images: torch.Tensor, csv_path: str | Path = CKA_CSV,
            batch_size: int = CKA_BATCH, reduce: str = CKA_REDUCE, deadline: Deadline | None = None,
            log: Callable[[str], None] = print) -> dict[tuple[str, str], torch.Tensor]:
    """Minibatch CKA between the `default_layers` of every pair in `cka_pairs(models)`.

    Each model runs once per minibatch and every pair's `MinibatchCKA` is fed from the same
    outputs. Only whole minibatches are used (equal sizes, as the estimator wants): the
    `len(images) % batch_size` images left over are not, and each row's `images` says how many were.

    Returns:
        {(model_a, model_b): (La, Lb) CKA} for the pairs computed in this call (pairs already in
        the CSV with the same images, batch size and reduction are skipped, not recomputed).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    n = len(images) // batch_size * batch_size
    if n == 0:
        raise ValueError(f"batch_size must be at most the number of images ({len(images)}), got {batch_size}")
    deadline = deadline or Deadline()
    layers = {m: _layer_names(model) for m, model in models.items()}
    done = {r["key"] for r in read_results(csv_path)}
    pairs = [(a, b) for a, b in cka_pairs(list(models))
             if any(cka_key(a, b, i, j, n, batch_size, reduce) not in done
                    for i in range(len(layers[a])) for j in range(len(layers[b])))]
    if not pairs:
        log("  cka: every pair is in the CSV already")
        return {}
    if deadline.passed():
        log(f"time limit of {deadline.max_minutes} min reached before CKA: run the same command again")
        return {}
    start = time.perf_counter()
    needed = list(dict.fromkeys(m for pair in pairs for m in pair))
    streams = [iter_layer_outputs(models[m], images[:n], reduce=reduce, batch_size=batch_size) for m in needed]
    accs = {pair: MinibatchCKA() for pair in pairs}
    for outputs in zip(*streams):
        feats = dict(zip(needed, outputs))  # {model: per layer (B, features)}
        for (a, b), acc in accs.items():
            acc.update(feats[a], None if a == b else feats[b])
    seconds = time.perf_counter() - start
    provenance = provenance_columns()
    out = {}
    for (a, b), acc in accs.items():
        matrix = acc.compute()  # (La, Lb)
        out[(a, b)] = matrix
        for i, name_i in enumerate(layers[a]):
            for j, name_j in enumerate(layers[b]):
                key = cka_key(a, b, i, j, n, batch_size, reduce)
                if key not in done:
                    append_row(csv_path, {"key": key, "model_a": a, "model_b": b, "layer_a": i, "layer_b": j,
                                          "layer_a_name": name_i, "layer_b_name": name_j,
                                          "cka": round(float(matrix[i, j]), 6), "images": n,
                                          "batch_size": batch_size, "reduce": reduce,
                                          "wall_s": round(seconds, 2), **provenance})
        log(f"  cka {a} x {b}: {tuple(matrix.shape)} layers, mean {matrix.nanmean():.3f}")
    log(f"  cka: {n} images in minibatches of {batch_size}, {reduce} features, {seconds:.1f} s "
        f"({n * len(needed) / seconds:,.0f} images/s through the models)")
    return out


# ---------------------------------------------------------------------------------------------
# Reading and plotting the results (the chapter's calls)

def read_robustness(path: str | Path = ROBUSTNESS_CSV) -> list[dict[str, Any]]:
    """robustness.csv's rows, with strength, accuracy and wall_s as floats, images and seed as ints."""
    rows = read_results(path)
    for r in rows:
        for k in ("strength", "accuracy", "wall_s"):
            r[k] = float(r[k])
        for k in ("images", "seed"):
            r[k] = int(r[k])
    return rows


def accuracy_curves(rows: Sequence[Mapping[str, Any]], corruption: str
                    ) -> dict[str, tuple[list[float], list[float]]]:
    """{model: (strengths, accuracies)} of one corruption, mildest strength first.

    Accuracies are averaged over seeds; where a model has rows on several image counts (a
    ``--test-size`` run next to the full one), the largest count is used.
    """
    picked = [r for r in rows if r["corruption"] == corruption]
    lower_is_stronger = ALL[corruption].lower_is_stronger if corruption in ALL else False
    out = {}
    for model in dict.fromkeys(r["model"] for r in picked):
        mine = [r for r in picked if r["model"] == model]
        most = max(int(r["images"]) for r in mine)
        by_strength: dict[float, list[float]] = {}
        for r in mine:
            if int(r["images"]) == most:
                by_strength.setdefault(float(r["strength"]), []).append(float(r["accuracy"]))
        strengths = sorted(by_strength, reverse=lower_is_stronger)
        out[model] = (strengths, [sum(by_strength[s]) / len(by_strength[s]) for s in strengths])
    return out


def read_cka(path: str | Path = CKA_CSV, reduce: str | None = None, images: int | None = None
             ) -> dict[tuple[str, str], torch.Tensor]:
    """{(model_a, model_b): (La, Lb) float64 CKA} from cka.csv, optionally only the rows of one
    `reduce` / `images` setting. Two settings left for one pair are an error (say which one)."""
    rows = [r for r in read_results(path)
            if (reduce is None or r["reduce"] == reduce) and (images is None or int(r["images"]) == images)]
    settings: dict[tuple[str, str], set] = {}
    for r in rows:
        settings.setdefault((r["model_a"], r["model_b"]), set()).add((r["reduce"], int(r["images"]), r["batch_size"]))
    mixed = {pair: sorted(s) for pair, s in settings.items() if len(s) > 1}
    if mixed:
        raise ValueError(f"{path} holds several settings (reduce, images, batch_size) for {mixed}; "
                         "pass reduce= and images= to choose one")
    out = {}
    for pair in settings:
        mine = [r for r in rows if (r["model_a"], r["model_b"]) == pair]
        la, lb = 1 + max(int(r["layer_a"]) for r in mine), 1 + max(int(r["layer_b"]) for r in mine)
        matrix = torch.full((la, lb), float("nan"), dtype=torch.float64)
        for r in mine:
            matrix[int(r["layer_a"]), int(r["layer_b"])] = float(r["cka"])
        out[pair] = matrix
    return out


def plot_accuracy_curves(rows: Sequence[Mapping[str, Any]], corruption: str, ax=None):
    """Accuracy (%) against strength for each model, strength growing to the right; a clean point
    that is not a number on the axis (noise at SNR inf, low-pass at radius inf) is a dashed line.
    Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    curves = accuracy_curves(rows, corruption)
    if not curves:
        raise ValueError(f"rows hold no results for corruption {corruption!r}")
    spec = ALL.get(corruption)
    picked = [r for r in rows if r["corruption"] == corruption]
    for model, (strengths, accs) in curves.items():
        finite = [(s, 100 * a) for s, a in zip(strengths, accs) if math.isfinite(s)]
        line, = ax.plot([s for s, _ in finite], [a for _, a in finite], "o-", label=model)
        for s, a in zip(strengths, accs):
            if not math.isfinite(s):
                ax.axhline(100 * a, color=line.get_color(), linestyle="--", linewidth=0.8,
                           label=f"{model}, clean")
    ax.axhline(10, color="grey", linestyle=":", linewidth=0.8, label="chance (10%)")
    if spec is not None and spec.lower_is_stronger:
        ax.invert_xaxis()  # stronger to the right, as on every other curve
    images = max(int(r["images"]) for r in picked)
    ax.set_title(f"{spec.title if spec else corruption}\n({images:,} test images)", fontsize=10)
    ax.set_xlabel(picked[0]["strength_unit"] + (" (lower = stronger)" if spec and spec.lower_is_stronger else ""))
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_cka(matrix: torch.Tensor, title: str, ax=None, labels: tuple[str, str] = ("model A", "model B")):
    """A CKA heatmap (La, Lb) as Raghu et al.'s Figures 1-2: rows = layers of A (bottom = first),
    columns = layers of B, colour 0 to 1. Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6))
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if m.dim() != 2:
        raise ValueError(f"matrix must be (La, Lb), got shape {tuple(m.shape)}")
    im = ax.imshow(m.numpy(), origin="lower", cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(m.shape[1]), [str(j + 1) for j in range(m.shape[1])])
    ax.set_yticks(range(m.shape[0]), [str(i + 1) for i in range(m.shape[0])])
    ax.set_xlabel(f"layer of {labels[1]}")
    ax.set_ylabel(f"layer of {labels[0]}")
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="CKA")
    return ax


# ---------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=list(MODELS), type=one_of(PRETRAINED, "a checkpoint name"),
                        help="shipped checkpoints (data/checkpoints/NAME.pt)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), type=one_of(PARTS, "a part"))
    parser.add_argument("--test-size", type=test_subset, default=None,
                        help="stratified subset of the test set for the corruptions (default: all 10,000)")
    parser.add_argument("--attack-images", type=test_subset, default=ATTACK_IMAGES,
                        help="stratified subset for FGSM and PGD")
    parser.add_argument("--cka-images", type=test_subset, default=None, help="test images for CKA (default: all)")
    parser.add_argument("--cka-batch-size", type=number(int, at_least=256), default=CKA_BATCH,
                        help="images per CKA minibatch")
    parser.add_argument("--cka-reduce", type=one_of(REDUCTIONS, "a reduction"), default=CKA_REDUCE,
                        help="mean: average over tokens / positions; flatten: every value")
    parser.add_argument("--seed", type=non_negative_int, default=SEED, help="the random corruptions' seed")
    parser.add_argument("--max-minutes", type=positive_float, default=None,
                        help="start no new piece after this long; run again to resume")
    parser.add_argument("--out-dir", type=output_folder, default=RESULTS_DIR, help="folder of robustness.csv and cka.csv")
    parser.add_argument("--device", type=device_name, default=None)
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="torch CPU threads (0: torch's default); recorded in each row's hardware")


def _subset(images: torch.Tensor, labels: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    return (images, labels) if n is None or n >= len(labels) else stratified_subset(images, labels, n, SUBSET_SEED)


def main(args: argparse.Namespace) -> int:
    from ..settings import get_device
    from ..training.checkpoint import load_pretrained

    missing = [m for m in args.models if not (PRETRAINED_DIR / f"{m}.pt").is_file()]
    if missing:
        raise CommandError("the checkpoints " + ", ".join(str(PRETRAINED_DIR / f"{m}.pt") for m in missing)
                           + " are missing; produce them with " + ", ".join(str(PRETRAINED[m]) for m in missing))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    device = get_device(args.device)
    models = {m: load_pretrained(m, map_location=device) for m in dict.fromkeys(args.models)}
    cards = {m: model_card(m) for m in models}
    images, labels = load_fashion_mnist("test")
    deadline = Deadline(args.max_minutes)
    timings = []
    for part in args.parts:
        start = time.perf_counter()
        print(f"{part} ...")
        if part == "corruptions":
            x, y = _subset(images, labels, args.test_size)
            run_corruptions(models, x, y, out / ROBUSTNESS_CSV.name, seed=args.seed, cards=cards, deadline=deadline)
        elif part == "attacks":
            x, y = _subset(images, labels, args.attack_images)
            run_attacks(models, x, y, out / ROBUSTNESS_CSV.name, seed=args.seed, cards=cards, deadline=deadline)
        else:
            x, _ = _subset(images, labels, args.cka_images)
            if args.cka_batch_size > len(x):
                raise CommandError(f"argument --cka-batch-size: expected at most the {len(x)} CKA images, "
                                   f"got {args.cka_batch_size}")
            run_cka(models, x, out / CKA_CSV.name, args.cka_batch_size, args.cka_reduce, deadline)
        timings.append(f"{part} {time.perf_counter() - start:.0f} s")
    print(f"time per part: {', '.join(timings)}; total {time.perf_counter() - deadline.start:.0f} s")
    return 0
