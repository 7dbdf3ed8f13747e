"""Self-supervised pre-training of a masked autoencoder (`vitcourse.models.mae.MAE`) on images alone.

The same plain loop as `fit` with a different objective: there are no labels, the model returns its
own loss (pixels of the removed patches). Each step: a shuffled batch of training images (flipped at
random), a new random mask per image, forward, backward, clip, AdamW step, one step of the warm-up +
cosine schedule. After each epoch: the loss on a fixed set of test images under fixed masks (so
epochs are comparable), the history, an atomic checkpoint. Ctrl-C saves where the run is; `resume`
continues it to the same weights as a run never stopped (the loader's and torch's random states are
in the checkpoint). MAE's optimiser settings (He et al. 2022, Table 8): AdamW, betas (0.9, 0.95),
weight decay 0.05, warm-up then cosine.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..data import Augmentation, TensorLoader
from ..settings import get_device
from .checkpoint import load_checkpoint, model_spec, save_checkpoint
from .loop import StopOnInterrupt, param_groups
from .run_state import rng_state, set_rng_state, write_history
from .schedule import make_scheduler

CHECKPOINT_NAME = "last.pt"


@dataclass
class PretrainConfig:
    """Hyper-parameters of an MAE pre-training run."""
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1.5e-3             # MAE: 1.5e-4 * batch / 256 for ViT-B over 800 epochs; a small
    #                                model and a short run take a larger step (tried: 5e-4 slower)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)  # MAE's; a lower beta2 reacts faster to a changing loss
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    hflip: bool = True             # MAE uses random resized crops and flips; flips are enough here
    seed: int = 0
    eval_images: int = 2_000       # test images for the per-epoch loss (fixed masks)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_images"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive float, got {self.lr!r}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac!r}")
        self.betas = tuple(self.betas)


@dataclass
class PretrainResult:
    history: list[dict[str, Any]]
    wall_time_s: float
    images_per_s: float
    model: nn.Module
    interrupted: bool = False
    checkpoint_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def masked_loss(model: nn.Module, images_uint8: torch.Tensor, batch_size: int = 500, seed: int = 0,
                device: torch.device | str = "cpu") -> float:
    """The MAE loss on `images_uint8` (N, 28, 28) under masks drawn from `seed`: comparable between
    epochs and runs. Torch's global random state is left as it was."""
    was_training = model.training
    model.eval()
    loader = TensorLoader(images_uint8, torch.zeros(len(images_uint8), dtype=torch.int64), batch_size,
                          shuffle=False, device=device)
    total = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for x, _ in loader:
            total += model(x)[0].item() * len(x)
    model.train(was_training)
    return total / len(images_uint8)


def pretrain(model: nn.Module, train_images: torch.Tensor, eval_images: torch.Tensor,
             config: PretrainConfig | None = None, device: torch.device | str | None = None,
             checkpoint_dir: str | Path | None = None, resume: bool = False,
             progress: bool = True) -> PretrainResult:
    """Pre-train `model` (an MAE: `model(x)` returns (loss, ...)) on unlabelled uint8 images.

    Args:
        train_images: (N, 28, 28) uint8, the images without their labels.
        eval_images: (M, 28, 28) uint8 held-out images for the per-epoch loss (the first
            `config.eval_images` are used).
        checkpoint_dir: folder for ``last.pt`` (every epoch and at Ctrl-C) and ``history.csv``.
        resume: continue from ``checkpoint_dir/last.pt`` if it exists.
    """
    from tqdm.auto import tqdm

    config = config or PretrainConfig()
    if not isinstance(config, PretrainConfig):
        raise ValueError(f"config must be a PretrainConfig, got {type(config).__name__}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir, the folder holding last.pt")
    for name, images in (("train_images", train_images), ("eval_images", eval_images)):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 3:
            raise ValueError(f"{name} must be a uint8 tensor (N, H, W) of raw pixels, got "
                             f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
    device = get_device(str(device) if device is not None else None)
    torch.manual_seed(config.seed)
    model = model.to(device)
    loader = TensorLoader(train_images, torch.zeros(len(train_images), dtype=torch.int64), config.batch_size,
                          shuffle=True, device=device, seed=config.seed, augmentation=Augmentation(hflip=config.hflip))
    held_out = eval_images[:config.eval_images]
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas)
    scheduler = make_scheduler(optimizer, config.epochs * len(loader), config.warmup_frac)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    epoch, step, running, history = 0, 0, [0.0, 0, 0.0], []
    loader_state = loader.state_dict()
    if resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        saved = {**ckpt["config"], "betas": tuple(ckpt["config"]["betas"])}
        differ = [k for k, v in dataclasses.asdict(config).items() if k != "epochs" and saved.get(k) != v]
        if differ:
            raise ValueError("config differs from the checkpoint's in " + ", ".join(
                f"{k} (checkpoint {saved.get(k)!r}, now {getattr(config, k)!r})" for k in differ)
                + ": resume only continues the same run")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        epoch, step, running, history = ckpt["epoch"], ckpt["step"], list(ckpt["running"]), list(ckpt["history"])
        loader_state = ckpt["loader"]
        set_rng_state(ckpt["rng"], device)

    def save(epoch: int, step: int, running: list, loader_state: dict) -> None:
        if ckpt_path is None:
            return
        save_checkpoint({"format": "vitcourse-pretrain/1", "model_spec": model_spec(model),
                         "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
                         "running": running, "loader": loader_state, "rng": rng_state(device),
                         "history": history, "config": dataclasses.asdict(config)}, ckpt_path)

    interrupted = False
    with StopOnInterrupt() as stop:
        for ep in range(epoch, config.epochs):
            if ep > epoch:  # a fresh epoch (not the one resumed mid-way): its batch order starts here
                step, running, loader_state = 0, [0.0, 0, 0.0], loader.state_dict()
            loader.load_state_dict(loader_state)
            bar = tqdm(total=len(loader), initial=step, desc=f"epoch {ep + 1}/{config.epochs}",
                       disable=not progress, leave=True, dynamic_ncols=True)
            model.train()
            t0 = time.perf_counter()
            for i, (x, _) in enumerate(loader):
                if i < step:  # resuming mid-epoch: replay the batch order, skip what was done
                    continue
                loss = model(x)[0]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                running[0] += loss.item() * len(x)
                running[1] += len(x)
                step = i + 1
                if not torch.isfinite(loss):
                    raise RuntimeError(f"the MAE loss became {loss.item()} at epoch {ep + 1}, step {step}: "
                                       "try a lower lr or a longer warm-up")
                bar.set_postfix(loss=f"{running[0] / running[1]:.3f}", refresh=False)
                bar.update(1)
                if stop.requested:
                    interrupted = True
                    break
            running[2] += time.perf_counter() - t0
            if interrupted:
                bar.close()
                save(ep, step, running, loader_state)
                where = f"; continue with resume=True from {ckpt_path}" if ckpt_path else ""
                print(f"Interrupted at epoch {ep + 1}, step {step}/{len(loader)}{where}")
                break
            t_eval = time.perf_counter()
            history.append({"epoch": ep + 1, "train_loss": running[0] / running[1],
                            "test_loss": masked_loss(model, held_out, device=device),
                            "lr": optimizer.param_groups[0]["lr"], "images_per_s": running[1] / running[2],
                            "seconds": running[2] + time.perf_counter() - t_eval})
            save(ep + 1, 0, [0.0, 0, 0.0], loader.state_dict())
            if ckpt_path is not None:
                write_history(history, ckpt_path.parent)
            bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}", test_loss=f"{history[-1]['test_loss']:.3f}")
            bar.close()
    n = len(train_images)
    train_s = sum(n / r["images_per_s"] for r in history)
    return PretrainResult(history=history, wall_time_s=sum(r["seconds"] for r in history),
                          images_per_s=n * len(history) / train_s if history else float("nan"),
                          model=model.eval(), interrupted=interrupted, checkpoint_path=ckpt_path)
