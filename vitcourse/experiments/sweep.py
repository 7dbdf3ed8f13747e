"""The scaling sweep: ViT vs CNN over training-set size, model size and patch size.

``python -m vitcourse sweep`` (or ``make sweep``) trains every point of the grid with
`vitcourse.training.loop.fit`, evaluates it on the full 10,000-image test set and appends one row per
point to a CSV. The run is resumable: a point whose key is already in the CSV is skipped, so an
interrupted sweep (or one run in pieces with ``--max-minutes``) picks up where it stopped.

Each row is written atomically (`results_csv.append_row` rewrites the whole file to a temporary
file that replaces the old one), so a crash never leaves half a row. A row holds the point's full model and
training configuration, its seed, wall time, hardware, torch version and git commit, and the
column ``cumulative_wall_s``: the sweep's wall time so far, summed over all pieces.

Compute budget per point: every point sees the same number of training images
(``budget_images``) unless that would be more than ``max_epochs`` passes over a small
training set; so large sets get a few epochs and small ones many, at about equal compute.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from ..cli_args import (CommandError, int_list, non_negative_int, one_of, output_file, positive_float,
                        positive_int, train_subset)
from ..data import REPO_ROOT, FashionMNISTData, load_fashion_mnist, stratified_subset
from ..training.provenance import provenance_columns
# read_results: chapters 07 and 11-13 (chapters/*.md, their notebooks) import it from here: keep it
from .results_csv import SweepReport, append_row, config_dict, read_results

DEFAULT_CSV = REPO_ROOT / "data" / "results" / "scaling.csv"
DATA_SIZES: tuple[int, ...] = (1_000, 3_000, 10_000, 30_000, 60_000)
SEEDS: tuple[int, ...] = (0, 1)
# Sized so that the whole grid runs in ~45 min on 2 shared CPU cores (at ~250-500 images/s).
BUDGET_IMAGES = 30_000    # training images seen per point (at least one epoch)
MAX_EPOCHS = 20           # ...but never more passes than this over a small set
AXIS_SIZE = 10_000        # training-set size of the model-size and patch-size axes
MONITOR_SIZE = 200        # test images `fit` evaluates after each epoch; the final score uses all
EVAL_PRECISION = "auto"   # bf16 on a CPU that has it: halves the cost of the 10k-image test
AXES: tuple[str, ...] = ("data", "model", "patch")

# Model-size axis: about 0.2M, 0.8M and 1.7M parameters in each family.
VIT_SIZES: dict[str, dict[str, int]] = {
    "S": {"dim": 64, "heads": 2, "mlp_dim": 128},
    "M": {},  # vit_fmnist as it is: dim 128, heads 2, MLP 256
    "L": {"dim": 192, "heads": 3, "mlp_dim": 384},
}
CNN_SIZES: dict[str, str] = {"S": "resnet_fmnist_s", "M": "resnet_fmnist", "L": "resnet_fmnist_l"}
PATCH_SIZES: tuple[int, ...] = (4, 7, 14)


@dataclass(frozen=True)
class SweepPoint:
    """One training run of the sweep."""
    model: str                       # a preset name for `vitcourse.models.create_model`
    train_size: int                  # training images, a stratified subset of the 60k
    seed: int                        # seeds the subset, the initialisation and the batch order
    epochs: int
    overrides: tuple[tuple[str, Any], ...] = ()  # model config fields changed from the preset
    axes: tuple[str, ...] = ()       # the axes ("data", "model", "patch") that use this point

    @property
    def key(self) -> str:
        """A unique name; the CSV is searched for it to skip finished points."""
        over = ",".join(f"{k}={v}" for k, v in self.overrides)
        return f"{self.model}[{over}]/n={self.train_size}/seed={self.seed}/epochs={self.epochs}"


def epochs_for(train_size: int, budget_images: int = BUDGET_IMAGES, max_epochs: int = MAX_EPOCHS) -> int:
    """Epochs so that about `budget_images` images are seen, capped at `max_epochs`, at least 1."""
    for name, value in (("train_size", train_size), ("budget_images", budget_images),
                        ("max_epochs", max_epochs)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return max(1, min(max_epochs, round(budget_images / train_size)))


def default_points(axes: Iterable[str] = AXES, seeds: Iterable[int] = SEEDS,
                   sizes: Iterable[int] = DATA_SIZES, budget_images: int = BUDGET_IMAGES,
                   max_epochs: int = MAX_EPOCHS) -> list[SweepPoint]:
    """The sweep's grid, most informative first (one seed of the data axis, then the rest).

    - data: `vit_fmnist` and `resnet_fmnist` at each size in `sizes`, each seed;
    - model: three widths of each family on `AXIS_SIZE` images (or the largest size below it),
      first seed;
    - patch: `vit_fmnist` with patch 4, 7 and 14 on the same size, first seed.
    A point shared by two axes (e.g. vit_fmnist on 10k, seed 0) is trained once.
    """
    axes, seeds, sizes = list(axes), list(seeds), sorted(sizes)
    unknown = set(axes) - set(AXES)
    if unknown or not axes:
        raise ValueError(f"axes must be a non-empty subset of {AXES}, got {axes}")
    if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative ints, got {seeds}")
    if not sizes or any(not isinstance(n, int) or not 0 < n <= 60_000 for n in sizes):
        raise ValueError(f"sizes must be ints between 1 and 60000, got {sizes}")
    ep = lambda n: epochs_for(n, budget_images, max_epochs)  # noqa: E731
    big = max([n for n in sizes if n <= AXIS_SIZE] or sizes[:1])
    found: dict[str, SweepPoint] = {}

    def add(model: str, n: int, seed: int, axis: str, **overrides: Any) -> None:
        p = SweepPoint(model, n, seed, ep(n), tuple(sorted(overrides.items())))
        old = found.get(p.key)
        found[p.key] = dataclasses.replace(p, axes=(old.axes if old else ()) + (axis,))

    if "data" in axes:
        for seed in seeds:
            for n in sizes:
                add("vit_fmnist", n, seed, "data")
                add("resnet_fmnist", n, seed, "data")
    if "model" in axes:
        for size in ("S", "M", "L"):
            add("vit_fmnist", big, seeds[0], "model", **VIT_SIZES[size])
            add(CNN_SIZES[size], big, seeds[0], "model")
    if "patch" in axes:
        for patch in PATCH_SIZES:
            add("vit_fmnist", big, seeds[0], "patch", **({} if patch == 7 else {"patch_size": patch}))
    return list(found.values())


# ---------------------------------------------------------------------------------------------
# Measuring one point

def forward_flops(model: nn.Module, image_size: int = 28, in_channels: int = 1) -> int:
    """FLOPs of one image's forward pass, counted by `torch.utils.flop_counter` (2 per MAC)."""
    from ..flops import count_flops

    try:  # the course's counter (vitcourse.flops), so every chapter counts the same way
        return int(count_flops(model, image_size))
    except ValueError:  # a model it cannot size (no config, no conv): count it here
        pass
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, image_size, image_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def family_of(model: nn.Module) -> str:
    """'vit' or 'cnn' (or the model's module name for another family)."""
    module = type(model).__module__.rsplit(".", 1)[-1]
    return {"vit": "vit", "cnn": "cnn"}.get(module, module)


@dataclass
class SweepData:
    """The full splits, loaded once, from which each point cuts its training subset."""
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    @classmethod
    def load(cls, test_size: int | None = None) -> "SweepData":
        xtr, ytr = load_fashion_mnist("train")
        xte, yte = load_fashion_mnist("test")
        if test_size is not None:
            xte, yte = stratified_subset(xte, yte, test_size, seed=1)
        return cls(xtr, ytr, xte, yte)

    def for_point(self, point: SweepPoint) -> FashionMNISTData:
        """The point's training subset; `fit` monitors a small fixed slice of the test set."""
        if point.train_size > len(self.train_labels):
            raise ValueError(f"train_size must be at most {len(self.train_labels)}, got {point.train_size}")
        xtr, ytr = (self.train_images, self.train_labels)
        if point.train_size < len(ytr):
            xtr, ytr = stratified_subset(xtr, ytr, point.train_size, seed=point.seed)
        m = min(MONITOR_SIZE, len(self.test_labels))
        xm, ym = stratified_subset(self.test_images, self.test_labels, m, seed=2)
        return FashionMNISTData(xtr, ytr, xm, ym)


def run_point(point: SweepPoint, data: SweepData, device: str | None = None,
              train_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `point` with `vitcourse.training.loop.fit`, score it on `data`'s test set; returns a CSV row."""
    from ..training import loop as training  # imported here: the sweep's planning needs no training code
    from ..models.registry import create_model
    from ..settings import seed_everything

    start = time.perf_counter()
    seed_everything(point.seed)  # the initialisation depends on the seed
    model = create_model(point.model, **dict(point.overrides))
    mcfg = getattr(model, "config", None)
    image_size = getattr(mcfg, "image_size", 28)
    in_channels = getattr(mcfg, "in_channels", 1)
    flops = forward_flops(model, image_size, in_channels)
    params = sum(p.numel() for p in model.parameters())
    config = training.TrainConfig(**{"epochs": point.epochs, "seed": point.seed, "compile": False,
                                     **(train_overrides or {})})
    result = training.fit(model, data.for_point(point), config, device=device, progress=False)
    scores = training.evaluate(result.model, data.test_images, data.test_labels, device=device,
                               precision=EVAL_PRECISION)
    last = result.history[-1] if result.history else {}
    images_seen = point.epochs * point.train_size
    return {
        "key": point.key,
        "axes": ";".join(point.axes),
        "family": family_of(model),
        "model": point.model,
        "overrides": json.dumps(dict(point.overrides), sort_keys=True),
        "params": params,
        "patch_size": getattr(mcfg, "patch_size", ""),
        "width": getattr(mcfg, "dim", None) or (mcfg.widths[0] if hasattr(mcfg, "widths") else ""),
        "train_size": point.train_size,
        "test_size": len(data.test_labels),
        "seed": point.seed,
        "epochs": point.epochs,
        "images_seen": images_seen,
        "test_accuracy": round(float(scores["accuracy"]), 5),
        "test_loss": round(float(scores["loss"]), 5),
        "train_accuracy": round(float(last.get("train_acc", float("nan"))), 5),
        "train_loss": round(float(last.get("train_loss", float("nan"))), 5),
        "flops_per_image": flops,
        # forward + backward ~ 3x the forward FLOPs (the usual estimate: backward ~ 2x forward)
        "train_flops": 3 * flops * images_seen,
        "train_images_per_s": round(float(result.images_per_s), 1),
        "fit_wall_s": round(float(result.wall_time_s), 2),
        "point_wall_s": round(time.perf_counter() - start, 2),
        "model_config": json.dumps(config_dict(mcfg), sort_keys=True),
        "train_config": json.dumps(config_dict(config), sort_keys=True),
        **provenance_columns(),
        "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# ---------------------------------------------------------------------------------------------
# The grid, resumable (the CSV's format: `results_csv`)

def total_wall_s(rows: list[dict[str, Any]]) -> float:
    """The sweep's wall time so far: the sum of its points' wall times."""
    return sum(float(r.get("point_wall_s") or 0.0) for r in rows)


def run_sweep(points: list[SweepPoint], csv_path: str | Path = DEFAULT_CSV,
              runner: Callable[[SweepPoint], dict[str, Any]] | None = None,
              max_minutes: float | None = None, log: Callable[[str], None] = print) -> SweepReport:
    """Train every point not yet in `csv_path`, appending each row as soon as it is done.

    Args:
        points: the grid (see `default_points`).
        csv_path: the results file; created if missing.
        runner: point -> row dict (with "key" and "point_wall_s"); default trains with `run_point`.
        max_minutes: start no new point after this many minutes (the sweep resumes next call).
        log: where progress lines go.
    """
    if max_minutes is not None and max_minutes <= 0:
        raise ValueError(f"max_minutes must be positive or None, got {max_minutes!r}")
    if runner is None:
        data = SweepData.load()
        runner = lambda p: run_point(p, data)  # noqa: E731
    report = SweepReport()
    start = time.perf_counter()
    finished = {r["key"] for r in read_results(csv_path)}
    report.skipped = [p.key for p in points if p.key in finished]
    pending = [p for p in points if p.key not in finished]
    for i, p in enumerate(pending):
        if max_minutes is not None and time.perf_counter() - start > 60 * max_minutes:
            report.remaining = [q.key for q in pending[i:]]
            log(f"time limit of {max_minutes} min reached; {len(report.remaining)} points left: "
                "run the same command again to go on")
            break
        log(f"[{i + 1}/{len(pending)}] {p.key} ...")
        row = dict(runner(p))
        if row.get("key") != p.key:
            raise ValueError(f"runner must return a row with key {p.key!r}, got {row.get('key')!r}")
        row["cumulative_wall_s"] = round(total_wall_s(read_results(csv_path))
                                         + float(row.get("point_wall_s") or 0.0), 1)
        append_row(csv_path, row)
        report.done.append(p.key)
        acc = row.get("test_accuracy")
        log(f"    test accuracy {acc}, {row.get('point_wall_s')} s"
            f" (sweep total {row['cumulative_wall_s']} s)")
    return report


# ---------------------------------------------------------------------------------------------
# Command line

def _axes(text: str) -> list[str]:
    pick = one_of(AXES, "an axis")
    axes = [pick(a.strip()) for a in text.split(",") if a.strip()]
    if not axes:
        raise argparse.ArgumentTypeError(f"expected comma-separated axes among {', '.join(AXES)}, got {text!r}")
    return axes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", type=output_file, default=DEFAULT_CSV, help="results file (appended to)")
    parser.add_argument("--axes", type=_axes, default=list(AXES),
                        help="comma-separated subset of: " + ", ".join(AXES))
    parser.add_argument("--seeds", type=int_list(non_negative_int), default=list(SEEDS),
                        help="seeds of the data axis")
    parser.add_argument("--sizes", type=int_list(train_subset), default=list(DATA_SIZES),
                        help="training-set sizes")
    parser.add_argument("--budget-images", type=positive_int, default=BUDGET_IMAGES,
                        help="training images seen per point")
    parser.add_argument("--max-epochs", type=positive_int, default=MAX_EPOCHS, help="cap on epochs per point")
    parser.add_argument("--max-minutes", type=positive_float, default=None,
                        help="start no new point after this long; run again to resume")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch CPU threads (1: measured 5x faster than 2 on a busy 2-core CPU)")
    parser.add_argument("--list", action="store_true", help="list the points and which are done")


def check_results_file(path: Path) -> None:
    """A --csv that exists must be a sweep's results (a header with "key"), not another file."""
    if not path.is_file():
        return
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CommandError(f"argument --csv: expected a sweep's results CSV, got {str(path)!r} "
                           f"({type(exc).__name__}: {exc})") from None
    if "key" not in header:
        raise CommandError(f"argument --csv: expected a sweep's results CSV (a header with 'key'), "
                           f"got {str(path)!r} whose header is {header[:5]}; give another --csv")


def main(args: argparse.Namespace) -> int:
    points = default_points(axes=args.axes, seeds=args.seeds, sizes=args.sizes,
                            budget_images=args.budget_images, max_epochs=args.max_epochs)
    check_results_file(args.csv)
    if args.list:
        finished = {r["key"] for r in read_results(args.csv)}
        for p in points:
            print(f"{'done' if p.key in finished else 'todo'}  {p.key}  ({'/'.join(p.axes)})")
        return 0
    torch.set_num_threads(args.threads)
    report = run_sweep(points, args.csv, max_minutes=args.max_minutes)
    rows = read_results(args.csv)
    print(f"{len(report.done)} trained, {len(report.skipped)} already done, "
          f"{len(report.remaining)} left; sweep wall time so far {total_wall_s(rows):.0f} s -> {args.csv}")
    return 0
