"""Chapter 14: what pre-training buys, measured against the number of labelled images.

For each number of labels (a stratified subset of the 60,000 training images, drawn per seed) and
each seed, four accuracies on the whole test set:

    scratch        vit_fmnist_p4_cls trained from random weights on the labelled subset
    mae_finetune   the same model, recipe and budget, started from the pre-trained MAE encoder
    linear_probe   a logistic regression on the frozen MAE encoder's features
    knn            a k-nearest-neighbour vote in the frozen encoder's feature space

Features are the mean of the encoder's patch tokens after its final norm (a masked autoencoder's
class token gets no direct training signal). Rows go to a CSV one at a time (atomic), so an
interrupted run is resumed by running the same command again: done rows are skipped.

    python -m vitcourse labels                  # the committed results (~35 min on 2 idle cores)
    python -m vitcourse labels --fast           # a minute: tiny subsets, for the pipeline
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..cli_args import CommandError, device_name, int_list, non_negative_int, number, output_file, positive_int
from ..data import REPO_ROOT, FashionMNISTData, load_data, normalize, stratified_subset
from ..models.mae import MAE, MAEConfig, load_encoder
from ..models.vit import ViT
from ..training.checkpoint import PRETRAINED_DIR, load_model
from ..training.config import TrainConfig
from ..training.loop import evaluate, fit
from ..training.provenance import provenance_columns
from .results_csv import SweepReport, append_row, read_results

RESULTS_CSV = REPO_ROOT / "data" / "results" / "label_efficiency.csv"
MODEL = "vit_fmnist_p4_cls"  # what the default MAE's encoder is, as a classifier
METHODS = ("scratch", "mae_finetune", "linear_probe", "knn")
LABELS = (100, 600, 6_000, 60_000)
SEEDS = (0, 1, 2)
MONITOR_IMAGES = 200  # test images fit evaluates after each epoch (a progress signal); the reported accuracy uses all
# (epochs, batch size) per number of labels: one recipe for scratch and fine-tuning alike; a few
# hundred optimiser steps at every size, so the small sets are not starved of steps and the full
# set stays within a few minutes on a CPU
BUDGETS: dict[int, tuple[int, int]] = {100: (60, 50), 600: (30, 64), 6_000: (8, 128), 60_000: (1, 256)}
FAST_BUDGET = (2, 50)


def budget(labels: int, fast: bool = False) -> tuple[int, int]:
    """(epochs, batch size) for fine-tuning on `labels` images: the nearest size's budget."""
    if fast:
        return FAST_BUDGET
    nearest = min(BUDGETS, key=lambda n: abs(n - labels))
    return BUDGETS[nearest]


def finetune_config(labels: int, seed: int, fast: bool = False) -> TrainConfig:
    """The fine-tuning recipe (chapter 05's, lr 1e-3 and a 10% warm-up), the same from scratch."""
    epochs, batch = budget(labels, fast)
    return TrainConfig(epochs=epochs, batch_size=min(batch, labels), lr=1e-3, warmup_frac=0.1, seed=seed,
                       compile=False)


def labelled_subset(data: FashionMNISTData, labels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`labels` training images with equal counts per class, drawn with `seed`."""
    if labels >= len(data.train_labels):
        return data.train_images, data.train_labels
    return stratified_subset(data.train_images, data.train_labels, labels, seed)


def finetune(encoder_state: dict[str, torch.Tensor] | None, images: torch.Tensor, labels: torch.Tensor,
             data: FashionMNISTData, config: TrainConfig, device: str | None = None,
             mae_config: MAEConfig | None = None) -> tuple[nn.Module, float]:
    """Train the MAE's encoder as a classifier (`vit_fmnist_p4_cls` for the default MAE) on
    (images, labels), from `encoder_state` (None: from scratch). Returns the model and its accuracy
    on the whole test set."""
    torch.manual_seed(config.seed)  # the new head's (and, from scratch, every layer's) initial weights
    model = ViT((mae_config or MAEConfig()).encoder_config(num_classes=10))
    if encoder_state is not None:
        load_encoder(model, encoder_state)
    monitor = stratified_subset(data.test_images, data.test_labels, min(MONITOR_IMAGES, len(data.test_labels)), 1)
    result = fit(model, FashionMNISTData(images, labels, *monitor), config, device=device, progress=False)
    return result.model, evaluate(result.model, data.test_images, data.test_labels, device=device)["accuracy"]


@torch.no_grad()
def encoder_features(encoder: nn.Module, images_uint8: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """(N, D): the mean of the encoder's patch tokens (after its final norm) for raw uint8 images."""
    encoder.eval()
    device = next(encoder.parameters()).device
    out = []
    for i in range(0, len(images_uint8), batch_size):
        x = normalize(images_uint8[i:i + batch_size].to(device))  # (B, 1, 28, 28)
        tokens = encoder.forward_features(x)  # (B, 1 + N, D)
        out.append(tokens[:, 1:].mean(dim=1).float().cpu())
    return torch.cat(out)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 weight_decay: float = 1e-3, steps: int = 200) -> float:
    """Test accuracy of a logistic regression on frozen features: standardised with the training
    features' statistics (MAE probes through a BatchNorm without affine: the same thing), then
    full-batch L-BFGS on the cross-entropy plus a small L2 penalty."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    linear = nn.Linear(xtr.shape[1], classes)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(xtr), train_y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return (linear(xte).argmax(1) == test_y).float().mean().item()


def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, temperature: float = 0.07, batch_size: int = 1_000) -> float:
    """Test accuracy of a weighted k-NN vote on cosine similarity (the vote of Wu et al. 2018 and
    DINO: each of the k nearest training images votes with weight exp(similarity / T))."""
    k = min(k, len(train_y))
    classes = int(max(train_y.max(), test_y.max())) + 1
    train_n = F.normalize(train_x, dim=1)
    correct = 0
    for i in range(0, len(test_y), batch_size):
        sims = F.normalize(test_x[i:i + batch_size], dim=1) @ train_n.T  # (b, N_train)
        top, idx = sims.topk(k, dim=1)                                   # (b, k)
        votes = torch.zeros(len(top), classes).scatter_add_(1, train_y[idx], (top / temperature).exp())
        correct += (votes.argmax(1) == test_y[i:i + batch_size]).sum().item()
    return correct / len(test_y)


def row_key(labels: int, method: str, seed: int) -> str:
    return f"{labels}/{method}/seed{seed}"


def run(mae: MAE, data: FashionMNISTData, labels: Sequence[int] = LABELS, seeds: Sequence[int] = SEEDS,
        methods: Sequence[str] = METHODS, csv_path: str | Path = RESULTS_CSV, fast: bool = False,
        device: str | None = None, max_minutes: float | None = None) -> SweepReport:
    """Every (labels, method, seed) not yet in `csv_path`, one row each (see the module)."""
    report, start = SweepReport(), time.perf_counter()
    done = {r["key"] for r in read_results(csv_path)}
    state = mae.encoder_state_dict()
    encoder = mae.encoder.eval()
    test_features = None
    for n in labels:
        for seed in seeds:
            todo = [m for m in methods if row_key(n, m, seed) not in done]
            report.skipped += [row_key(n, m, seed) for m in methods if m not in todo]
            if not todo:
                continue
            if max_minutes is not None and time.perf_counter() - start > 60 * max_minutes:
                report.remaining += [row_key(n, m, seed) for m in todo]
                continue
            images, targets = labelled_subset(data, n, seed)
            for method in todo:
                t0 = time.perf_counter()
                config = finetune_config(n, seed, fast)
                extra: dict[str, Any] = {}
                if method in ("scratch", "mae_finetune"):
                    _, acc = finetune(state if method == "mae_finetune" else None, images, targets, data, config,
                                      device, mae.config)
                    extra = {"epochs": config.epochs, "batch_size": config.batch_size,
                             "steps": config.epochs * -(-len(targets) // config.batch_size), "lr": config.lr}
                else:
                    if test_features is None:
                        test_features = encoder_features(encoder, data.test_images)
                    train_features = encoder_features(encoder, images)
                    probe = linear_probe if method == "linear_probe" else knn_accuracy
                    acc = probe(train_features, targets, test_features, data.test_labels)
                    extra = {"k": 20} if method == "knn" else {}
                key = row_key(n, method, seed)
                append_row(csv_path, {"key": key, "labels": n, "method": method, "seed": seed,
                                      "test_accuracy": round(acc, 5), "test_images": len(data.test_labels),
                                      "seconds": round(time.perf_counter() - t0, 1), **extra,
                                      **provenance_columns()})
                report.done.append(key)
                print(f"{key}: {100 * acc:.2f}% ({time.perf_counter() - t0:.0f} s)", flush=True)
    return report


def read_label_efficiency(path: str | Path = RESULTS_CSV) -> dict[str, dict[int, list[float]]]:
    """method -> labels -> test accuracies (one per seed), from the committed results."""
    table: dict[str, dict[int, list[float]]] = {}
    for r in read_results(path):
        table.setdefault(r["method"], {}).setdefault(int(r["labels"]), []).append(float(r["test_accuracy"]))
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", type=int_list(number(int, at_least=10, at_most=60_000)), default=list(LABELS),
                        help="numbers of labelled images, comma-separated (default 100,600,6000,60000)")
    parser.add_argument("--seeds", type=int_list(non_negative_int), default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--mae", default=str(PRETRAINED_DIR / "mae_fmnist.pt"),
                        help="the pre-trained MAE (make pretrain writes it)")
    parser.add_argument("--csv", type=output_file, default=RESULTS_CSV)
    parser.add_argument("--fast", action="store_true", help="tiny subsets and 2 epochs: checks the pipeline")
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("--device", type=device_name, default=None)
    parser.add_argument("--max-minutes", type=number(float, above=0), default=None,
                        help="stop starting new runs after this long (run again to continue)")


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.mae).is_file():
        raise CommandError(f"argument --mae: {args.mae} does not exist; pre-train it with `make pretrain`")
    mae = load_model(args.mae)
    if not isinstance(mae, MAE):
        raise CommandError(f"argument --mae: {args.mae} holds a {type(mae).__name__}, not an MAE")
    data = load_data(fast=args.fast)
    report = run(mae, data, args.labels, args.seeds, args.methods, args.csv, args.fast, args.device, args.max_minutes)
    print(f"{len(report.done)} runs done, {len(report.skipped)} already in {args.csv}, "
          f"{len(report.remaining)} left for a later call")
    return 0
