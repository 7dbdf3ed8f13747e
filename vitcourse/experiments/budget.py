"""Training runs under a wall-clock budget, the shared machinery of chapter 11's and chapter 13's
ablations: every model is trained with `fit` for the whole epochs its measured speed fits into the
budget (a cosine schedule needs its length up front, so the clock is planned, not cut), one CSV row
per run, resumable (a row already in the CSV is skipped; see `sweep.run_sweep`).

The speed probe of each model is taken before any training, round-robin over the models, so the
plans of one ablation are made under the same machine load; a resumed ablation reuses the probes
recorded in its CSV, so its epochs do not depend on what else runs on the machine later.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..cli_args import device_name, non_negative_int, positive_float, test_subset, train_subset
from ..data import FashionMNISTData
from ..flops import count_flops, count_parameters
from ..models.registry import create_model
from ..settings import seed_everything
from .compare import training_throughput
from .sweep import SweepReport, _config_dict, git_commit, hardware, read_results, run_sweep

PROBE_ROUNDS = 2  # round-robin rounds of speed probes; the best of all rounds is kept


@dataclass(frozen=True)
class BudgetedRun:
    """One training run of an ablation."""
    experiment: str                  # the ablation's part ("mixers", "norms", "recipe", ...)
    variant: str                     # the row's name within the part
    model: str                       # preset name (vitcourse.models.create_model)
    seed: int
    budget_s: float                  # wall-clock budget: epochs are planned from a speed probe
    model_overrides: tuple[tuple[str, Any], ...] = ()
    train_overrides: tuple[tuple[str, Any], ...] = ()   # TrainConfig fields

    @property
    def key(self) -> str:
        return f"{self.experiment}/{self.variant}/seed={self.seed}/budget={self.budget_s:g}s"

    @property
    def probe_key(self) -> tuple[str, str, str]:
        """What the speed depends on: the model with its overrides and the training options that
        add work per step (all but the few listed in `_speed_options` as free)."""
        return (self.model, json.dumps(dict(self.model_overrides), sort_keys=True),
                _speed_options(self))


def _speed_options(run: BudgetedRun) -> str:
    # grad_clip and the norm ablation's switches cost nothing measurable; the recipe parts do
    costly = {k: v for k, v in run.train_overrides if k not in ("grad_clip", "lr", "weight_decay",
                                                               "label_smoothing", "warmup_frac")}
    return json.dumps(costly, sort_keys=True) if costly else ""


def plan_epochs(budget_s: float, images_per_s: float, train_size: int, test_size: int) -> int:
    """Epochs that fit `budget_s` at `images_per_s` training speed, counting each epoch's test pass
    (a forward pass costs about a third of a training step). At least 1."""
    if budget_s <= 0 or images_per_s <= 0:
        raise ValueError(f"budget_s and images_per_s must be positive, got {budget_s!r}, {images_per_s!r}")
    return max(1, int(budget_s * images_per_s / (train_size + test_size / 3)))


class GradNorms:
    """The global gradient norm of every backward pass, read *before* `fit` clips it: a hook per
    parameter adds |grad|^2 as autograd produces it, and `pop()` closes the step."""

    def __init__(self, model: nn.Module) -> None:
        self._sum = 0.0
        self._handles = [p.register_hook(self._add) for p in model.parameters() if p.requires_grad]

    def _add(self, grad: torch.Tensor) -> None:
        self._sum += float(grad.detach().float().pow(2).sum())

    def pop(self) -> float:
        total, self._sum = math.sqrt(self._sum), 0.0
        return total

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def probe_speed(run: BudgetedRun, data: FashionMNISTData, device: str | None = None) -> float:
    """Training images per second of `run`'s model with its options, timed with the loop's own step."""
    overrides = dict(run.model_overrides)
    options = json.loads(_speed_options(run) or "{}")
    if not options:
        return training_throughput(run.model, data.train_images, data.train_labels,
                                   device=device or "cpu", overrides=overrides)
    # costly options: time a short real `fit` (its first epoch's images/s) on a slice of the data
    from ..training.loop import TrainConfig, fit
    probe_data = FashionMNISTData(data.train_images[:2048], data.train_labels[:2048],
                                  data.test_images[:256], data.test_labels[:256], data.classes)
    train = {k: v for k, v in run.train_overrides if k in TrainConfig.__dataclass_fields__}
    best = 0.0
    for _ in range(2):
        seed_everything(run.seed)
        config = TrainConfig(**{**train, "epochs": 1, "seed": run.seed, "compile": False})
        result = fit(create_model(run.model, **overrides), probe_data, config, device=device, progress=False)
        best = max(best, result.history[0]["images_per_s"])
    return best


def train_budgeted(run: BudgetedRun, data: FashionMNISTData, probe_images_per_s: float,
                   device: str | None = None, curves: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train `run` with `fit` for the epochs its budget allows; returns the CSV row (with the
    per-epoch history as JSON). Per-step loss and gradient norm go into `curves` if given (a
    blow-up ends the run: its step is recorded)."""
    from ..training.loop import TrainConfig, TrainingDiverged, evaluate, fit

    start = time.perf_counter()
    seed_everything(run.seed)
    model = create_model(run.model, **dict(run.model_overrides))
    epochs = plan_epochs(run.budget_s, probe_images_per_s, len(data.train_labels), len(data.test_labels))
    config = TrainConfig(**{"compile": False, **dict(run.train_overrides), "epochs": epochs, "seed": run.seed})
    norms = GradNorms(model) if curves is not None else None

    def on_step(step: int, loss: float) -> None:
        curves.append({"key": run.key, "experiment": run.experiment, "variant": run.variant,
                       "seed": run.seed, "step": step, "loss": round(loss, 5),
                       "grad_norm": round(norms.pop(), 5)})

    diverged_step, history = "", []
    try:
        result = fit(model, data, config, device=device, progress=False,
                     on_step=on_step if curves is not None else None)
        history, trained = result.history, result.model
        scores = evaluate(trained, data.test_images, data.test_labels, device=device)
    except TrainingDiverged:
        diverged_step = curves[-1]["step"] if curves else "yes"
        scores = {"accuracy": float("nan"), "loss": float("nan")}
    finally:
        if norms is not None:
            norms.remove()
    last = history[-1] if history else {}
    fit_s = sum(h["seconds"] for h in history)
    grad = [c["grad_norm"] for c in curves if c["key"] == run.key] if curves is not None else []
    return {
        "key": run.key, "experiment": run.experiment, "variant": run.variant, "model": run.model,
        "model_overrides": json.dumps(dict(run.model_overrides), sort_keys=True),
        "train_overrides": json.dumps(dict(run.train_overrides), sort_keys=True),
        "seed": run.seed, "params": count_parameters(model), "macs": count_flops(model) // 2,
        "budget_s": run.budget_s, "probe_images_per_s": round(probe_images_per_s, 1), "epochs": epochs,
        "train_size": len(data.train_labels), "test_size": len(data.test_labels),
        "test_accuracy": round(float(scores["accuracy"]), 5), "test_loss": round(float(scores["loss"]), 5),
        "train_loss": round(float(last.get("train_loss", float("nan"))), 5),
        "train_accuracy": round(float(last.get("train_acc", float("nan"))), 5),
        "best_epoch_test_acc": round(max((h["test_acc"] for h in history), default=float("nan")), 5),
        "fit_wall_s": round(fit_s, 1), "diverged_step": diverged_step,
        "max_grad_norm": round(max(grad), 3) if grad else "",
        "point_wall_s": round(time.perf_counter() - start, 1),
        "model_config": json.dumps(_config_dict(model.config), sort_keys=True, default=str),
        "train_config": json.dumps(_config_dict(config), sort_keys=True),
        "history": json.dumps([{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()}
                               for h in history]),
        "hardware": hardware(), "torch": torch.__version__, "commit": git_commit(),
        "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def append_curves(path: Path, rows: list[dict[str, Any]]) -> None:
    """Add per-step rows to the curves CSV (one run's rows at once, after the run is in its CSV)."""
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _recorded_probe_key(row: dict[str, str]) -> tuple[str, str, str]:
    run = BudgetedRun(row["experiment"], row["variant"], row["model"], int(row["seed"]), float(row["budget_s"]),
                      tuple(sorted(json.loads(row["model_overrides"] or "{}").items())),
                      tuple(sorted(json.loads(row["train_overrides"] or "{}").items())))
    return run.probe_key


def run_budgeted(runs: list[BudgetedRun], data: FashionMNISTData, runs_csv: Path,
                 curves_csv: Path | None = None, curves_for: tuple[str, ...] = (), device: str | None = None,
                 max_minutes: float | None = None, log: Callable[[str], None] = print) -> SweepReport:
    """Train every run not yet in `runs_csv`, probing each model's speed first (see the module's
    docstring). Runs of the experiments in `curves_for` record per-step curves into `curves_csv`."""
    done = read_results(runs_csv)
    done_keys = {r["key"] for r in done}
    probes: dict[tuple, float] = {_recorded_probe_key(r): float(r["probe_images_per_s"]) for r in done}
    todo = {run.probe_key: run for run in runs if run.probe_key not in probes and run.key not in done_keys}
    for _ in range(PROBE_ROUNDS):  # round-robin, best of all rounds: a passing load hits every model
        for key, run in todo.items():
            probes[key] = max(probes.get(key, 0.0), probe_speed(run, data, device))
    for key in todo:
        log(f"probe {' '.join(k for k in key if k)}: {probes[key]:.0f} training images/s")
    # curves of a run that was killed before its row landed are dropped, then re-recorded
    if curves_csv is not None and curves_csv.exists() and {r["key"] for r in read_results(curves_csv)} - done_keys:
        kept = [r for r in read_results(curves_csv) if r["key"] in done_keys]
        curves_csv.unlink()
        append_curves(curves_csv, kept)

    def runner(run: BudgetedRun) -> dict[str, Any]:
        curves: list[dict[str, Any]] | None = [] if run.experiment in curves_for else None
        row = train_budgeted(run, data, probes[run.probe_key], device, curves)
        if curves and curves_csv is not None:
            append_curves(curves_csv, curves)
        return row

    return run_sweep(runs, runs_csv, runner=runner, max_minutes=max_minutes, log=log)


# ---------------------------------------------------------------------------------------------
# Reading the results

@dataclass
class Summary:
    """Mean and spread (min-max) of a variant's test accuracy over its seeds."""
    variant: str
    accuracies: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    params: int = 0
    macs: int = 0

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / len(self.accuracies)

    @property
    def spread(self) -> float:
        return max(self.accuracies) - min(self.accuracies)


def summarise(rows: list[dict[str, str]], experiment: str = "mixers") -> dict[str, Summary]:
    """Per variant of `experiment`, in first-seen order; diverged runs (NaN) are left out of the
    accuracies and counted in the row's `diverged_step` instead."""
    out: dict[str, Summary] = {}
    for r in rows:
        if r["experiment"] != experiment:
            continue
        s = out.setdefault(r["variant"], Summary(r["variant"], params=int(r["params"]), macs=int(r["macs"])))
        acc = float(r["test_accuracy"])
        if not math.isnan(acc):
            s.accuracies.append(acc)
            s.epochs.append(int(r["epochs"]))
    return out


# ---------------------------------------------------------------------------------------------
# Command line

def add_budget_arguments(parser: argparse.ArgumentParser, budget_s: float, seeds: tuple[int, ...]) -> None:
    """The options every budgeted ablation takes: budget, seeds, data subsets, time limit, device."""
    parser.add_argument("--budget-s", type=positive_float, default=budget_s, help="wall-clock budget per run (s)")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=list(seeds))
    parser.add_argument("--train-size", type=train_subset, default=None, help="stratified subset (default: all 60,000)")
    parser.add_argument("--test-size", type=test_subset, default=None, help="stratified subset (default: all 10,000)")
    parser.add_argument("--max-minutes", type=positive_float, default=None, help="start no new run after this")
    parser.add_argument("--device", type=device_name, default=None)
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="torch CPU threads (0: torch's default); recorded in each row's hardware")
