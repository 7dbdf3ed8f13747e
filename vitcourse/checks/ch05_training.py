"""Checks for chapter 05 (training): the bare training loop, the warm-up + cosine learning rate,
and which parameters get weight decay. Each builds its own cases and compares with
`vitcourse.training.basic`, `vitcourse.training.schedule` / `vitcourse.training.loop.param_groups`."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._core import ExerciseError, call_student, exercise, expect_true
from ..i18n import _


# ----------------------------------------------------------------------------- 05.1: the loop

class _Probe(nn.Module):
    """An identity layer that notes, at every forward, the model's mode and whether autograd is on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[bool, bool]] = []  # (training, grad enabled) per forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return x


def _tiny_model(seed: int) -> nn.Sequential:
    """A small classifier of 8x8 images into 5 classes, with dropout so train and eval differ."""
    torch.manual_seed(seed)
    return nn.Sequential(_Probe(), nn.Flatten(), nn.Linear(64, 32), nn.GELU(), nn.Dropout(0.2),
                         nn.Linear(32, 5))


def _tiny_loader(n: int, batch_size: int, seed: int, shuffle: bool) -> Any:
    from ..data import TensorLoader

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 5, (n,), generator=g)
    return TensorLoader(images, labels, batch_size, shuffle=shuffle, seed=seed)


class _SpyLoss:
    """Cross-entropy that remembers each batch's loss, its gradients (taken without touching
    `.grad`) and whether `backward` reached it."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.values: list[float] = []
        self.grads: list[list[torch.Tensor]] = []
        self.backwards = 0

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, labels)
        self.values.append(loss.item())
        if loss.requires_grad:
            self.grads.append([g.detach().clone() for g in torch.autograd.grad(
                loss, self.params, retain_graph=True)])

            def noticed(grad: torch.Tensor) -> torch.Tensor:
                self.backwards += 1
                return grad
            loss.register_hook(noticed)
        return loss


class _SpySGD(torch.optim.SGD):
    """Plain SGD that checks, at every `step`, that the gradients are those of the current batch."""

    def __init__(self, params: list[nn.Parameter], lr: float, loss: _SpyLoss | None = None) -> None:
        super().__init__(params, lr=lr)
        self.spy_loss = loss
        self.steps = 0
        self.problem: str | None = None  # the first thing wrong, in words

    def step(self, closure: Any = None) -> Any:
        if self.spy_loss is not None and self.problem is None:
            self.problem = self._inspect()
        self.steps += 1
        return super().step(closure)

    def _inspect(self) -> str | None:
        params = self.param_groups[0]["params"]
        spy = self.spy_loss
        if not spy.grads:
            return _("optimizer.step() was called before any loss was computed with loss_fn")
        expected = spy.grads[-1]
        if all(p.grad is None or not p.grad.any() for p in params):
            if spy.backwards == 0:
                return _("optimizer.step() found no gradients: loss.backward() is never called")
            return _("optimizer.step() found no gradients: zero_grad() came between loss.backward() "
                     "and optimizer.step() and wiped them; clear the gradients before backward")
        if all(p.grad is not None and torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6)
               for p, g in zip(params, expected)):
            return None
        summed = [sum(gs[i] for gs in spy.grads) for i in range(len(params))]
        if len(spy.grads) > 1 and all(p.grad is not None and torch.allclose(p.grad, s, rtol=1e-4, atol=1e-6)
                                      for p, s in zip(params, summed)):
            return _("the gradients accumulate from batch to batch (PyTorch adds each backward's "
                     "gradients into .grad): call optimizer.zero_grad() once per batch, before "
                     "loss.backward()")
        return _("at optimizer.step() the gradients are not those of the current batch's loss: "
                 "per batch, compute loss_fn(model(x), y), then zero_grad(), backward(), step()")


def _check_train_one_epoch(student: Callable[..., Any]) -> None:
    from ..training.basic import train_one_epoch

    model = _tiny_model(seed=500).eval()  # as evaluate leaves it: the loop must switch it back
    params = list(model.parameters())
    spy = _SpyLoss(params)
    optimizer = _SpySGD(params, lr=0.5, loss=spy)
    loader = _tiny_loader(96, 16, seed=501, shuffle=True)  # 6 batches of 16
    torch.manual_seed(502)  # the dropout masks
    got = call_student("train_one_epoch(model, loader, optimizer, loss_fn)", student,
                       model, loader, optimizer, spy)
    n_batches = len(loader)

    if not spy.values:
        raise ExerciseError(_("train_one_epoch never called loss_fn: compute each batch's loss with "
                              "the loss_fn it is given"))
    modes = [training for training, _grad in model[0].calls]
    expect_true(all(modes), _("the model ran in eval mode while training: call model.train() at the "
                              "start of train_one_epoch (evaluate leaves the model in eval mode, and "
                              "dropout must be on while training)"))
    expect_true(optimizer.steps > 0, _("optimizer.step() is never called: the weights never change"))
    expect_true(optimizer.problem is None, optimizer.problem or "")
    expect_true(optimizer.steps == n_batches, _(
        "optimizer.step() was called {steps} times for {batches} batches: once per batch").format(
        steps=optimizer.steps, batches=n_batches))

    if isinstance(got, torch.Tensor):
        expect_true(not got.requires_grad, _(
            "train_one_epoch returned a tensor that requires grad: return a float (loss.item()), "
            "or every batch's graph stays in memory"))
        expect_true(got.numel() == 1, _("train_one_epoch should return one number, got a tensor of "
                                        "shape {shape}").format(shape=tuple(got.shape)))
        got = got.item()
    expect_true(isinstance(got, (int, float)), _(
        "train_one_epoch should return the mean loss as a float, got {got}").format(got=type(got).__name__))
    losses = spy.values[-n_batches:]
    mean = sum(losses) / len(losses)  # batches of equal size: the batch mean is the image mean
    if not math.isclose(got, mean, rel_tol=1e-5):
        if math.isclose(got, sum(losses), rel_tol=1e-5):
            hint = _(" That is the sum of the batch losses: divide by the number of batches (or "
                     "images).")
        elif math.isclose(got, losses[-1], rel_tol=1e-5):
            hint = _(" That is the last batch's loss: average over all batches.")
        else:
            hint = ""
        raise ExerciseError(_("train_one_epoch returned {got:.6g}; the mean of the epoch's batch "
                              "losses is {expected:.6g}.{hint}").format(got=got, expected=mean, hint=hint))

    reference = _tiny_model(seed=500)
    torch.manual_seed(502)
    train_one_epoch(reference, _tiny_loader(96, 16, seed=501, shuffle=True),
                    torch.optim.SGD(reference.parameters(), lr=0.5), nn.CrossEntropyLoss())
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        if not torch.allclose(p, q, rtol=1e-4, atol=1e-6):
            raise ExerciseError(_(
                "after one epoch, parameter {name!r} differs from the reference's by up to {diff:.3g}: "
                "call the model once per batch and take exactly one step per batch").format(
                name=name, diff=(p - q).abs().max().item()))


def _check_evaluate(student: Callable[..., Any]) -> None:
    from ..training.basic import evaluate, train_one_epoch

    model = _tiny_model(seed=510)
    torch.manual_seed(511)
    train_one_epoch(model, _tiny_loader(96, 16, seed=512, shuffle=True),
                    torch.optim.SGD(model.parameters(), lr=0.5), nn.CrossEntropyLoss())
    model.train()  # as train_one_epoch leaves it: evaluate must switch to eval mode
    model[0].calls.clear()
    loader = _tiny_loader(50, 16, seed=513, shuffle=False)  # batches of 16, 16, 16 and 2
    before = [p.detach().clone() for p in model.parameters()]
    got = call_student("evaluate(model, loader)", student, model, loader)

    expect_true(bool(model[0].calls), _("evaluate never called the model"))
    expect_true(not any(training for training, _grad in model[0].calls), _(
        "the model ran in training mode during evaluate: call model.eval() first (dropout must be "
        "off when measuring)"))
    expect_true(not any(grad for _training, grad in model[0].calls), _(
        "evaluate runs with gradients on: wrap the loop in torch.no_grad() (or decorate the "
        "function with @torch.no_grad()); without it every forward builds a graph for a backward "
        "that never comes"))
    expect_true(all(torch.equal(p, b) for p, b in zip(model.parameters(), before)),
                _("evaluate changed the model's parameters: it should only measure"))

    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    expect_true(isinstance(got, (int, float)), _(
        "evaluate should return the accuracy as a float, got {got}").format(got=type(got).__name__))
    expected = evaluate(model, _tiny_loader(50, 16, seed=513, shuffle=False))
    if math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
        return
    with torch.no_grad():
        model.eval()
        per_batch = [(model(x).argmax(-1) == y).float() for x, y in _tiny_loader(50, 16, seed=513, shuffle=False)]
    correct = sum(int(b.sum()) for b in per_batch)
    hints = [
        (correct, _(" That is the number of correct predictions: divide by the number of images.")),
        (100 * expected, _(" That is a percentage: return a fraction between 0 and 1.")),
        (1 - expected, _(" That is the error rate: count the predictions that are right.")),
        (sum(b.mean().item() for b in per_batch) / len(per_batch),
         _(" That is the mean of the batch accuracies, but the last batch is smaller: count the "
           "correct predictions over all batches and divide by the number of images.")),
    ]
    hint = next((h for value, h in hints if math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-9)), "")
    raise ExerciseError(_("evaluate returned {got:.6g}, the accuracy is {expected:.6g}.{hint}").format(
        got=got, expected=expected, hint=hint))


@exercise("05.1", "the training loop: one epoch of training, and the accuracy",
          difficulty="medium", minutes=20)
def training_loop(student_train_one_epoch: Callable[..., float],
                  student_evaluate: Callable[..., float]) -> None:
    """`train_one_epoch(model, loader, optimizer, loss_fn)` takes the same steps as
    `vitcourse.training.basic.train_one_epoch` and returns the epoch's mean loss;
    `evaluate(model, loader)` returns the accuracy in eval mode without gradients."""
    _check_train_one_epoch(student_train_one_epoch)
    _check_evaluate(student_evaluate)


# ----------------------------------------------------------------------------- 05.2, 05.3

@exercise("05.2", "learning rate with linear warm-up and cosine decay",
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


@exercise("05.3", "which parameters get weight decay", difficulty="easy", minutes=10)
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
