"""Training on Fashion-MNIST: one plain loop (`fit`), with the engineering in small helpers.

    from vitcourse.training.loop import TrainConfig, fit
    result = fit(model, load_data(), TrainConfig(epochs=10), checkpoint_dir="runs/vit")

What happens each step: cut a batch from tensors already on the device (augmented there, see
`TrainConfig`), run the model under autocast, take a label-smoothed cross-entropy (`losses`: on
mixed labels, or with a teacher's), back-propagate (through a gradient scaler on fp16),
clip the gradient norm, take an AdamW step and move the learning rate one step along its warm-up +
cosine schedule. After each epoch: evaluate on the test set, append to the history, write an
atomic checkpoint. Helpers: `config` (`TrainConfig`), `precision` (autocast / scaler / compile),
`schedule` (the LR), `checkpoint` (atomic files, weights_only loading), `distributed` (torchrun +
DDP), `live_plot`, `run_state` (resume bookkeeping: what a checkpoint holds and how a run continues
from it), `ema` (the weights' moving average).
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed as dist_utils
from .checkpoint import unwrap
from .config import TrainConfig  # notebooks import it from here, with `fit`: keep it
from .ema import make_ema
from .losses import TrainingLoss, merge_heads
from ..data import CLASS_NAMES, FashionMNISTData, TensorLoader
from .live_plot import LivePlot
from .precision import autocast, grad_scaler, maybe_compile, resolve_compile, resolve_precision
from .run_state import CHECKPOINT_NAME, Run, rng_state, set_rng_state
from .schedule import make_scheduler
from ..settings import get_device


@dataclass
class TrainResult:
    """What `fit` returns. `history` has one dict per epoch (see `fit`)."""
    history: list[dict[str, Any]]
    test_accuracy: float            # after the last epoch, in [0, 1]
    wall_time_s: float              # the whole run's training + evaluation time, resumed parts included
    images_per_s: float             # training throughput over the run
    model: nn.Module
    interrupted: bool = False       # stopped by Ctrl-C (a checkpoint was written if a folder was given)
    checkpoint_path: Path | None = None


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- helpers

def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights that decay, and those that should not (norms, biases, embeddings,
    the class token): decaying those pulls them to zero for no regularising benefit."""
    skip = set(getattr(unwrap(model), "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, p in unwrap(model).named_parameters():
        if not p.requires_grad:
            continue
        embedding = any(key in name for key in ("pos_embed", "cls_token", "embedding"))
        (no_decay if p.ndim <= 1 or embedding or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def input_size(model: nn.Module, image_size: int | None = None) -> int | None:
    """The size to resize 28x28 images to: `image_size`, else the model's config.image_size."""
    size = image_size or getattr(getattr(unwrap(model), "config", None), "image_size", None)
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"image_size must be square to resize Fashion-MNIST, got {tuple(size)}")
        size = size[0]
    return None if size in (None, 28) else int(size)


class StopOnInterrupt:
    """While active, Ctrl-C (SIGINT) sets `.requested` instead of raising, so the loop can stop
    between two steps and write a consistent checkpoint. A second Ctrl-C raises as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.requested:  # asked twice: stop right now
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopOnInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ----------------------------------------------------------------------------- the loop

def train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: TrainingLoss,
               optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
               grad_clip: float, precision: str, device: torch.device,
               weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on batch (x, y): y is (B,) labels or (B, classes) mixed labels. Returns
    the (weighted) loss and the logits, detached (a distilled model's two heads averaged)."""
    with autocast(precision, device):
        outputs = net(x)  # (B, classes), or a distilled model's (class head, distillation head)
        loss = criterion(outputs, y, x) * weight  # a teacher, if any, sees the same images
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # the scaler multiplies fp16 losses so small gradients survive
    if grad_clip:
        scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    scaler.step(optimizer)  # skipped by the scaler if the fp16 gradient overflowed
    scaler.update()
    scheduler.step()  # the learning rate moves once per step, not per epoch
    return loss.detach(), merge_heads(outputs).detach()


def fit(model: nn.Module, data: FashionMNISTData, config: TrainConfig | None = None,
        device: torch.device | str | None = None, checkpoint_dir: str | Path | None = None,
        resume: bool = False, progress: bool = True, live_plot: bool = False,
        on_step: Callable[[int, float], None] | None = None,
        teacher: nn.Module | None = None) -> TrainResult:
    """Train `model` (any classifier of (B, 1, S, S) images -> (B, classes) logits) on `data`.

    Args:
        config: hyper-parameters (`TrainConfig()` if None).
        device: "cpu", "cuda", ...; None picks the best available.
        checkpoint_dir: folder for ``last.pt`` (after every epoch and at Ctrl-C) and
            ``history.json`` / ``history.csv``; None writes nothing.
        resume: continue from ``checkpoint_dir/last.pt`` if it exists (model, optimiser, scheduler,
            scaler, epoch, step, history and random states), ending with the same weights as
            a run never stopped.
        progress: a tqdm bar per epoch (loss, accuracy, images/s).
        live_plot: in a notebook, a figure of the curves updated after every epoch.
        on_step: called after every optimiser step with (step of the run, counted from 1, and the
            step's loss); for per-step curves (chapter 11's norm ablation). It reads the loss with
            `.item()`, a device sync per step, so leave it None where speed matters.
        teacher: a trained classifier for DeiT's hard distillation (`vitcourse.training.losses`);
            a distilled model (two heads) needs one. It is not trained, and a resumed run must be
            given the same teacher.

    Returns:
        TrainResult; `history` holds one dict per epoch with epoch, train_loss, train_acc,
        test_loss, test_acc, lr, images_per_s, seconds. With ``config.ema_decay > 0`` the test
        columns and `model` are those of the weights' moving average.

    Raises:
        TrainingDiverged: the loss became NaN/inf (the last checkpoint is the last good epoch).
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    _check_fit_arguments(config, data, checkpoint_dir, resume, teacher)
    run, net, criterion = _setup(model, data, config, device, checkpoint_dir, teacher)
    if resume:
        run.resume()
    steps_per_epoch, world, device = len(run.train_loader), run.world, run.device
    plot = LivePlot(enabled=None if live_plot and run.main else False)

    interrupted = False
    with StopOnInterrupt() as stop:
        for epoch in range(run.epoch, config.epochs):
            sums = run.start_epoch(epoch)  # the epoch's batch order, and its sums so far
            bar = tqdm(total=steps_per_epoch, initial=run.step, desc=f"epoch {epoch + 1}/{config.epochs}",
                       disable=not (progress and run.main), leave=True, dynamic_ncols=True)
            net.train()
            t0 = time.perf_counter()
            for i, (x, y) in enumerate(run.train_loader):
                if i < run.step:  # resuming mid-epoch: replay the batch order, skip what was done
                    continue
                rng_before = rng_state(device)
                n_global = len(y)
                x, y = dist_utils.shard(x, y)  # this rank's slice of the global batch
                try:  # weight: the loss is a mean over the *global* batch, so DDP's average = 1 process
                    loss, logits = train_step(net, x, y, criterion, run.optimizer, run.scheduler, run.scaler,
                                              config.grad_clip, run.precision, device, len(y) * world / n_global)
                except KeyboardInterrupt:  # raised inside a step: the weights are still those of
                    set_rng_state(rng_before, device)  # the last full step in all but a tiny window
                    interrupted = True
                    break
                if run.ema is not None:
                    run.ema.update_parameters(run.model)
                sums.add(loss, logits, y, n_global, world)
                run.step = i + 1
                if on_step is not None:
                    on_step(epoch * steps_per_epoch + run.step, loss.item() * n_global / len(y) / world)
                if run.step % 20 == 0 or run.step == steps_per_epoch:  # a sync point: check and report
                    _check_finite(sums.loss, epoch, run.step, run.ckpt_path)
                    bar.set_postfix(**sums.postfix(t0, world), refresh=False)
                bar.update(1)
                if stop.requested:
                    interrupted = True
                    break
            sums.train_time += time.perf_counter() - t0
            _check_finite(sums.loss, epoch, run.step, run.ckpt_path)
            if interrupted:  # Ctrl-C: save where we are (mid-epoch) and end cleanly
                bar.close()
                run.save_interrupted(epoch, run.step, sums)
                break
            last = run.end_epoch(epoch, sums)  # evaluate, record, checkpoint
            bar.set_postfix(loss=f"{last['train_loss']:.3f}", acc=f"{last['train_acc']:.3f}",
                            test_acc=f"{last['test_acc']:.3f}", img_s=f"{last['images_per_s']:.0f}")
            bar.close()
            plot.update(run.history)
    return TrainResult(model=run.eval_model, interrupted=interrupted, **run.summary(len(data.train_labels)))


def _check_fit_arguments(config: TrainConfig, data: FashionMNISTData, checkpoint_dir: str | Path | None,
                         resume: bool, teacher: nn.Module | None = None) -> None:
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(data, FashionMNISTData):
        raise ValueError(f"data must be a FashionMNISTData (from vitcourse.load_data()), got {type(data).__name__}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir, the folder holding last.pt")
    if teacher is not None and not isinstance(teacher, nn.Module):
        raise ValueError(f"teacher must be a trained nn.Module classifier (e.g. "
                         f"load_pretrained('resnet_fmnist')), got {type(teacher).__name__}")


def _setup(model: nn.Module, data: FashionMNISTData, config: TrainConfig, device: torch.device | str | None,
           checkpoint_dir: str | Path | None, teacher: nn.Module | None = None) -> tuple[Run, nn.Module, TrainingLoss]:
    """The run's objects (device, loaders, optimiser, schedule, scaler), the network to step
    (wrapped for DDP and torch.compile where they apply) and the loss."""
    dist_utils.init_from_env(device or get_device())
    device = dist_utils.local_device(get_device(str(device) if device is not None else None))
    world = dist_utils.world_size()
    precision = resolve_precision(config.precision, device)
    size = input_size(model, config.image_size)
    torch.manual_seed(config.seed)  # dropout masks: the same on every rank, like the batch order
    model = unwrap(model).to(device)
    train_loader = TensorLoader(data.train_images, data.train_labels, config.batch_size, shuffle=True,
                                device=device, image_size=size, seed=config.seed,
                                augmentation=config.augmentation(), num_classes=len(CLASS_NAMES))
    test_loader = TensorLoader(data.test_images, data.test_labels, 512, shuffle=False,
                               device=device, image_size=size)
    optimizer = make_optimizer(model, config)
    run = Run(model=model, optimizer=optimizer,
              scheduler=make_scheduler(optimizer, config.epochs * len(train_loader), config.warmup_frac),
              scaler=grad_scaler(precision, device), train_loader=train_loader, test_loader=test_loader,
              config=config, precision=precision, device=device,
              ckpt_path=Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None,
              main=dist_utils.is_main(), world=world, ema=make_ema(model, config.ema_decay),
              teacher=unwrap(teacher).to(device) if teacher is not None else None)
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = maybe_compile(net, resolve_compile(config.compile, device))
    return run, net, TrainingLoss(config.label_smoothing, run.teacher)


def _check_finite(loss_sum: torch.Tensor, epoch: int, step: int, ckpt_path: Path | None) -> None:
    # Under torchrun every rank must take the same decision at the same step: a rank that stopped
    # alone would leave the others waiting forever in the next step's gradient all-reduce.
    finite = bool(torch.isfinite(loss_sum).item())
    bad = dist_utils.all_reduce_sum([0.0 if finite else 1.0], loss_sum.device)
    if bad.item() == 0:
        return
    kept = (f"the last good checkpoint is kept at {ckpt_path}" if ckpt_path is not None and ckpt_path.is_file()
            else "no checkpoint was written")
    value = "non-finite on another rank" if finite else loss_sum.item()
    raise TrainingDiverged(
        f"the training loss became {value} at epoch {epoch + 1}, by step {step}: training "
        f"stopped and {kept}. Try a lower lr, a longer warm-up, grad_clip=1.0, or precision='fp32'.")


def _loader_for(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                device: torch.device, image_size: int | None) -> TensorLoader:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return TensorLoader(images, labels, batch_size, shuffle=False, device=device, image_size=image_size)


@torch.no_grad()
def predict(model: nn.Module, images_uint8: torch.Tensor, batch_size: int = 512,
            device: torch.device | str | None = None, image_size: int | None = None,
            precision: str = "fp32") -> torch.Tensor:
    """Logits (N, classes), float32 on the CPU, for raw uint8 images (N, 28, 28)."""
    device = get_device(str(device) if device is not None else None)
    precision = resolve_precision(precision, device)
    labels = torch.zeros(len(images_uint8), dtype=torch.int64)
    loader = _loader_for(images_uint8, labels, batch_size, device, input_size(model, image_size))
    model = unwrap(model).to(device)
    was_training = model.training
    model.eval()
    out = []
    for x, _ in loader:
        with autocast(precision, device):
            out.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, images_uint8: torch.Tensor, labels: torch.Tensor, batch_size: int = 512,
             device: torch.device | str | None = None, image_size: int | None = None,
             precision: str = "fp32") -> dict[str, float]:
    """Cross-entropy (no label smoothing) and accuracy of `model` on raw uint8 images."""
    labels = torch.as_tensor(labels)
    if labels.shape != (len(images_uint8),):
        raise ValueError(f"labels must have shape ({len(images_uint8)},), got {tuple(labels.shape)}")
    logits = predict(model, images_uint8, batch_size, device, image_size, precision)
    return {"loss": F.cross_entropy(logits, labels.long()).item(),
            "accuracy": (logits.argmax(-1) == labels).float().mean().item()}
