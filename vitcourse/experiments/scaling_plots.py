"""Reading and plotting the scaling sweep (`vitcourse.experiments.sweep`), and measuring attention's cost.

Pure helpers (`data_curve`, `fit_power_law`, `attention_flops`) return numbers; the `plot_*`
functions draw one figure each from the sweep's rows (dicts, as `read_results` returns them):
- accuracy vs training-set size (log x), ViT vs CNN, mean over seeds with the seeds' spread;
- accuracy vs training compute (FLOPs, log x), every point;
- accuracy vs parameters (the model-size axis);
- accuracy and training throughput vs patch size;
- attention's FLOPs and time vs image resolution (quadratic in the number of tokens).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .results_csv import read_results
from .sweep import DEFAULT_CSV

COLORS = {"vit": "tab:blue", "cnn": "tab:orange"}
LABELS = {"vit": "ViT (vit_fmnist)", "cnn": "CNN (resnet_fmnist)"}
BASE_MODELS = {"vit": "vit_fmnist", "cnn": "resnet_fmnist"}


def load_results(path: str | Path = DEFAULT_CSV) -> list[dict[str, Any]]:
    """The sweep's rows with numbers parsed (ints, floats) and `overrides` as a dict."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"path must be an existing sweep CSV, got {str(path)!r}: run `make sweep`")
    ints = {"params", "train_size", "test_size", "seed", "epochs", "images_seen", "flops_per_image",
            "train_flops"}
    floats = {"test_accuracy", "test_loss", "train_accuracy", "train_loss", "train_images_per_s",
              "fit_wall_s", "point_wall_s", "cumulative_wall_s"}
    rows = []
    for raw in read_results(path):
        row: dict[str, Any] = dict(raw)
        for k in ints & row.keys():
            row[k] = int(float(row[k]))
        for k in floats & row.keys():
            row[k] = float(row[k]) if row[k] not in ("", None) else float("nan")
        row["patch_size"] = int(row["patch_size"]) if row.get("patch_size") else None
        row["overrides"] = json.loads(row.get("overrides") or "{}")
        row["axes"] = tuple(a for a in str(row.get("axes", "")).split(";") if a)
        rows.append(row)
    return rows


def on_axis(rows: Iterable[dict[str, Any]], axis: str) -> list[dict[str, Any]]:
    """The rows that belong to `axis` ("data", "model" or "patch")."""
    if axis not in ("data", "model", "patch"):
        raise ValueError(f"axis must be 'data', 'model' or 'patch', got {axis!r}")
    return [r for r in rows if axis in r["axes"]]


def data_curve(rows: Iterable[dict[str, Any]], family: str) -> dict[str, np.ndarray]:
    """Test accuracy vs training-set size for `family`'s base model on the data axis.

    Returns arrays `sizes`, `mean`, `low`, `high` (the min and max over seeds) and `seeds`
    (how many seeds each size has), sorted by size.
    """
    if family not in BASE_MODELS:
        raise ValueError(f"family must be one of {sorted(BASE_MODELS)}, got {family!r}")
    by_size: dict[int, list[float]] = {}
    for r in on_axis(rows, "data"):
        if r["family"] == family and r["model"] == BASE_MODELS[family] and not r["overrides"]:
            by_size.setdefault(r["train_size"], []).append(r["test_accuracy"])
    sizes = np.array(sorted(by_size), dtype=np.int64)
    accs = [np.array(by_size[n]) for n in sizes]
    return {"sizes": sizes, "mean": np.array([a.mean() for a in accs]),
            "low": np.array([a.min() for a in accs]), "high": np.array([a.max() for a in accs]),
            "seeds": np.array([len(a) for a in accs])}


def fit_power_law(sizes: Sequence[float], errors: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of error = a * n^slope in log-log space; returns (slope, a).

    A straight line on log-log axes is the "scaling law" shape (Kaplan et al. 2020; Zhai et al.
    2022 for ViTs): the slope says how fast more data buys lower error.
    """
    n = np.asarray(sizes, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if n.shape != e.shape or n.ndim != 1 or len(n) < 2:
        raise ValueError(f"sizes and errors must be 1-D of the same length >= 2, got {n.shape} and {e.shape}")
    if (n <= 0).any() or (e <= 0).any():
        raise ValueError("sizes and errors must be positive (their logarithms are fitted)")
    slope, intercept = np.polyfit(np.log(n), np.log(e), 1)
    return float(slope), float(np.exp(intercept))


def _plt():
    import matplotlib.pyplot as plt  # imported here: the package must not need a display
    return plt


def plot_data_scaling(rows: list[dict[str, Any]], ax=None):
    """Test accuracy vs training-set size (log x), ViT vs CNN: seeds as dots, their mean as a line.

    The sweep trains every size for about the same number of images seen, not to convergence: each
    tick says how many passes over the set that was and how many images they add up to, and the
    title names the compute most sizes had.
    """
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6.5, 4.2))[1]
    for fam in ("vit", "cnn"):
        c = data_curve(rows, fam)
        if not len(c["sizes"]):
            continue
        ax.fill_between(c["sizes"], 100 * c["low"], 100 * c["high"], color=COLORS[fam], alpha=0.2)
        ax.plot(c["sizes"], 100 * c["mean"], "-o", color=COLORS[fam],
                label=f"{LABELS[fam]}, mean of {c['seeds'].max()} seeds (band: min-max)")
        pts = [r for r in on_axis(rows, "data") if r["model"] == BASE_MODELS[fam] and not r["overrides"]]
        ax.scatter([r["train_size"] for r in pts], [100 * r["test_accuracy"] for r in pts],
                   s=12, color=COLORS[fam], alpha=0.7)
    # passes over the set and images seen, per size (the same for both families and all seeds)
    seen = {r["train_size"]: (r["epochs"], r["images_seen"]) for r in on_axis(rows, "data")
            if r.get("epochs") and r.get("images_seen")}
    title = "Fashion-MNIST: accuracy vs training-set size"
    if seen:
        common = Counter(images for _, images in seen.values()).most_common(1)[0][0]
        title += f"\nat a fixed training compute of {common:,} images seen (not at convergence)"
    _finish_log_x(ax, "training-set size (log scale), the passes over it, and the images they add up to",
                  "test accuracy on 10k images (%)", title)
    if seen:
        sizes = sorted(seen)
        ax.set_xticks(sizes, [f"{n:,}\n{seen[n][0]} pass{'es' if seen[n][0] > 1 else ''}\n{seen[n][1]:,} seen"
                              for n in sizes], fontsize=8)
        ax.minorticks_off()
    return ax


def _finish_log_x(ax, xlabel: str, ylabel: str, title: str):
    """Log-scale x axis, labels, title, grid and legend: the finish every accuracy plot here shares."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_compute(rows: list[dict[str, Any]], ax=None):
    """Test accuracy vs training compute (3 x forward FLOPs x images seen), every point."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6.5, 4.2))[1]
    markers = {"data": "o", "model": "s", "patch": "^"}
    for fam in ("vit", "cnn"):
        for axis, m in markers.items():
            pts = [r for r in rows if r["family"] == fam and r["axes"] and r["axes"][0] == axis]
            if pts:
                ax.scatter([r["train_flops"] for r in pts], [100 * r["test_accuracy"] for r in pts],
                           marker=m, color=COLORS[fam], alpha=0.8, label=f"{fam}, {axis} axis")
    return _finish_log_x(ax, "training compute (FLOPs, log scale)", "test accuracy (%)",
                         "Accuracy vs training compute")


def plot_model_size(rows: list[dict[str, Any]], ax=None):
    """Test accuracy vs parameter count on the model-size axis, one line per family."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6.5, 4.2))[1]
    sizes = set()
    for fam in ("vit", "cnn"):
        pts = sorted((r for r in on_axis(rows, "model") if r["family"] == fam), key=lambda r: r["params"])
        if pts:
            ax.plot([r["params"] for r in pts], [100 * r["test_accuracy"] for r in pts], "-o",
                    color=COLORS[fam], label=fam)
            sizes |= {r["train_size"] for r in pts}
    where = f", {', '.join(f'{n:,}' for n in sorted(sizes))} training images" if sizes else ""
    _finish_log_x(ax, "parameters (log scale)", "test accuracy (%)", f"Accuracy vs model size{where}")
    return ax


def plot_patch_size(rows: list[dict[str, Any]], axes=None):
    """Two panels: accuracy vs patch size, and training images/s vs patch size (tokens marked)."""
    plt = _plt()
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    pts = sorted((r for r in on_axis(rows, "patch")), key=lambda r: r["patch_size"])
    p = [r["patch_size"] for r in pts]
    axes[0].plot(p, [100 * r["test_accuracy"] for r in pts], "-o", color=COLORS["vit"])
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title("ViT accuracy vs patch size")
    axes[1].plot(p, [r["train_images_per_s"] for r in pts], "-o", color="tab:green")
    axes[1].set_ylabel("training images / s")
    axes[1].set_title("Training throughput vs patch size")
    for ax in axes:
        ax.set_xlabel("patch size P (tokens = (28 / P)²)")
        ax.set_xticks(p)
        ax.set_xticklabels([f"{q}\n({(28 // q) ** 2} tokens)" for q in p])
        ax.grid(True, alpha=0.3)
    return axes


# --------------------------------------------------------------------------------------------
# Attention's cost vs resolution: the bridge to Swin

def attention_flops(tokens: int, dim: int) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of one self-attention layer's parts for `tokens` tokens of width `dim`.

    Returns "projections" (q, k, v and the output projection: 4 N D² MACs, linear in N) and
    "scores" (q kᵀ and the weighted sum of v: 2 N² D MACs, quadratic in N).
    """
    for name, v in (("tokens", tokens), ("dim", dim)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    return {"projections": 2 * 4 * tokens * dim * dim, "scores": 2 * 2 * tokens * tokens * dim}


def measure_attention_cost(image_sizes: Sequence[int] = (64, 128, 224, 320, 448),
                           patch_size: int = 16, dim: int = 192, heads: int = 3,
                           repeats: int = 3) -> list[dict[str, float]]:
    """Time one multi-head self-attention layer (explicit path, batch 1, no grad) per resolution.

    Returns one dict per size: image_size, tokens, flops_projections, flops_scores (counted by
    `torch.utils.flop_counter`) and seconds (the best of `repeats` runs: the least disturbed by
    other processes on a shared machine).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ..layers.attention import MultiHeadSelfAttention

    if any(not isinstance(s, int) or s < patch_size or s % patch_size for s in image_sizes):
        raise ValueError(f"image_sizes must be multiples of patch_size={patch_size}, got {list(image_sizes)}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    attn = MultiHeadSelfAttention(dim, heads, fused=False).eval()
    out = []
    for s in image_sizes:
        n = (s // patch_size) ** 2
        x = torch.randn(1, n, dim)  # (B, N, D): the tokens of one image
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                attn(x)
            by_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
            attn(x)  # warm-up
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                attn(x)
                best = min(best, time.perf_counter() - t0)
        linear = sum(v for k, v in by_op.items() if "mm" in k and "bmm" not in k)
        scores = sum(v for k, v in by_op.items() if "bmm" in k)
        out.append({"image_size": s, "tokens": n, "flops_projections": linear,
                    "flops_scores": scores, "seconds": best})
    return out


def plot_attention_cost(rows: list[dict[str, float]], axes=None):
    """FLOPs of the two parts and measured time vs tokens, log-log, with slope-1 and slope-2 guides."""
    plt = _plt()
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    n = np.array([r["tokens"] for r in rows], dtype=float)
    axes[0].loglog(n, [r["flops_projections"] for r in rows], "-o", label="q, k, v, out projections (∝ N)")
    axes[0].loglog(n, [r["flops_scores"] for r in rows], "-o", label="q·kᵀ and weights·v (∝ N²)")
    axes[0].set_title("Self-attention FLOPs vs tokens")
    axes[0].set_ylabel("FLOPs per image")
    t = np.array([r["seconds"] for r in rows]) * 1e3
    axes[1].loglog(n, t, "-o", color="tab:red", label="measured")
    axes[1].loglog(n, t[-1] * (n / n[-1]) ** 2, "--", color="grey", label="slope 2 (∝ N²)")
    axes[1].loglog(n, t[-1] * (n / n[-1]), ":", color="grey", label="slope 1 (∝ N)")
    axes[1].set_title("Self-attention time vs tokens (CPU, batch 1)")
    axes[1].set_ylabel("milliseconds")
    for ax in axes[:2]:
        ax.set_xlabel("tokens N = (image size / 16)²")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return axes
