"""The named corruptions of chapter 12 at graded strengths: what `python -m vitcourse robustness`
measures and what `CorruptionExplorer` lets you try, defined once so both show the same thing.

Each entry wraps a function of `vitcourse.analysis.corruptions` with a unit and a grid of strengths
whose FIRST value leaves the images unchanged (the clean point of every curve):

| name | what it does | strengths |
|---|---|---|
| patch_drop_random_7 / _4 | random 7x7 (the ViT's tokens) / 4x4-pixel patches set to black | fraction 0 ... 0.9 |
| patch_drop_centre_7 / border_7 | the patches nearest / farthest from the centre | fraction 0 ... 0.9 |
| patch_shuffle | the image cut into g x g pieces, put back in a random order | g = 1, 2, 4, 7 |
| gaussian_noise | white noise at a signal-to-noise ratio | inf (clean), 40 ... 0 dB |
| low_pass | only the frequencies <= radius kept (a blur) | inf (clean), 14 ... 1 |
| high_pass | the frequencies <= radius removed (the mean kept) | 0 (clean), 1 ... 14 |
| fgsm / pgd | L-inf attacks on the model itself (white-box) | eps 0 ... 16 grey levels |

Random corruptions draw from the generator they are given. The runner seeds one generator per
strength with the SAME seed, so the draws are common to all strengths: the patches dropped at 25%
are among those dropped at 50% (the same random ranking), and the noise at 10 dB is the noise at
20 dB scaled up. The curves then move only because the strength moved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn as nn

from .corruptions import fgsm, gaussian_noise, high_pass, low_pass, patch_drop, patch_shuffle, pgd

VIT_PATCH = 7      # vit_fmnist's patch size: dropping a 7x7 patch removes exactly one token
OTHER_PATCH = 4    # a grid that cuts across the ViT's tokens, so its tokenisation is not the only case
PGD_STEPS = 10
DROP_FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9)
RADII: tuple[float, ...] = (1, 2, 4, 6, 8, 10, 14)  # cycles per image; 14 is the Nyquist limit of 28 pixels
EPS_GREY_LEVELS: tuple[float, ...] = (0, 1, 2, 4, 8, 16)  # L-inf budgets in 1/255 steps


@dataclass(frozen=True)
class Corruption:
    """A corruption at graded strengths.

    `apply(images, strength, generator)` maps uint8 images (B, H, W) to uint8 images of the same
    shape for image corruptions; for attacks (`attack=True`) it is
    `apply(model, images, labels, strength, generator)` and returns float pixels in [0, 1].
    """
    name: str                          # the id in CSV rows and menus
    title: str                         # for plot titles
    unit: str                          # what `strength` measures (an axis label)
    strengths: tuple[float, ...]       # the grid; strengths[0] leaves the images unchanged
    apply: Callable[..., torch.Tensor]
    lower_is_stronger: bool = False    # SNR and low-pass radius: a smaller value corrupts more
    random: bool = False               # draws from the generator
    attack: bool = False               # needs the model and the labels

    @property
    def clean(self) -> float:
        """The strength that leaves the images unchanged."""
        return self.strengths[0]


def _drop(images: torch.Tensor, strength: float, generator: torch.Generator, patch_size: int,
          mode: str) -> torch.Tensor:
    return patch_drop(images, float(strength), patch_size, mode, generator)


def _shuffle(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    return patch_shuffle(images, int(strength), generator)


def _noise(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    return images.clone() if math.isinf(strength) else gaussian_noise(images, float(strength), generator)


def _low(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    return low_pass(images, float(strength))


def _high(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    return high_pass(images, float(strength))


def _fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, strength: float,
          generator: torch.Generator) -> torch.Tensor:
    return fgsm(model, images, labels, strength / 255.0)


def _pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, strength: float,
         generator: torch.Generator) -> torch.Tensor:
    if strength == 0:  # no budget: the clean pixels (pgd's step size would be 0)
        return images.float() / 255.0
    return pgd(model, images, labels, strength / 255.0, steps=PGD_STEPS, generator=generator)


def _drops() -> list[Corruption]:
    out = []
    for mode, p in (("random", VIT_PATCH), ("random", OTHER_PATCH), ("centre", VIT_PATCH), ("border", VIT_PATCH)):
        out.append(Corruption(f"patch_drop_{mode}_{p}", f"Patch drop ({mode}, {p}x{p}-pixel patches)",
                              "fraction of patches dropped", DROP_FRACTIONS,
                              partial(_drop, patch_size=p, mode=mode), random=mode == "random"))
    return out


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    *_drops(),
    Corruption("patch_shuffle", "Patch shuffle", "pieces per side (g x g grid shuffled)", (1, 2, 4, 7),
               _shuffle, random=True),
    Corruption("gaussian_noise", "Gaussian noise", "signal-to-noise ratio (dB)",
               (math.inf, 40, 30, 20, 10, 5, 0), _noise, lower_is_stronger=True, random=True),
    Corruption("low_pass", "Low-pass filter (blur)", "frequencies kept: radius (cycles per image)",
               (math.inf, *sorted(RADII, reverse=True)), _low, lower_is_stronger=True),
    Corruption("high_pass", "High-pass filter (edges)", "frequencies removed: radius (cycles per image)",
               (0, *RADII), _high),
]}

ATTACKS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("fgsm", "FGSM (one step, L-inf)", "eps (grey levels of 255)", EPS_GREY_LEVELS, _fgsm, attack=True),
    Corruption("pgd", f"PGD ({PGD_STEPS} steps, L-inf)", "eps (grey levels of 255)", EPS_GREY_LEVELS, _pgd,
               random=True, attack=True),
]}

ALL: dict[str, Corruption] = {**CORRUPTIONS, **ATTACKS}


def get_corruption(name: str) -> Corruption:
    """The entry called `name` in `CORRUPTIONS` or `ATTACKS`."""
    if name not in ALL:
        raise ValueError(f"name must be one of {list(ALL)}, got {name!r}")
    return ALL[name]

