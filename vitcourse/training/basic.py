"""The bare training loop of chapter 05: one epoch of training, and an accuracy.

    from vitcourse.training import basic
    loss = basic.train_one_epoch(model, loader, optimizer, nn.CrossEntropyLoss())
    acc = basic.evaluate(model, test_loader)

This is what students write in exercise 05.1 (the check compares their functions with these), and
what the chapter calls afterwards so that its cells run before the exercise is answered. `fit`
(`vitcourse.training.loop`) is the same loop with the engineering around it: a schedule, mixed
precision, gradient clipping, progress bars, checkpoints and exact resume.

A loader is anything that yields `(images, labels)` batches: a `vitcourse.data.TensorLoader`, a
list of batches, or a slice of an endless stream (`itertools.islice`).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def train_one_epoch(model: nn.Module, loader: Batches, optimizer: torch.optim.Optimizer,
                    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
    """One pass over `loader`: forward, loss, backward, step for every batch.

    Args:
        scheduler: stepped once after every optimiser step, if given (the learning rate then
            changes per batch, as in `fit`).

    Returns:
        The mean training loss over the pass's images.
    """
    model.train()  # dropout (and the like) on
    total, count = 0.0, 0
    for x, y in loader:  # x: (B, 1, H, W), y: (B,)
        loss = loss_fn(model(x), y)  # forward: logits (B, classes) -> a scalar
        optimizer.zero_grad()  # .grad accumulates: clear the previous batch's gradients
        loss.backward()  # d loss / d parameter, into every parameter's .grad
        optimizer.step()  # move every parameter against its gradient
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(y)  # .item(): a float, not a tensor holding the graph
        count += len(y)
    return total / count


@torch.no_grad()  # no graph: evaluation needs no gradients (less memory, faster)
def evaluate(model: nn.Module, loader: Batches) -> float:
    """The share of `loader`'s images whose highest logit is the right class, in [0, 1]."""
    model.eval()  # dropout off: the model as it will be used
    correct, count = 0, 0
    for x, y in loader:
        correct += (model(x).argmax(dim=-1) == y).sum().item()  # (B, classes) -> (B,) predictions
        count += len(y)
    return correct / count
