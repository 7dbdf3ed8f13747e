"""Training runs under a wall-clock budget, the shared machinery of chapter 11's and chapter 13's
ablations: every model is trained with `fit` for the whole epochs its measured speed fits into the
budget (a cosine schedule needs its length up front, so the clock is planned, not cut), one CSV row
per run, resumable (a row already in the CSV is skipped; see `sweep.run_sweep`).

The speed probe of each model is taken before any training, round-robin over the models, so the
plans of one ablation are made under the same machine load. Probes are written to a probes CSV
beside the results as soon as they are taken (with the machine they were taken on), and a resumed
ablation plans from them, not from new ones: its epochs then depend neither on what else runs on
the machine later nor on which machine it resumes on. (Machines of one kind differ a lot: with
AMX, 2 Xeon cores train `vit_fmnist` in bf16 at ~2,450 images/s; without it, in fp32, at ~950.)
A run on a machine other than the probes' then takes more (or less) wall time than its budget;
its row records the machine and the wall time it took.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import time
from collections import Counter
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
from ..training.provenance import git_commit, hardware_label
from ..settings import seed_everything
from ..training.card import ship
from .compare import training_throughput
from .results_csv import SweepReport, append_row, config_dict, read_results
from .sweep import run_sweep

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
    teacher: str = ""                # a shipped checkpoint (load_pretrained) to distil from; "" = none

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
    # grad_clip and the norm ablation's switches cost nothing measurable; the recipe parts and a
    # teacher's forward pass do
    costly = {k: v for k, v in run.train_overrides if k not in ("grad_clip", "lr", "weight_decay",
                                                               "label_smoothing", "warmup_frac")}
    if run.teacher:
        costly["teacher"] = run.teacher
    return json.dumps(costly, sort_keys=True) if costly else ""


def machine() -> str:
    """`hardware_label()` and the precision `fit` picks there ("auto"): what sets training speed."""
    from ..training.precision import resolve_precision
    if torch.cuda.is_available():
        return hardware_label()
    return f"{hardware_label()}, {resolve_precision('auto', torch.device('cpu'))}"


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _teacher(run: BudgetedRun, device: str | None) -> nn.Module | None:
    from ..training.checkpoint import load_pretrained
    return load_pretrained(run.teacher, map_location=device or "cpu") if run.teacher else None


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
    teacher = _teacher(run, device)  # read from disk once, not once per round
    for _ in range(2):
        seed_everything(run.seed)
        config = TrainConfig(**{**train, "epochs": 1, "seed": run.seed, "compile": False})
        result = fit(create_model(run.model, **overrides), probe_data, config, device=device, progress=False,
                     teacher=teacher)
        best = max(best, result.history[0]["images_per_s"])
    return best


@dataclass(frozen=True)
class RunFiles:
    """Where a long budgeted run keeps its training checkpoint (``last.pt``, after every epoch: a
    killed run resumes there, bit for bit) and where it ships its trained model with a card."""
    checkpoint_dir: Path | None = None
    ship_to: Path | None = None
    command: str = ""  # the command that reproduces it, for the card


def train_budgeted(run: BudgetedRun, data: FashionMNISTData, probe_images_per_s: float,
                   device: str | None = None, curves: list[dict[str, Any]] | None = None,
                   files: RunFiles = RunFiles()) -> dict[str, Any]:
    """Train `run` with `fit` for the epochs its budget allows; returns the CSV row (with the
    per-epoch history as JSON). Per-step loss and gradient norm go into `curves` if given (a
    blow-up ends the run: its step is recorded). `files` makes the run resumable and ships it."""
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
        result = fit(model, data, config, device=device, progress=False, checkpoint_dir=files.checkpoint_dir,
                     resume=files.checkpoint_dir is not None,
                     on_step=on_step if curves is not None else None, teacher=_teacher(run, device))
        if result.interrupted:
            raise KeyboardInterrupt  # Ctrl-C: last.pt holds the run; no row for half of it
        history, trained = result.history, result.model
        scores = evaluate(trained, data.test_images, data.test_labels, device=device)
        if files.ship_to is not None:
            ship(trained, files.ship_to, name=run.model, command=files.command, config=config, data=data,
                 history=history, wall_time_s=result.wall_time_s, images_per_s=result.images_per_s,
                 teacher=run.teacher, extra={"experiment_key": run.key, "budget_s": run.budget_s,
                                             "probe_images_per_s": probe_images_per_s})
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
        "teacher": run.teacher, "seed": run.seed, "params": count_parameters(model), "macs": count_flops(model) // 2,
        "budget_s": run.budget_s, "probe_images_per_s": round(probe_images_per_s, 1), "epochs": epochs,
        "train_size": len(data.train_labels), "test_size": len(data.test_labels),
        "test_accuracy": round(float(scores["accuracy"]), 5), "test_loss": round(float(scores["loss"]), 5),
        "train_loss": round(float(last.get("train_loss", float("nan"))), 5),
        "train_accuracy": round(float(last.get("train_acc", float("nan"))), 5),
        "best_epoch_test_acc": round(max((h["test_acc"] for h in history), default=float("nan")), 5),
        "fit_wall_s": round(fit_s, 1), "diverged_step": diverged_step,
        "max_grad_norm": round(max(grad), 3) if grad else "",
        "point_wall_s": round(time.perf_counter() - start, 1),
        "model_config": json.dumps(config_dict(model.config), sort_keys=True, default=str),
        "train_config": json.dumps(config_dict(config), sort_keys=True),
        "history": json.dumps([{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()}
                               for h in history]),
        "hardware": machine(), "torch": torch.__version__, "commit": git_commit(short=True),
        "finished_at": _utc_now(),
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
                      tuple(sorted(json.loads(row["train_overrides"] or "{}").items())), row.get("teacher", ""))
    return run.probe_key


def probes_path(runs_csv: Path) -> Path:
    """Where an ablation's probes are kept: ``<name>_probes.csv`` beside its results."""
    return runs_csv.with_name(runs_csv.stem + "_probes.csv")


def read_probes(runs_csv: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """The probes of an ablation: those of its probes CSV, else those its result rows recorded."""
    probes = {_recorded_probe_key(r): {"images_per_s": r["probe_images_per_s"], "machine": r["hardware"]}
              for r in read_results(runs_csv)}
    for r in read_results(probes_path(runs_csv)):
        probes[(r["model"], r["model_overrides"], r["options"])] = r
    return probes


def take_probes(runs: list[BudgetedRun], data: FashionMNISTData, runs_csv: Path, device: str | None = None,
                log: Callable[[str], None] = print) -> dict[tuple[str, str, str], float]:
    """Training images/s to plan each of `runs` from: the ablation's recorded probes, and new ones
    for the rest, recorded as soon as taken.

    An ablation is planned from one probe round. A probe taken later, even on a machine of the
    same name, meets another host and another load (the same AMX VM trained `cct_fmnist` at 546
    images/s one day and 627 the next), so a new probe is scaled to the ablation's round by an
    anchor timed here side by side: the same model without the new options where the round has
    it; for a new model on a machine of the same kind, the median ratio over the round's plain
    models (between kinds, bf16 and fp32 speed up convolutions and attention unequally, so a new
    model is refused there). ``scaled_by`` in the probes CSV says from what."""
    recorded = read_probes(runs_csv)
    probes = {k: float(r["images_per_s"]) for k, r in recorded.items()}
    here = machine()
    elsewhere = sorted({recorded[r.probe_key]["machine"] for r in runs if r.probe_key in recorded} - {here})
    if elsewhere:
        log(f"planning from probes taken on {'; '.join(elsewhere)}; this machine is {here}: "
            "its runs keep those plans and take the wall time this machine needs")
    todo = {run.probe_key: run for run in runs if run.probe_key not in probes}
    if not todo:
        return probes
    machines = Counter(r["machine"] for r in recorded.values())
    reference = machines.most_common(1)[0][0] if machines else here
    round_plain = [k for k, r in recorded.items() if r["machine"] == reference and not k[2]]
    anchors: dict[tuple, list[tuple]] = {}
    jobs = dict(todo)
    for key, run in todo.items():
        if not recorded:
            break  # a new ablation: this round is its reference
        same_model = next((k for k in round_plain if k[:2] == key[:2]), None)
        if same_model is not None:
            anchors[key] = [same_model]
        elif reference == here and round_plain:
            anchors[key] = round_plain
        else:
            raise ValueError(f"the ablation in {runs_csv.name} was planned on {reference}; this machine "
                             f"is {here} and no probe of {key[0]} was taken there to scale a new one by: "
                             "run it on that machine, or start the ablation afresh in another --out folder")
        for anchor in anchors[key]:
            jobs.setdefault(anchor, BudgetedRun("probe", "anchor", anchor[0], run.seed, run.budget_s,
                                                tuple(sorted(json.loads(anchor[1] or "{}").items()))))
    measured: dict[tuple, float] = {}
    for _ in range(PROBE_ROUNDS):  # round-robin, best of all rounds: a passing load hits every model
        for key, run in jobs.items():
            measured[key] = max(measured.get(key, 0.0), probe_speed(run, data, device))
    for key in todo:
        row = {"key": "|".join(key), "model": key[0], "model_overrides": key[1], "options": key[2],
               "images_per_s": round(measured[key], 1), "machine": here, "scaled_by": "",
               "measured_at": _utc_now()}
        if key in anchors:
            ratios = sorted(probes[a] / measured[a] for a in anchors[key])
            factor = statistics.median(ratios)
            if anchors[key] == [key[:2] + ("",)]:
                how = f"{measured[anchors[key][0]]:.1f} images/s of it without the options"
            else:
                how = f"the median of {len(ratios)} plain models' recorded / measured speed, {factor:.3f}"
            row.update(images_per_s=round(measured[key] * factor, 1), machine=reference,
                       scaled_by=f"{measured[key]:.1f} images/s measured, scaled by {how}, both on {here} "
                                 f"at {row['measured_at']}")
        probes[key] = float(row["images_per_s"])
        log(f"probe {' '.join(k for k in key if k)}: {probes[key]:.0f} training images/s"
            + (f" (scaled to {reference}: {row['scaled_by']})" if row["scaled_by"] else ""))
        append_row(probes_path(runs_csv), row)
    return probes


def run_budgeted(runs: list[BudgetedRun], data: FashionMNISTData, runs_csv: Path,
                 curves_csv: Path | None = None, curves_for: tuple[str, ...] = (), device: str | None = None,
                 max_minutes: float | None = None, log: Callable[[str], None] = print,
                 files_for: Callable[[BudgetedRun], RunFiles] = lambda run: RunFiles()) -> SweepReport:
    """Train every run not yet in `runs_csv`, probing each model's speed first (see the module's
    docstring). Runs of the experiments in `curves_for` record per-step curves into `curves_csv`;
    `files_for` says which runs checkpoint (and resume) and ship their model."""
    done_keys = {r["key"] for r in read_results(runs_csv)}
    probes = take_probes([run for run in runs if run.key not in done_keys], data, runs_csv, device, log)
    # curves of a run that was killed before its row landed are dropped, then re-recorded
    if curves_csv is not None and curves_csv.exists() and {r["key"] for r in read_results(curves_csv)} - done_keys:
        kept = [r for r in read_results(curves_csv) if r["key"] in done_keys]
        curves_csv.unlink()
        append_curves(curves_csv, kept)

    def runner(run: BudgetedRun) -> dict[str, Any]:
        curves: list[dict[str, Any]] | None = [] if run.experiment in curves_for else None
        row = train_budgeted(run, data, probes[run.probe_key], device, curves, files_for(run))
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
