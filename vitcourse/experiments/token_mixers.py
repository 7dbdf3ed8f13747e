"""Chapter 11's experiments: what does a ViT need, attention or the block around it? And why
LayerNorm, not BatchNorm? Three parts, each resumable (a row already in its CSV is skipped):

1. **mixers**: the same MetaFormer (vit_fmnist's stem, width, depth and head; ~0.8M parameters)
   with attention, pooling, a token MLP, no mixing, and pooling-then-attention as its token
   mixer, each trained for the same wall-clock budget (epochs = budget x probed speed), 3 seeds,
   on the full 60k / 10k split -> ``data/results/token_mixers.csv``.
2. **norms**: the attention model with LayerNorm, BatchNorm over (batch, tokens), BN inside the
   FFN (Yao et al. 2021), and BatchNorm without gradient clipping; same CSV, plus per-step loss
   and pre-clipping gradient norm -> ``data/results/token_mixers_curves.csv``.
3. **cost**: parameters, MACs and measured train / inference images per second per mixer, and how
   MACs and inference speed grow with the number of tokens N (patch 7, 4, 2, 1 on 28x28 images:
   N = 16, 49, 196, 784) -> ``data/results/token_mixers_cost.csv``.

    python -m vitcourse mixers                       # all three parts (~45 min on 2 cores)
    python -m vitcourse mixers --parts cost --max-minutes 10

Training speed depends on what else runs on the machine: run it on an idle one (``make mixers``
uses ``nice`` only to stay polite to interactive work).
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

from ..cli_args import (device_name, non_negative_int, one_of, output_folder, positive_float, test_subset,
                        train_subset)
from ..data import REPO_ROOT, FashionMNISTData, load_data
from ..flops import count_flops, count_parameters
from ..models.registry import create_model
from ..settings import seed_everything
from .compare import inference_throughput, training_throughput
from .sweep import _config_dict, git_commit, hardware, read_results, run_sweep

RESULTS_DIR = REPO_ROOT / "data" / "results"
RUNS_CSV = RESULTS_DIR / "token_mixers.csv"
CURVES_CSV = RESULTS_DIR / "token_mixers_curves.csv"
COST_CSV = RESULTS_DIR / "token_mixers_cost.csv"

# The mixer ablation's models: one argument (the token mixer) apart; see vitcourse.models.metaformer.
MIXER_MODELS: dict[str, str] = {
    "attention": "metaformer_fmnist_attention",
    "pooling": "metaformer_fmnist_pooling",
    "mlp": "metaformer_fmnist_mlp",
    "identity": "metaformer_fmnist_identity",
    "hybrid": "metaformer_fmnist_hybrid",
}
# The norm ablation: the attention model (= vit_fmnist) with another norm in every block.
NORM_VARIANTS: dict[str, dict[str, Any]] = {
    "layernorm": {"model": {"norm": "layernorm"}, "train": {}},
    "batchnorm": {"model": {"norm": "batchnorm"}, "train": {}},
    "bn_ffn": {"model": {"norm": "bn_ffn"}, "train": {}},
    # Clipping at norm 1 caps every step; without it a BatchNorm ViT shows whether it blows up.
    "batchnorm_noclip": {"model": {"norm": "batchnorm"}, "train": {"grad_clip": 0.0}},
}
PATCH_SIZES: tuple[int, ...] = (7, 4, 2, 1)   # 28x28 images -> N = 16, 49, 196, 784 tokens
BUDGET_S = 120.0
SEEDS: tuple[int, ...] = (0, 1, 2)
NORM_SEEDS: tuple[int, ...] = (0,)
PARTS: tuple[str, ...] = ("mixers", "norms", "cost")
PROBE_ROUNDS = 2  # speed probes per model, interleaved across models


@dataclass(frozen=True)
class MixerRun:
    """One training run of the ablations."""
    experiment: str                  # "mixers" or "norms"
    variant: str                     # the mixer (mixers) or the norm variant (norms)
    model: str                       # preset name
    seed: int
    budget_s: float                  # wall-clock budget: epochs are planned from a speed probe
    model_overrides: tuple[tuple[str, Any], ...] = ()
    train_overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.experiment}/{self.variant}/seed={self.seed}/budget={self.budget_s:g}s"


def planned_runs(parts: tuple[str, ...] = ("mixers", "norms"), seeds: tuple[int, ...] = SEEDS,
                 norm_seeds: tuple[int, ...] = NORM_SEEDS, budget_s: float = BUDGET_S,
                 mixers: tuple[str, ...] = tuple(MIXER_MODELS)) -> list[MixerRun]:
    """The runs of the ablation parts, seed-major so a stopped run leaves whole seeds behind."""
    runs: list[MixerRun] = []
    if "mixers" in parts:
        runs += [MixerRun("mixers", m, MIXER_MODELS[m], s, budget_s) for s in seeds for m in mixers]
    if "norms" in parts:
        runs += [MixerRun("norms", n, MIXER_MODELS["attention"], s, budget_s,
                          tuple(sorted(v["model"].items())), tuple(sorted(v["train"].items())))
                 for s in norm_seeds for n, v in NORM_VARIANTS.items()]
    return runs


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


def run_one(run: MixerRun, data: FashionMNISTData, probe_images_per_s: float, device: str | None = None,
            curves: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train `run` with `fit` for the epochs its budget allows; returns the CSV row. Per-step loss
    and gradient norm go into `curves` if given (a blow-up ends the run: its step is recorded)."""
    from ..training.loop import TrainConfig, TrainingDiverged, evaluate, fit

    start = time.perf_counter()
    seed_everything(run.seed)
    model = create_model(run.model, **dict(run.model_overrides))
    epochs = plan_epochs(run.budget_s, probe_images_per_s, len(data.train_labels), len(data.test_labels))
    config = TrainConfig(epochs=epochs, seed=run.seed, compile=False, **dict(run.train_overrides))
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


def run_ablations(runs: list[MixerRun], data: FashionMNISTData, runs_csv: Path = RUNS_CSV,
                  curves_csv: Path = CURVES_CSV, device: str | None = None, max_minutes: float | None = None,
                  log: Callable[[str], None] = print):
    """Train every run not yet in `runs_csv` (resumable: see `sweep.run_sweep`).

    Every model's speed is probed before any training, round-robin over the models (`PROBE_ROUNDS`
    rounds, each the best of 3 short windows of the loop's own step; the best of all is kept), so
    the budget -> epochs plan of each mixer is made under the same machine load; a resumed
    ablation reuses the probes recorded in its CSV.
    """
    done = read_results(runs_csv)
    done_keys = {r["key"] for r in done}
    probes: dict[tuple, float] = {(r["model"], r["model_overrides"]): float(r["probe_images_per_s"]) for r in done}
    todo = {}
    for run in runs:
        key = (run.model, json.dumps(dict(run.model_overrides), sort_keys=True))
        if key not in probes and run.key not in done_keys:
            todo[key] = run
    for _ in range(PROBE_ROUNDS):  # round-robin, best of all rounds: a passing load hits every model
        for key, run in todo.items():
            speed = training_throughput(run.model, data.train_images, data.train_labels,
                                        device=device or "cpu", overrides=dict(run.model_overrides))
            probes[key] = max(probes.get(key, 0.0), speed)
    for key in todo:
        log(f"probe {key[0]} {key[1]}: {probes[key]:.0f} training images/s")
    # curves of a run that was killed before its row landed are dropped, then re-recorded
    if curves_csv.exists() and {r["key"] for r in read_results(curves_csv)} - done_keys:
        kept = [r for r in read_results(curves_csv) if r["key"] in done_keys]
        curves_csv.unlink()
        append_curves(curves_csv, kept)

    def runner(run: MixerRun) -> dict[str, Any]:
        probe = probes[(run.model, json.dumps(dict(run.model_overrides), sort_keys=True))]
        curves: list[dict[str, Any]] | None = [] if run.experiment == "norms" else None
        row = run_one(run, data, probe, device, curves)
        if curves:
            append_curves(curves_csv, curves)
        return row

    return run_sweep(runs, runs_csv, runner=runner, max_minutes=max_minutes, log=log)


# ---------------------------------------------------------------------------------------------
# Cost: MACs and speed per mixer, and over the number of tokens

def measure_cost(mixers: tuple[str, ...] = tuple(MIXER_MODELS), patch_sizes: tuple[int, ...] = PATCH_SIZES,
                 images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                 device: str = "cpu", batch_size: int = 64) -> list[dict[str, Any]]:
    """One row per (mixer, patch size): tokens N, parameters, MACs per image, inference images/s
    (best of 2 passes over 512 images) and, at patch 7 (the ablation's model), training images/s."""
    if images is None:
        data = load_data(fast=True)
        images, labels = data.train_images, data.train_labels
    rows = []
    for mixer in mixers:
        for p in patch_sizes:
            if 28 % p:
                raise ValueError(f"patch_sizes must divide 28, got {p}")
            seed_everything(0)
            model = create_model(MIXER_MODELS[mixer], patch_size=p).eval()
            n = (28 // p) ** 2
            row = {"mixer": mixer, "model": MIXER_MODELS[mixer], "patch_size": p, "tokens": n,
                   "params": count_parameters(model), "macs": count_flops(model) // 2,
                   "infer_images_per_s": round(inference_throughput(model, images[:512], batch_size, device), 1),
                   "train_images_per_s": (round(training_throughput(MIXER_MODELS[mixer], images, labels, device), 1)
                                          if p == 7 else ""),
                   "hardware": hardware(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                   "commit": git_commit()}
            rows.append(row)
    return rows


def write_cost(rows: list[dict[str, Any]], path: Path = COST_CSV) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def growth_exponent(tokens: list[float], values: list[float]) -> float:
    """The slope of log(value) against log(N) by least squares: ~1 for a cost linear in N, ~2 quadratic."""
    if len(tokens) != len(values) or len(tokens) < 2:
        raise ValueError(f"tokens and values need the same length >= 2, got {len(tokens)} and {len(values)}")
    xs, ys = [math.log(t) for t in tokens], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


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

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", nargs="+", default=list(PARTS), type=one_of(PARTS, "a part"))
    parser.add_argument("--budget-s", type=positive_float, default=BUDGET_S, help="wall-clock budget per run (s)")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=list(SEEDS))
    parser.add_argument("--norm-seeds", type=non_negative_int, nargs="+", default=list(NORM_SEEDS))
    parser.add_argument("--mixers", nargs="+", default=list(MIXER_MODELS), type=one_of(MIXER_MODELS, "a mixer"))
    parser.add_argument("--train-size", type=train_subset, default=None, help="stratified subset (default: all 60,000)")
    parser.add_argument("--test-size", type=test_subset, default=None, help="stratified subset (default: all 10,000)")
    parser.add_argument("--max-minutes", type=positive_float, default=None, help="start no new run after this")
    parser.add_argument("--out-dir", type=output_folder, default=RESULTS_DIR, help="folder of the three CSVs")
    parser.add_argument("--device", type=device_name, default=None)
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="torch CPU threads (0: torch's default); recorded in each row's hardware")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "cost" in args.parts:
        print("cost: MACs and images/s per mixer and token count ...")
        data = load_data(fast=True)
        rows = measure_cost(tuple(args.mixers), images=data.train_images, labels=data.train_labels,
                            device=args.device or "cpu")
        print("wrote", write_cost(rows, out / COST_CSV.name))
    ablations = tuple(p for p in args.parts if p != "cost")
    if ablations:
        data = load_data(fast=False, train_size=args.train_size, test_size=args.test_size)
        runs = planned_runs(ablations, tuple(args.seeds), tuple(args.norm_seeds), args.budget_s, tuple(args.mixers))
        report = run_ablations(runs, data, out / RUNS_CSV.name, out / CURVES_CSV.name, args.device,
                               args.max_minutes)
        print(f"{len(report.done)} runs done, {len(report.skipped)} already in the CSV, "
              f"{len(report.remaining)} left")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0
