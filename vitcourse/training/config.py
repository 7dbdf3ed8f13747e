"""`TrainConfig`: the hyper-parameters of one training run, checked when it is made.

Its own module because `loop` (which runs it) and `run_state` (which saves it in checkpoints and
checks a resumed run against it) both need it; `from vitcourse.training.loop import TrainConfig`
works too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..data import Augmentation


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
    # The small-data recipe (chapter 13), each off by default; all batched on the device and drawn
    # from the loader's generator, so a resumed run repeats them exactly (vitcourse.augment).
    trivial_augment: bool = False    # TrivialAugment: one random op of random strength per image
    random_erasing: float = 0.0      # probability of erasing one random rectangle per image
    mixup_alpha: float = 0.0         # mixup: blend image pairs and their labels, lam ~ Beta(a, a)
    cutmix_alpha: float = 0.0        # CutMix: paste a box of the partner image; with mixup on,
                                     # each batch takes one of the two (DeiT's recipe)
    ema_decay: float = 0.0           # evaluate and return an EMA of the weights (0.999); 0 = off

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
        need(isinstance(self.trivial_augment, bool), "trivial_augment", "True or False")
        need(0 <= self.random_erasing <= 1, "random_erasing", "a probability in [0, 1]")
        need(self.mixup_alpha >= 0, "mixup_alpha", ">= 0 (0 = off)")
        need(self.cutmix_alpha >= 0, "cutmix_alpha", ">= 0 (0 = off)")
        need(0 <= self.ema_decay < 1, "ema_decay", "in [0, 1) (0 = off)")

    def augmentation(self) -> Augmentation:
        """The training batches' augmentation: this config's fields of the same names."""
        return Augmentation(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Augmentation)})
