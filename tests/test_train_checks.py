"""Chapter 05's exercise checks: the reference passes, known-wrong answers fail with their message."""
from __future__ import annotations

import math

import pytest
import torch

from vitcourse.checks import ExerciseError
from vitcourse.checks import ch05_training as check
from vitcourse.training import basic


# ----------------------------------------------------------------------------- 05.1: the loop

def loop(zero_grad=True, step=True, train_mode=True, wipe_after_backward=False, result="mean"):
    """`train_one_epoch` with one thing changed, as students get it wrong."""
    def train_one_epoch(model, loader, optimizer, loss_fn):
        if train_mode:
            model.train()
        losses = []
        for x, y in loader:
            loss = loss_fn(model(x), y)
            if zero_grad:
                optimizer.zero_grad()
            loss.backward()
            if wipe_after_backward:
                optimizer.zero_grad()
            if step:
                optimizer.step()
            losses.append(loss)
        if result == "sum":
            return sum(v.item() for v in losses)
        if result == "tensor":
            return sum(losses) / len(losses)  # still holds every batch's graph
        return sum(v.item() for v in losses) / len(losses)
    return train_one_epoch


def accuracy(eval_mode=True, no_grad=True, result="fraction"):
    """`evaluate` with one thing changed."""
    def evaluate(model, loader):
        if eval_mode:
            model.eval()
        with torch.no_grad() if no_grad else torch.enable_grad():
            hits = [(model(x).argmax(-1) == y).float() for x, y in loader]
        if result == "batch means":
            return sum(h.mean().item() for h in hits) / len(hits)
        if result == "count":
            return sum(h.sum().item() for h in hits)
        return sum(h.sum().item() for h in hits) / sum(len(h) for h in hits)
    return evaluate


def test_loop_reference_passes(capsys):
    check.training_loop(basic.train_one_epoch, basic.evaluate)
    assert "05.1 passed" in capsys.readouterr().out


def test_loop_written_as_the_chapter_asks_passes(capsys):
    check.training_loop(loop(), accuracy())
    assert "05.1 passed" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, message", [
    (loop(zero_grad=False), "accumulate"),
    (loop(step=False), r"optimizer.step\(\) is never called"),
    (loop(train_mode=False), r"call model.train\(\)"),
    (loop(wipe_after_backward=True), "wiped them"),
    (loop(result="sum"), "sum of the batch losses"),
    (loop(result="tensor"), "requires grad"),
])
def test_loop_known_wrong_training_fails_with_its_reason(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        check.training_loop(wrong, basic.evaluate)


@pytest.mark.parametrize("wrong, message", [
    (accuracy(eval_mode=False), r"call model.eval\(\)"),
    (accuracy(no_grad=False), r"torch.no_grad\(\)"),
    (accuracy(result="batch means"), "last batch is smaller"),
    (accuracy(result="count"), "number of correct predictions"),
])
def test_loop_known_wrong_evaluation_fails_with_its_reason(wrong, message):
    with pytest.raises(ExerciseError, match=message):
        check.training_loop(basic.train_one_epoch, wrong)


def test_loop_stub_says_not_implemented():
    def stub(*args):
        raise NotImplementedError
    with pytest.raises(NotImplementedError, match="05.1"):
        check.training_loop(stub, basic.evaluate)


# ----------------------------------------------------------------------------- 05.2, 05.3


def reference_lr(step, total_steps, warmup_steps, base_lr):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * progress))


def test_lr_reference_passes(capsys):
    check.warmup_cosine_lr(reference_lr)
    assert "05.2 passed" in capsys.readouterr().out


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
    with pytest.raises(NotImplementedError, match="05.2"):
        check.warmup_cosine_lr(stub)


def reference_rule(name, p):
    return p.ndim > 1 and name not in ("pos_embed", "cls_token")


def test_decay_reference_passes(capsys):
    check.wants_weight_decay(reference_rule)
    assert "05.3 passed" in capsys.readouterr().out


def test_decay_on_everything_fails_naming_a_norm_or_bias():
    with pytest.raises(ExerciseError, match="expected no decay"):
        check.wants_weight_decay(lambda name, p: True)


def test_decay_on_embeddings_fails():
    with pytest.raises(ExerciseError, match="cls_token|pos_embed"):
        check.wants_weight_decay(lambda name, p: p.ndim > 1)
