"""Training on Fashion-MNIST: one plain loop (`fit`), with the engineering in small helpers.

    from vitcourse.training.loop import TrainConfig, fit
    result = fit(model, load_data(), TrainConfig(epochs=10), checkpoint_dir="runs/vit")

What happens each step: cut a batch from tensors already on the device, run the model under
autocast, take a label-smoothed cross-entropy, back-propagate (through a gradient scaler on fp16),
clip the gradient norm, take an AdamW step and move the learning rate one step along its warm-up +
cosine schedule. After each epoch: evaluate on the test set, append to the history, write an
atomic checkpoint. Helpers: `precision` (autocast / scaler / compile), `schedule` (the LR),
`checkpoint` (atomic files, weights_only loading), `distributed` (torchrun + DDP), `live_plot`.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed as dist_utils
from .checkpoint import atomic_write, load_checkpoint, model_spec, save_checkpoint, unwrap
from ..data import FashionMNISTData, TensorLoader
from .live_plot import LivePlot
from .precision import autocast, grad_scaler, maybe_compile, resolve_compile, resolve_precision
from .schedule import make_scheduler
from ..settings import get_device

CHECKPOINT_NAME = "last.pt"


@dataclass
class TrainConfig:
    """Hyper-parameters of a run. The defaults are the recipe that trained best on a 2-core CPU."""
    epochs: int = 10
    batch_size: int = 256            # global batch: split across ranks under torchrun
    lr: float = 2e-3                 # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.05       # decoupled (AdamW); never on norms, biases, embeddings
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_frac: float = 0.05        # share of all steps spent warming up linearly
    label_smoothing: float = 0.1
    grad_clip: float = 1.0           # max global gradient norm; 0 turns clipping off
    precision: str = "auto"          # "auto" | "bf16" | "fp16" | "fp32" (see vitcourse.training.precision)
    compile: bool | str = "auto"     # torch.compile: "auto" = only on CUDA, where it pays
    seed: int = 0                    # seeds the batch order, augmentation and dropout
    crop_padding: int = 0            # random-crop padding in pixels (cost ~5 points in short runs)
    hflip: bool = True               # random horizontal flips
    image_size: int | None = None    # resize the 28x28 images (96 for D2L's configuration)
    optimizer: str = "adamw"         # "adamw" | "sgd" (plain SGD, as D2L trains)

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")
        need(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "an int >= 1")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", "an int >= 1")
        need(self.lr > 0, "lr", "> 0")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        self.betas = tuple(self.betas)
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two numbers in [0, 1)")
        need(0 <= self.warmup_frac < 1, "warmup_frac", "in [0, 1)")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "in [0, 1)")
        need(self.grad_clip >= 0, "grad_clip", ">= 0")
        need(self.precision in ("auto", "bf16", "fp16", "fp32"), "precision", "'auto', 'bf16', 'fp16' or 'fp32'")
        need(self.compile in (True, False, "auto"), "compile", "True, False or 'auto'")
        need(isinstance(self.seed, int) and self.seed >= 0, "seed", "a non-negative int")
        need(isinstance(self.crop_padding, int) and self.crop_padding >= 0, "crop_padding", "an int >= 0")
        need(self.image_size is None or (isinstance(self.image_size, int) and self.image_size >= 1),
             "image_size", "None or a positive int")
        need(self.optimizer in ("adamw", "sgd"), "optimizer", "'adamw' or 'sgd'")


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


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _write_history(history: list[dict[str, Any]], folder: Path) -> None:
    """history.json and history.csv, each written atomically (`atomic_write`, as checkpoints are),
    so a run killed mid-write leaves the previous epoch's complete files, never half of one."""
    def write_csv(f) -> None:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)

    atomic_write(folder / "history.json", lambda f: f.write(json.dumps(history, indent=1)), text=True)
    atomic_write(folder / "history.csv", write_csv, text=True)


@torch.no_grad()
def _eval_sums(model: nn.Module, loader: TensorLoader, precision: str, device: torch.device) -> list[float]:
    """[loss sum, correct, count] over `loader` (this rank's share under torchrun)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    for x, y in loader:
        x, y = dist_utils.shard(x, y)
        with autocast(precision, device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(-1) == y).sum()
        n += len(y)
    model.train(was_training)
    return [loss_sum.item(), float(correct.item()), float(n)]


# ----------------------------------------------------------------------------- the loop

def train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module,
               optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
               grad_clip: float, precision: str, device: torch.device,
               weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on batch (x, y); returns the (weighted) loss and the logits, detached."""
    with autocast(precision, device):
        logits = net(x)  # (B, classes)
    loss = criterion(logits.float(), y) * weight
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # the scaler multiplies fp16 losses so small gradients survive
    if grad_clip:
        scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    scaler.step(optimizer)  # skipped by the scaler if the fp16 gradient overflowed
    scaler.update()
    scheduler.step()  # the learning rate moves once per step, not per epoch
    return loss.detach(), logits.detach()


def fit(model: nn.Module, data: FashionMNISTData, config: TrainConfig | None = None,
        device: torch.device | str | None = None, checkpoint_dir: str | Path | None = None,
        resume: bool = False, progress: bool = True, live_plot: bool = False) -> TrainResult:
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

    Returns:
        TrainResult; `history` holds one dict per epoch with epoch, train_loss, train_acc,
        test_loss, test_acc, lr, images_per_s, seconds.

    Raises:
        TrainingDiverged: the loss became NaN/inf (the last checkpoint is the last good epoch).
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(data, FashionMNISTData):
        raise ValueError(f"data must be a FashionMNISTData (from vitcourse.load_data()), got {type(data).__name__}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir, the folder holding last.pt")
    dist_utils.init_from_env(device or get_device())
    device = dist_utils.local_device(get_device(str(device) if device is not None else None))
    main, world = dist_utils.is_main(), dist_utils.world_size()
    precision = resolve_precision(config.precision, device)
    size = input_size(model, config.image_size)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    torch.manual_seed(config.seed)  # dropout masks: the same on every rank, like the batch order
    model = unwrap(model).to(device)
    train_loader = TensorLoader(data.train_images, data.train_labels, config.batch_size, shuffle=True,
                                device=device, image_size=size, crop_padding=config.crop_padding,
                                hflip=config.hflip, seed=config.seed)
    test_loader = TensorLoader(data.test_images, data.test_labels, 512, shuffle=False,
                               device=device, image_size=size)
    steps_per_epoch = len(train_loader)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config.epochs * steps_per_epoch, config.warmup_frac)
    scaler = grad_scaler(precision, device)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    # Where to start: epoch, step within it, the partial epoch's running sums, history.
    start_epoch, start_step, running, history = 0, 0, [0.0, 0.0, 0, 0.0], []
    epoch_loader_state = train_loader.state_dict()
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        _check_resumable(ckpt, config, world)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_step, history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])
        running, epoch_loader_state = list(ckpt["running"]), ckpt["loader"]
        _set_rng_state(ckpt["rng"], device)

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = maybe_compile(net, resolve_compile(config.compile, device))
    plot = LivePlot(enabled=None if live_plot else False) if main else LivePlot(enabled=False)

    def save(epoch: int, step: int, running: list, loader_state: dict, rng: dict) -> None:
        if ckpt_path is None or not main:
            return
        save_checkpoint({
            "format": "vitcourse-train/1", "model_spec": model_spec(model),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch, "step": step, "running": running, "loader": loader_state, "rng": rng,
            "history": history, "config": dataclasses.asdict(config), "world_size": world,
            "precision": precision,
        }, ckpt_path)

    interrupted = False
    with StopOnInterrupt() as stop:
        for epoch in range(start_epoch, config.epochs):
            if epoch > start_epoch:  # a fresh epoch (not the one resumed mid-way)
                start_step, running = 0, [0.0, 0.0, 0, 0.0]
                epoch_loader_state = train_loader.state_dict()
            train_loader.load_state_dict(epoch_loader_state)
            loss_sum = torch.tensor(running[0], dtype=torch.float64, device=device)
            correct = torch.tensor(running[1], dtype=torch.float64, device=device)
            seen, train_time, step = running[2], running[3], start_step
            bar = tqdm(total=steps_per_epoch, initial=start_step, desc=f"epoch {epoch + 1}/{config.epochs}",
                       disable=not (progress and main), leave=True, dynamic_ncols=True)
            net.train()
            t0 = time.perf_counter()
            for i, (x, y) in enumerate(train_loader):
                if i < start_step:  # resuming mid-epoch: replay the batch order, skip what was done
                    continue
                rng_before = _rng_state(device)
                n_global = len(y)
                x, y = dist_utils.shard(x, y)  # this rank's slice of the global batch
                try:  # weight: the loss is a mean over the *global* batch, so DDP's average = 1 process
                    loss, logits = train_step(net, x, y, criterion, optimizer, scheduler, scaler,
                                              config.grad_clip, precision, device, len(y) * world / n_global)
                except KeyboardInterrupt:  # raised inside a step: the weights are still those of
                    _set_rng_state(rng_before, device)  # the last full step in all but a tiny window
                    interrupted = True
                    break
                loss_sum += loss.double() * n_global / world  # sum over this rank's images
                correct += (logits.argmax(-1) == y).sum()
                seen += len(y)
                step = i + 1
                if step % 20 == 0 or step == steps_per_epoch:  # a sync point: check and report
                    _check_finite(loss_sum, epoch, step, ckpt_path)
                    rate = seen / max(train_time + time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}",
                                    img_s=f"{rate * world:.0f}", refresh=False)
                bar.update(1)
                if stop.requested:
                    interrupted = True
                    break
            train_time += time.perf_counter() - t0
            _check_finite(loss_sum, epoch, step, ckpt_path)
            if interrupted:  # Ctrl-C: save where we are (mid-epoch) and end cleanly
                bar.close()
                save(epoch, step, [loss_sum.item(), correct.item(), seen, train_time],
                     epoch_loader_state, _rng_state(device))
                if main:
                    where = f"; continue with fit(..., resume=True) from {ckpt_path}" if ckpt_path else ""
                    print(f"Interrupted at epoch {epoch + 1}, step {step}/{steps_per_epoch}{where}")
                break
            t_eval = time.perf_counter()
            train_loss, train_correct, train_n = dist_utils.all_reduce_sum(
                [loss_sum.item(), correct.item(), seen], device).tolist()
            test_loss, test_correct, test_n = dist_utils.all_reduce_sum(
                _eval_sums(model, test_loader, precision, device), device).tolist()
            history.append({
                "epoch": epoch + 1,
                "train_loss": train_loss / train_n, "train_acc": train_correct / train_n,
                "test_loss": test_loss / test_n, "test_acc": test_correct / test_n,
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": train_n / max(train_time, 1e-9),
                "seconds": train_time + time.perf_counter() - t_eval,
            })
            last = history[-1]
            bar.set_postfix(loss=f"{last['train_loss']:.3f}", acc=f"{last['train_acc']:.3f}",
                            test_acc=f"{last['test_acc']:.3f}", img_s=f"{last['images_per_s']:.0f}")
            bar.close()
            save(epoch + 1, 0, [0.0, 0.0, 0, 0.0], train_loader.state_dict(), _rng_state(device))
            if ckpt_path is not None and main:
                _write_history(history, ckpt_path.parent)
            plot.update(history)

    # every epoch sees the whole training set: overall speed = epochs / sum(1 / speed)
    n_train = len(data.train_labels)
    train_s = sum(n_train / h["images_per_s"] for h in history)
    return TrainResult(
        history=history,
        test_accuracy=history[-1]["test_acc"] if history else float("nan"),
        wall_time_s=sum(h["seconds"] for h in history),
        images_per_s=n_train * len(history) / train_s if history else float("nan"),
        model=model, interrupted=interrupted, checkpoint_path=ckpt_path)


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


def _check_resumable(ckpt: dict[str, Any], config: TrainConfig, world: int) -> None:
    """Resuming must continue the same run: same hyper-parameters (more epochs allowed) and ranks."""
    saved = dict(ckpt["config"])
    saved["betas"] = tuple(saved["betas"])
    now = dataclasses.asdict(config)
    differ = [k for k in now if k not in ("epochs", "compile") and saved.get(k) != now[k]]
    if differ:
        raise ValueError("config differs from the checkpoint's in " + ", ".join(
            f"{k} (checkpoint {saved.get(k)!r}, now {now[k]!r})" for k in differ)
            + ": resume only continues the same run; use another checkpoint_dir for a new one")
    if ckpt["world_size"] != world:
        raise ValueError(f"the checkpoint was written by {ckpt['world_size']} process(es), "
                         f"this run has {world}: resume with the same number of processes")


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
