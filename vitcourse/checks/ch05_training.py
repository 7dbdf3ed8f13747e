"""Checks for chapter 05 (training): the warm-up + cosine learning rate, and which parameters
get weight decay. Each builds its own cases and compares with `vitcourse.training.schedule` /
`vitcourse.training.loop.param_groups`."""
from __future__ import annotations

import math
from typing import Callable

import torch

from ._core import ExerciseError, exercise, expect_true
from ..i18n import _


@exercise("05.1", "learning rate with linear warm-up and cosine decay",
          difficulty="easy", minutes=10)
def warmup_cosine_lr(student_lr: Callable[[int, int, int, float], float]) -> None:
    """`student_lr(step, total_steps, warmup_steps, base_lr)` equals the reference at every step."""
    from ..training.schedule import warmup_cosine

    for total, warmup, base in [(50, 5, 1e-3), (37, 0, 0.1), (120, 12, 2e-3), (9, 3, 1.0)]:
        for step in range(total):
            got = student_lr(step, total, warmup, base)
            expected = base * warmup_cosine(step, total, warmup)
            if not isinstance(got, (int, float)) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
                raise ExerciseError(_("lr(step={step}, ...) should return a number, got {got}").format(
                    step=step, got=type(got).__name__))
            got = float(got)
            if math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-12):
                continue
            where = f"lr(step={step}, total_steps={total}, warmup_steps={warmup}, base_lr={base})"
            if step < warmup:
                hint = _(" During warm-up the rate rises linearly and reaches base_lr at the last "
                         "warm-up step: base_lr * (step + 1) / warmup_steps.")
                if math.isclose(got, base * step / warmup, rel_tol=1e-6, abs_tol=1e-12):
                    hint = _(" Off by one: step 0 should already train, at base_lr / warmup_steps.")
            else:
                hint = _(" After warm-up: base_lr * 0.5 * (1 + cos(pi * progress)), with progress = "
                         "(step - warmup_steps) / (total_steps - warmup_steps) going from 0 to 1.")
            raise ExerciseError(_("{where} = {got:.6g}, expected {expected:.6g}.{hint}").format(
                where=where, got=got, expected=expected, hint=hint))


@exercise("05.2", "which parameters get weight decay", difficulty="easy", minutes=10)
def wants_weight_decay(student_rule: Callable[[str, torch.Tensor], bool]) -> None:
    """`student_rule(name, parameter)` agrees with `param_groups` on every parameter of a ViT."""
    from ..models.registry import create_model
    from ..training.loop import param_groups

    model = create_model("vit_fmnist", pool="cls", depth=2, dim=48, heads=3, mlp_dim=96)
    decay_ids = {id(p) for p in param_groups(model, 0.1)[0]["params"]}
    for name, p in model.named_parameters():
        got = student_rule(name, p)
        expected = id(p) in decay_ids
        expect_true(isinstance(got, bool) or (isinstance(got, torch.Tensor) and got.numel() == 1),
                    _("the rule should return True or False, got {got} for {name!r}").format(
                        got=type(got).__name__, name=name))
        if bool(got) != expected:
            why = (_("it is a weight matrix (or convolution kernel) that multiplies the input: "
                     "decaying it regularises") if expected else
                   _("it is a bias, a normalisation scale/shift or an embedding (1-D, or pos_embed / "
                     "cls_token): shrinking it to zero adds no regularisation, only harm"))
            decay, no_decay = _("decay"), _("no decay")
            raise ExerciseError(_("parameter {name!r} of shape {shape}: expected {expected}, got "
                                  "{got}; {why}.").format(
                name=name, shape=tuple(p.shape), expected=decay if expected else no_decay,
                got=decay if got else no_decay, why=why))
