"""Reading a trained classifier: accuracy, per-class accuracy, the confusion matrix (as numbers
and as a labelled plot), and a grid of the test images it gets wrong."""
from __future__ import annotations

from typing import Sequence

import torch

from ..data import CLASS_NAMES


def _check(predictions: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    if predictions.dim() == 2:  # logits (N, classes) -> predicted class (N,)
        predictions = predictions.argmax(-1)
    if predictions.shape != labels.shape or labels.dim() != 1:
        raise ValueError(f"predictions (N,) or logits (N, classes) must match labels (N,); got "
                         f"{tuple(predictions.shape)} and {tuple(labels.shape)}")
    return predictions.long().cpu(), labels.long().cpu()


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of correct predictions; `predictions` may be class ids (N,) or logits (N, classes)."""
    p, y = _check(predictions, labels)
    return (p == y).float().mean().item()


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    p, y = _check(predictions, labels)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if len(y) and max(p.max().item(), y.max().item()) >= num_classes:
        raise ValueError(f"num_classes must exceed every class id, got {num_classes} with ids up to "
                         f"{max(p.max().item(), y.max().item())}")
    return torch.bincount(y * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """(num_classes,) accuracy within each true class (the confusion matrix's diagonal / row sums)."""
    cm = confusion_matrix(predictions, labels, num_classes).double()
    return (cm.diagonal() / cm.sum(1).clamp(min=1)).float()


def plot_confusion_matrix(cm: torch.Tensor, class_names: Sequence[str] = CLASS_NAMES,
                          normalize: bool = True, ax=None, title: str = "Confusion matrix (test set)"):
    """Heat map of `cm` with class names; `normalize` shows each row as % of its true class."""
    import matplotlib.pyplot as plt

    cm = torch.as_tensor(cm).double()
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"cm must be square with one row per class name ({len(class_names)}), "
                         f"got shape {tuple(cm.shape)}")
    values = 100 * cm / cm.sum(1, keepdim=True).clamp(min=1) if normalize else cm
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(values.numpy(), cmap="Blues")
    n = len(class_names)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    top = values.max().item()
    for i in range(n):
        for j in range(n):
            v = values[i, j].item()
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 * top else "black")
    ax.figure.colorbar(im, ax=ax, label="% of the true class" if normalize else "images")
    ax.figure.tight_layout()
    return ax


def plot_misclassified(images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                       class_names: Sequence[str] = CLASS_NAMES, n: int = 24, cols: int = 8,
                       title: str = "Misclassified test images (true → predicted)"):
    """A grid of the first `n` wrongly classified images, each captioned true -> predicted.

    Returns the figure, or None when nothing is misclassified.
    """
    import matplotlib.pyplot as plt

    p, y = _check(predictions, labels)
    if images.shape[0] != len(y):
        raise ValueError(f"images must have one image per label ({len(y)}), got {images.shape[0]}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    wrong = (p != y).nonzero().flatten()[:n]
    if len(wrong) == 0:
        return None
    rows = -(-len(wrong) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 2.0 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist()):
        img = images[i].squeeze().cpu()
        ax.imshow(img.numpy(), cmap="gray")
        ax.set_title(f"{class_names[y[i]]}\n→ {class_names[p[i]]}", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
