"""Chapter 05's exercise checks: the reference passes, known-wrong answers fail with their message."""
from __future__ import annotations

import math

import pytest

from vitcourse.checks import ExerciseError
from vitcourse.checks import ch05_training as check


def reference_lr(step, total_steps, warmup_steps, base_lr):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * progress))


def test_lr_reference_passes(capsys):
    check.warmup_cosine_lr(reference_lr)
    assert "05.1 passed" in capsys.readouterr().out


def test_lr_off_by_one_warmup_fails():
    def wrong(step, total, warmup, base):
        return base * step / warmup if step < warmup else reference_lr(step, total, warmup, base)
    with pytest.raises(ExerciseError, match="Off by one"):
        check.warmup_cosine_lr(wrong)


def test_lr_without_cosine_fails():
    def wrong(step, total, warmup, base):
        return reference_lr(step, total, warmup, base) if step < warmup else base
    with pytest.raises(ExerciseError, match="cos"):
        check.warmup_cosine_lr(wrong)


def test_lr_stub_says_not_implemented():
    def stub(*args):
        raise NotImplementedError
    with pytest.raises(NotImplementedError, match="05.1"):
        check.warmup_cosine_lr(stub)


def reference_rule(name, p):
    return p.ndim > 1 and name not in ("pos_embed", "cls_token")


def test_decay_reference_passes(capsys):
    check.wants_weight_decay(reference_rule)
    assert "05.2 passed" in capsys.readouterr().out


def test_decay_on_everything_fails_naming_a_norm_or_bias():
    with pytest.raises(ExerciseError, match="expected no decay"):
        check.wants_weight_decay(lambda name, p: True)


def test_decay_on_embeddings_fails():
    with pytest.raises(ExerciseError, match="cls_token|pos_embed"):
        check.wants_weight_decay(lambda name, p: p.ndim > 1)
