"""The training loss of `fit`: label-smoothed cross-entropy on hard labels (B,) or on the soft
labels (B, classes) that mixup / CutMix make, and, given a teacher, DeiT's hard distillation.

Hard distillation (Touvron et al., "Training data-efficient image transformers & distillation
through attention", ICML 2021, §5.2): the teacher's arg-max on the *same augmented image* is a
second label, ``y_t = argmax teacher(x)``, and the loss is the mean of two cross-entropies,

    L = 1/2 CE(class head, y) + 1/2 CE(distillation head, y_t).

A distilled model (a distillation token, `SmallDataViT(distilled=True)`) returns the two heads as
a tuple while training and their mean when evaluated; a model with one head gets both terms on
that head (DeiT's "usual" hard distillation, Table 3). A teacher only ever runs in eval mode and
without gradients.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

Outputs = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def merge_heads(outputs: Outputs) -> torch.Tensor:
    """The logits to score: a distilled model's two heads averaged, as it does at test time."""
    if isinstance(outputs, tuple):
        cls_logits, dist_logits = outputs
        return (cls_logits + dist_logits) / 2
    return outputs


class TrainingLoss(nn.Module):
    """`loss(outputs, targets, images)`: see the module's docstring.

    Args:
        label_smoothing: as `nn.CrossEntropyLoss` (applied to the true or mixed labels, not to the
            teacher's).
        teacher: a frozen classifier of the same images (e.g. `load_pretrained("resnet_fmnist")`),
            or None for no distillation.
    """

    def __init__(self, label_smoothing: float = 0.0, teacher: nn.Module | None = None) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "TrainingLoss":
        super().train(mode)
        if self.teacher is not None:  # the teacher stays in eval mode (BatchNorm statistics, dropout)
            self.teacher.eval()
        return self

    def forward(self, outputs: Outputs, targets: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.teacher is None:
            if isinstance(outputs, tuple):
                raise ValueError("the model returns two heads (a distilled model: a class and a "
                                 "distillation head) but no teacher was given: pass fit(..., teacher=...)")
            return F.cross_entropy(outputs.float(), targets, label_smoothing=self.label_smoothing)
        cls_logits, dist_logits = outputs if isinstance(outputs, tuple) else (outputs, outputs)
        with torch.no_grad():
            teacher_labels = self.teacher(images).argmax(-1)  # (B,): hard labels, as DeiT's best
        true_term = F.cross_entropy(cls_logits.float(), targets, label_smoothing=self.label_smoothing)
        return (true_term + F.cross_entropy(dist_logits.float(), teacher_labels)) / 2
