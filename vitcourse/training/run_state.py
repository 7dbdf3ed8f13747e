"""The bookkeeping around `fit`'s loop, so the loop itself reads in one screen (chapter 05).

- `EpochSums`: the running loss / accuracy / image count / time of the epoch in progress; what a
  mid-epoch checkpoint stores as ``running``.
- `Run`: everything one training run saves and restores together (model, optimiser, scheduler,
  scaler, loader order, random states, history), with `resume`, `save`, `start_epoch`,
  `end_epoch` and `result`. A resumed run ends with the same weights as one never stopped: the
  checkpoint holds the loader's state at the start of the epoch and the step reached in it, and
  the loop replays the batch order up to that step.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from . import distributed as dist_utils
from .checkpoint import atomic_write, load_checkpoint, model_spec, save_checkpoint
from .config import TrainConfig
from .precision import autocast
from ..data import TensorLoader

CHECKPOINT_NAME = "last.pt"


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def write_history(history: list[dict[str, Any]], folder: Path) -> None:
    """history.json and history.csv, each written atomically (`atomic_write`, as checkpoints are),
    so a run killed mid-write leaves the previous epoch's complete files, never half of one."""
    def write_csv(f) -> None:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)

    atomic_write(folder / "history.json", lambda f: f.write(json.dumps(history, indent=1)), text=True)
    atomic_write(folder / "history.csv", write_csv, text=True)


@torch.no_grad()
def eval_sums(model: nn.Module, loader: TensorLoader, precision: str, device: torch.device) -> list[float]:
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


class EpochSums:
    """Running sums of the epoch in progress. Loss and correct stay on the device (float64) so a
    step never waits for the GPU; `.item()` happens only at the loop's sync points."""

    def __init__(self, values: list[float], device: torch.device) -> None:
        loss, correct, self.seen, self.train_time = values
        self.loss = torch.tensor(loss, dtype=torch.float64, device=device)
        self.correct = torch.tensor(correct, dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, n_global: int, world: int) -> None:
        self.loss += loss.double() * n_global / world  # the step's loss is a global-batch mean
        hard = y if y.dim() == 1 else y.argmax(-1)  # mixed labels (B, classes): their larger part
        self.correct += (logits.argmax(-1) == hard).sum()
        self.seen += len(y)

    def postfix(self, since: float, world: int) -> dict[str, str]:
        """The progress bar's loss, accuracy and images/s so far (`since`: this stretch's start)."""
        rate = self.seen / max(self.train_time + time.perf_counter() - since, 1e-9)
        return dict(loss=f"{self.loss.item() / self.seen:.3f}", acc=f"{self.correct.item() / self.seen:.3f}",
                    img_s=f"{rate * world:.0f}")

    def to_list(self) -> list[float]:
        return [self.loss.item(), self.correct.item(), self.seen, self.train_time]


ZERO_SUMS = [0.0, 0.0, 0, 0.0]


@dataclass
class Run:
    """One training run's state: what `fit` checkpoints, resumes and reports."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    train_loader: TensorLoader
    test_loader: TensorLoader
    config: TrainConfig
    precision: str
    device: torch.device
    ckpt_path: Path | None
    main: bool = True               # rank 0 (or the only process): the one that writes files
    world: int = 1
    epoch: int = 0                  # the epoch to run next (0-based)
    step: int = 0                   # steps already done in it (> 0 only after a mid-epoch resume)
    running: list = field(default_factory=lambda: list(ZERO_SUMS))
    history: list = field(default_factory=list)
    loader_state: dict = field(default_factory=dict)  # the train loader's state at the epoch's start
    ema: AveragedModel | None = None                  # the weights' moving average, if on
    teacher: nn.Module | None = None                  # the distillation teacher, if any

    def __post_init__(self) -> None:
        self.loader_state = self.loader_state or self.train_loader.state_dict()

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and returned: the moving average when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def resume(self) -> None:
        """Continue from `ckpt_path` if it exists (else start fresh)."""
        if self.ckpt_path is None or not self.ckpt_path.is_file():
            return
        ckpt = load_checkpoint(self.ckpt_path, map_location=self.device)
        check_resumable(ckpt, self.config, self.world, teacher_fingerprint(self.teacher))
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.epoch, self.step, self.history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])
        self.running, self.loader_state = list(ckpt["running"]), ckpt["loader"]
        set_rng_state(ckpt["rng"], self.device)

    def start_epoch(self, epoch: int) -> EpochSums:
        """Position the loader at `epoch`'s batch order and return its running sums."""
        if epoch > self.epoch:  # a fresh epoch (not the one resumed mid-way)
            self.epoch, self.step, self.running = epoch, 0, list(ZERO_SUMS)
            self.loader_state = self.train_loader.state_dict()
        self.train_loader.load_state_dict(self.loader_state)
        return EpochSums(self.running, self.device)

    def save(self, epoch: int, step: int, running: list[float], loader_state: dict) -> None:
        if self.ckpt_path is None or not self.main:
            return
        save_checkpoint({
            "format": "vitcourse-train/1", "model_spec": model_spec(self.model),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": epoch, "step": step, "running": running, "loader": loader_state,
            "rng": rng_state(self.device), "history": self.history,
            "config": dataclasses.asdict(self.config), "world_size": self.world,
            "precision": self.precision,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "teacher": teacher_fingerprint(self.teacher),
        }, self.ckpt_path)

    def save_interrupted(self, epoch: int, step: int, sums: EpochSums) -> None:
        """Ctrl-C mid-epoch: save where we are (the epoch's batch order and the step reached)."""
        self.save(epoch, step, sums.to_list(), self.loader_state)
        if self.main:
            where = f"; continue with fit(..., resume=True) from {self.ckpt_path}" if self.ckpt_path else ""
            print(f"Interrupted at epoch {epoch + 1}, step {step}/{len(self.train_loader)}{where}")

    def end_epoch(self, epoch: int, sums: EpochSums) -> dict[str, Any]:
        """Evaluate, append the epoch's record to the history, checkpoint; returns the record."""
        t_eval = time.perf_counter()
        train_loss, train_correct, train_n = dist_utils.all_reduce_sum(
            [sums.loss.item(), sums.correct.item(), sums.seen], self.device).tolist()
        test_loss, test_correct, test_n = dist_utils.all_reduce_sum(
            eval_sums(self.eval_model, self.test_loader, self.precision, self.device), self.device).tolist()
        self.history.append({
            "epoch": epoch + 1,
            "train_loss": train_loss / train_n, "train_acc": train_correct / train_n,
            "test_loss": test_loss / test_n, "test_acc": test_correct / test_n,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": train_n / max(sums.train_time, 1e-9),
            "seconds": sums.train_time + time.perf_counter() - t_eval,
        })
        self.save(epoch + 1, 0, list(ZERO_SUMS), self.train_loader.state_dict())
        if self.ckpt_path is not None and self.main:
            write_history(self.history, self.ckpt_path.parent)
        return self.history[-1]

    def summary(self, n_train: int) -> dict[str, Any]:
        """TrainResult's numbers: every epoch sees the whole training set, so the overall speed is
        epochs / sum(1 / speed)."""
        h = self.history
        train_s = sum(n_train / r["images_per_s"] for r in h)
        return dict(history=h, test_accuracy=h[-1]["test_acc"] if h else float("nan"),
                    wall_time_s=sum(r["seconds"] for r in h),
                    images_per_s=n_train * len(h) / train_s if h else float("nan"),
                    checkpoint_path=self.ckpt_path)


def teacher_fingerprint(teacher: nn.Module | None) -> dict[str, Any] | None:
    """What identifies a distillation teacher in a checkpoint: its class, parameter count and the
    sum of its weights (a different teacher would give the resumed run different labels)."""
    if teacher is None:
        return None
    params = [p.detach() for p in teacher.parameters()]
    return {"class": type(teacher).__name__, "params": sum(p.numel() for p in params),
            "weight_sum": round(float(sum(p.double().sum() for p in params)), 6)}


def check_resumable(ckpt: dict[str, Any], config: TrainConfig, world: int,
                    teacher: dict[str, Any] | None = None) -> None:
    """Resuming must continue the same run: same hyper-parameters (more epochs allowed), ranks and
    teacher. A field the checkpoint predates counts as its default (the run did not use it)."""
    saved = dict(ckpt["config"])
    saved["betas"] = tuple(saved["betas"])
    now = dataclasses.asdict(config)
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    differ = [k for k in now if k not in ("epochs", "compile") and saved.get(k, defaults[k]) != now[k]]
    if differ:
        raise ValueError("config differs from the checkpoint's in " + ", ".join(
            f"{k} (checkpoint {saved.get(k)!r}, now {now[k]!r})" for k in differ)
            + ": resume only continues the same run; use another checkpoint_dir for a new one")
    if ckpt["world_size"] != world:
        raise ValueError(f"the checkpoint was written by {ckpt['world_size']} process(es), "
                         f"this run has {world}: resume with the same number of processes")
    if ckpt.get("teacher") != teacher:
        raise ValueError(f"the checkpoint was trained with teacher {ckpt.get('teacher')}, this run "
                         f"has {teacher}: resume with the same teacher (or none if it had none)")
