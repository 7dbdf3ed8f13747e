"""Evaluation helpers: accuracy, confusion matrix, per-class accuracy, plots."""
from __future__ import annotations

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from vitcourse.analysis.confusion import (accuracy, confusion_matrix, per_class_accuracy,  # noqa: E402
                                plot_confusion_matrix, plot_misclassified)


def test_confusion_matrix_counts_true_rows_predicted_columns():
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    p = torch.tensor([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(p, y, num_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert cm.sum() == len(y) and cm.trace() == (p == y).sum()
    assert per_class_accuracy(p, y, 3).tolist() == pytest.approx([0.5, 1.0, 2 / 3])
    assert accuracy(p, y) == pytest.approx(4 / 6)


def test_logits_are_turned_into_predictions():
    logits = torch.tensor([[0.1, 2.0], [3.0, 0.0], [0.0, 1.0]])
    assert accuracy(logits, torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)


def test_bad_shapes_and_class_counts_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        accuracy(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(torch.tensor([5]), torch.tensor([1]), num_classes=3)


def test_plots_are_labelled():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (200,), generator=g)
    p = torch.where(torch.rand(200, generator=g) < 0.7, y, torch.randint(0, 10, (200,), generator=g))
    ax = plot_confusion_matrix(confusion_matrix(p, y))
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "T-shirt/top"
    images = torch.randint(0, 255, (200, 28, 28), dtype=torch.uint8)
    fig = plot_misclassified(images, y, p, n=10, cols=5)
    titled = [a.get_title() for a in fig.axes if a.get_title()]
    assert len(titled) == 10 and "→" in titled[0]
    assert plot_misclassified(images, y, y) is None
