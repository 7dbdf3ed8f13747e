"""Chapter 10's experiment: ViT vs T2T-ViT vs Swin vs a ResNet on Fashion-MNIST, same loop, same budget.

`compare(...)` trains each model with `vitcourse.training.loop.fit` and one `TrainConfig`, then measures
parameters, MACs per image (`vitcourse.flops`), test accuracy, training and inference throughput
(each a best-of-N timing made right after the model's run), with seed, hardware and commit.
`make compare` runs it on the full data and writes ``data/results/comparisons.csv``; the chapter
reads that file and re-runs a tiny version live in fast mode.

    python -m vitcourse compare --epochs 3 --out data/results/comparisons.csv
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..cli_args import device_name, one_of, output_file, positive_int, test_subset, train_subset
from ..data import REPO_ROOT, FashionMNISTData, load_data
from ..flops import count_flops, count_parameters
from ..models.registry import create_model
from ..training.provenance import provenance_columns
from ..settings import get_device, seed_everything
from .results_csv import config_dict, read_results

MODELS: tuple[str, ...] = ("vit_fmnist", "t2t_vit_fmnist", "swin_fmnist", "resnet_fmnist")
FAMILY = {"vit_fmnist": "ViT", "t2t_vit_fmnist": "T2T-ViT", "swin_fmnist": "Swin",
          "resnet_fmnist": "ResNet (CNN)"}
RESULTS_CSV = REPO_ROOT / "data" / "results" / "comparisons.csv"
COLUMNS = ("model", "family", "params", "macs", "epochs", "train_size", "test_size", "test_acc",
           "train_images_per_s", "infer_images_per_s", "fit_images_per_s", "wall_time_s", "seed",
           "device", "hardware", "torch", "commit", "train_config")

# ImageNet-1k top-1 (trained on ImageNet-1k only, 224x224 unless said) as the papers report them.
PAPER_IMAGENET = [
    # model, params (M), MACs (G), top-1 (%), source
    ("ViT-B/16 (ImageNet-1k only)", 86.6, 55.5, 77.9, "Dosovitskiy et al. 2021 at 384x384, as quoted in DeiT Table 1"),
    ("DeiT-S", 22.1, 4.6, 79.8, "Touvron et al. 2021, Table 1"),
    ("T2T-ViT-14", 21.5, 4.8, 81.5, "Yuan et al. 2021, Table 1"),
    ("Swin-T", 28.3, 4.5, 81.3, "Liu et al. 2021, Table 1(a); torchvision's recipe: 81.5"),
    ("ResNet-50", 25.6, 4.1, 76.1, "torchvision weights V1 (the papers' baseline row)"),
]


def pareto_front(rows: list[tuple[str, float, float]]) -> list[str]:
    """Names of the rows (name, cost, accuracy) that no other row beats on both counts (at most the
    cost and at least the accuracy, strictly better in one), in input order."""
    front = []
    for name, cost, acc in rows:
        beaten = any(c2 <= cost and a2 >= acc and (c2 < cost or a2 > acc) for _, c2, a2 in rows)
        if not beaten:
            front.append(name)
    return front


@torch.no_grad()
def inference_throughput(model: nn.Module, images: torch.Tensor, batch_size: int = 256,
                         device: torch.device | str = "cpu", repeats: int = 2) -> float:
    """Images per second of `predict`-style forward passes (eval mode, no grad), best of `repeats`."""
    from ..data import normalize
    device = torch.device(device)
    model = model.to(device).eval()
    x = normalize(images[: max(batch_size, min(len(images), 2048))]).to(device)
    model(x[:batch_size])  # warm-up: allocator, kernels
    best = 0.0
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, len(x) / (time.perf_counter() - t0))
    return best


def training_throughput(name: str, images: torch.Tensor, labels: torch.Tensor,
                        device: torch.device | str = "cpu", batch_size: int = 256, steps: int = 8,
                        repeats: int = 3, overrides: dict[str, Any] | None = None) -> float:
    """Training images/s of a fresh `name` model: the best of `repeats` timed windows of `steps`
    optimiser steps (`train_step`, the loop's own step, in the loop's precision), after one
    untimed step; `overrides` change config fields of the preset. Best-of-N, measured back to
    back for every model, so that a busy machine during one model's long training run does not
    rank the models by the load instead."""
    from ..data import normalize
    from ..training.precision import grad_scaler, resolve_precision
    from ..training.schedule import make_scheduler
    from ..training.loop import TrainConfig, make_optimizer, train_step
    from ..training.losses import TrainingLoss
    device = torch.device(device)
    model = create_model(name, **(overrides or {})).to(device).train()
    config = TrainConfig()
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, total_steps=(repeats * steps + 1) * 2)
    precision = resolve_precision(config.precision, device)
    scaler = grad_scaler(precision, device)
    criterion = TrainingLoss(config.label_smoothing)
    x = normalize(images[:batch_size]).to(device)
    y = labels[:batch_size].to(device)

    def window(n: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            train_step(model, x, y, criterion, optimizer, scheduler, scaler, config.grad_clip,
                       precision, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n * len(y) / (time.perf_counter() - t0)

    window(1)  # warm-up
    return max(window(steps) for _ in range(repeats))


def compare(data: FashionMNISTData, models: tuple[str, ...] = MODELS, epochs: int = 3,
            device: str | None = None, progress: bool = False, seed: int = 0) -> list[dict]:
    """Train every model in `models` with the same `TrainConfig(epochs=epochs)`; one row per model.

    `train_images_per_s` is a separate best-of-3 timing of the training step (see
    `training_throughput`); `fit_images_per_s` is the average over the training run itself, which
    a busy machine drags down. Each row records its seed, hardware, commit and configuration."""
    from ..training.loop import TrainConfig, fit
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    unknown = [m for m in models if m not in FAMILY]
    if unknown:
        raise ValueError(f"models must be among {list(FAMILY)}, got {unknown}")
    dev = get_device(device)
    rows = []
    for name in models:
        seed_everything(seed)
        model = create_model(name)
        params, macs = count_parameters(model), count_flops(model) // 2
        config = TrainConfig(epochs=epochs, seed=seed)
        result = fit(model, data, config, device=dev, progress=progress)
        rows.append({
            "model": name, "family": FAMILY[name], "params": params, "macs": macs, "epochs": epochs,
            "train_size": len(data.train_labels), "test_size": len(data.test_labels),
            "test_acc": round(result.test_accuracy, 4),
            "train_images_per_s": round(training_throughput(name, data.train_images, data.train_labels,
                                                            device=dev), 1),
            "infer_images_per_s": round(inference_throughput(result.model, data.test_images, device=dev), 1),
            "fit_images_per_s": round(result.images_per_s, 1),
            "wall_time_s": round(result.wall_time_s, 1),
            "seed": seed,
            "device": dev.type if dev.type != "cpu" else f"cpu ({platform.machine()}, "
                                                         f"{torch.get_num_threads()} threads)",
            **provenance_columns(),
            "train_config": json.dumps(config_dict(config), sort_keys=True),  # as the sweep's rows
        })
    return rows


def write_csv(rows: list[dict], path: str | Path = RESULTS_CSV) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: str | Path = RESULTS_CSV) -> list[dict]:
    """The committed results; raises a clear error naming the make target if the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make compare` to produce it")
    return read_results(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--train-size", type=train_subset, default=None,
                        help="stratified subset (default: all 60,000)")
    parser.add_argument("--test-size", type=test_subset, default=None,
                        help="stratified subset (default: all 10,000)")
    parser.add_argument("--models", type=one_of(MODELS, "a model of the comparison"), nargs="+",
                        default=list(MODELS), help=f"some of: {', '.join(MODELS)}")
    parser.add_argument("--device", type=device_name, default=None)
    parser.add_argument("--out", type=output_file, default=RESULTS_CSV)


def main(args: argparse.Namespace) -> int:
    data = load_data(fast=False, train_size=args.train_size, test_size=args.test_size)
    rows = compare(data, tuple(args.models), args.epochs, args.device, progress=True)
    for row in rows:
        print(row)
    print("wrote", write_csv(rows, args.out))
    return 0
