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
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..cli_args import non_negative_int, one_of, output_folder
from ..data import REPO_ROOT, FashionMNISTData, load_data
from ..flops import count_flops, count_parameters
from ..models.registry import create_model
from ..training.provenance import git_commit, hardware_label
from ..settings import seed_everything
from .budget import BudgetedRun, add_budget_arguments, run_budgeted
from .compare import inference_throughput, training_throughput

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
NORM_SEEDS: tuple[int, ...] = (0, 1, 2)
PARTS: tuple[str, ...] = ("mixers", "norms", "cost")


def planned_runs(parts: tuple[str, ...] = ("mixers", "norms"), seeds: tuple[int, ...] = SEEDS,
                 norm_seeds: tuple[int, ...] = NORM_SEEDS, budget_s: float = BUDGET_S,
                 mixers: tuple[str, ...] = tuple(MIXER_MODELS)) -> list[BudgetedRun]:
    """The runs of the ablation parts, seed-major so a stopped run leaves whole seeds behind."""
    runs: list[BudgetedRun] = []
    if "mixers" in parts:
        runs += [BudgetedRun("mixers", m, MIXER_MODELS[m], s, budget_s) for s in seeds for m in mixers]
    if "norms" in parts:
        runs += [BudgetedRun("norms", n, MIXER_MODELS["attention"], s, budget_s,
                          tuple(sorted(v["model"].items())), tuple(sorted(v["train"].items())))
                 for s in norm_seeds for n, v in NORM_VARIANTS.items()]
    return runs


def run_ablations(runs: list[BudgetedRun], data: FashionMNISTData, runs_csv: Path = RUNS_CSV,
                  curves_csv: Path = CURVES_CSV, device: str | None = None, max_minutes: float | None = None,
                  log: Callable[[str], None] = print):
    """Train every run not yet in `runs_csv` (resumable), the norm runs with per-step curves; the
    speed probes and the budget plan are `vitcourse.experiments.budget`'s."""
    return run_budgeted(runs, data, runs_csv, curves_csv, curves_for=("norms",), device=device,
                        max_minutes=max_minutes, log=log)


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
                   "hardware": hardware_label(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                   "commit": git_commit(short=True)}
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
# Command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", nargs="+", default=list(PARTS), type=one_of(PARTS, "a part"))
    add_budget_arguments(parser, BUDGET_S, SEEDS)
    parser.add_argument("--norm-seeds", type=non_negative_int, nargs="+", default=list(NORM_SEEDS))
    parser.add_argument("--mixers", nargs="+", default=list(MIXER_MODELS), type=one_of(MIXER_MODELS, "a mixer"))
    parser.add_argument("--out-dir", type=output_folder, default=RESULTS_DIR, help="folder of the three CSVs")


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
