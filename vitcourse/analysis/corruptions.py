"""Corrupted inputs for robustness experiments: patch drop and shuffle, noise, Fourier filters, attacks.

Every corruption but the attacks takes uint8 images (B, C, H, W) or (B, H, W), as stored in
`vitcourse.data`, and returns the same shape and dtype, so the result goes through
`prepare_images` like clean images. Random ones take a `torch.Generator`: the same seed gives the
same corruption (it is drawn on the CPU, then moved to the images' device).

The attacks (`fgsm`, `pgd`) are L-inf attacks in PIXEL space [0, 1]: `eps` is a fraction of the
pixel range (pass 8 / 255 for "8 grey levels"), the perturbation is applied to the pixels before
the model's normalisation, and they return float pixels in [0, 1] (not uint8), so the attack is
exactly what was computed. Feed them to the model with `pixels_to_input`. Rounding them back to
uint8, `(adv * 255).round().to(torch.uint8)`, keeps |delta|_inf <= eps when eps is a whole number
of grey levels (the clean pixels lie on the 1/255 grid, so rounding cannot cross eps), but it can
undo sub-level steps and so weakens PGD slightly.

Why the attacks are written here on `torch.autograd` and not taken from a library: torchattacks
(3.5.1, last released 2023) is on PyPI but not a dependency of the course, foolbox and the
Adversarial Robustness Toolbox are frameworks of their own (model wrappers, their own tensors),
and FGSM and PGD are a dozen readable lines each; a library would also need our normalisation
wrapped into the model, which `pixels_to_input` does anyway.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange, repeat

from .representations import eval_mode

DROP_MODES = ("random", "centre", "border")
BANDS = ("low", "high")


def _bchw(images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """uint8 (B, C, H, W) or (B, H, W) -> (B, C, H, W) and whether a channel axis was added."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor (B, C, H, W) or (B, H, W), got {got}")
    if images.dim() == 3:
        return images.unsqueeze(1), True  # (B, H, W) -> (B, 1, H, W)
    if images.dim() == 4:
        return images, False
    raise ValueError(f"images must be (B, C, H, W) or (B, H, W), got shape {tuple(images.shape)}")


def _to_uint8(x: torch.Tensor, squeezed: bool) -> torch.Tensor:
    """Float grey levels (B, C, H, W) in about [0, 255] -> uint8 of the caller's shape."""
    out = x.round().clamp(0, 255).to(torch.uint8)
    return out.squeeze(1) if squeezed else out


def _check_generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator (seeded for reproducible corruptions), "
                         f"got {type(generator).__name__}")
    return generator


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_divisor(name: str, value: object, size: tuple[int, int]) -> None:
    """`value` must be a positive int dividing both sides of the image."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if size[0] % value or size[1] % value:
        raise ValueError(f"{name}={value} must divide the image size {size}")


# ---------------------------------------------------------------- patches
def patch_drop_mask(batch: int, grid: tuple[int, int], fraction: float, mode: str = "random",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Which patches to drop: (batch, gh, gw) bool, True = dropped, round(fraction * gh * gw) per image.

    Args:
        batch: number of images.
        grid: (gh, gw) patches.
        fraction: share of the patches to drop, in [0, 1].
        mode: "random" (a new draw per image, needs `generator`), "centre" (the patches nearest
            the image centre) or "border" (the farthest). "border" ranks the patches in exactly
            the reverse order of "centre", so centre at fraction f and border at 1 - f are
            complementary whenever the two counts add up to all patches.
        generator: the random source for mode "random"; unused otherwise.
    """
    if mode not in DROP_MODES:
        raise ValueError(f"mode must be one of {DROP_MODES}, got {mode!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative int, got {batch!r}")
    if (not isinstance(grid, (tuple, list)) or len(grid) != 2
            or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid)):
        raise ValueError(f"grid must be (gh, gw) with positive ints, got {grid!r}")
    gh, gw = grid
    p = gh * gw
    k = int(round(_check_fraction("fraction", fraction) * p))
    if mode == "random":
        # argsort of uniform noise: a uniformly random ranking of the patches per image
        order = torch.rand(batch, p, generator=_check_generator(generator)).argsort(dim=1)  # (B, P)
    else:
        rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        dist = (rows - (gh - 1) / 2) ** 2 + (cols - (gw - 1) / 2) ** 2  # to the grid centre
        centre_first = torch.sort(dist.flatten(), stable=True).indices  # ties: row-major order
        order = (centre_first if mode == "centre" else centre_first.flip(0)).expand(batch, p)
    mask = torch.zeros(batch, p, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask.reshape(batch, gh, gw)


def patch_drop(images: torch.Tensor, fraction: float, patch_size: int, mode: str = "random",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Set round(fraction * patches) patches of each image to 0 (black, Fashion-MNIST's background).

    Args:
        images: uint8 (B, C, H, W) or (B, H, W); H and W multiples of `patch_size`.
        fraction, mode, generator: as in `patch_drop_mask`.
        patch_size: side of a square patch in pixels (the ViT's patch size to drop whole tokens).

    Returns:
        uint8 images of the input's shape.
    """
    x, squeezed = _bchw(images)
    b, _, h, w = x.shape
    _check_divisor("patch_size", patch_size, (h, w))
    mask = patch_drop_mask(b, (h // patch_size, w // patch_size), fraction, mode, generator)
    pixels = repeat(mask, "b gh gw -> b 1 (gh p1) (gw p2)", p1=patch_size, p2=patch_size)  # (B, 1, H, W)
    out = x.masked_fill(pixels.to(x.device), 0)
    return out.squeeze(1) if squeezed else out


def patch_shuffle(images: torch.Tensor, grid: int, generator: torch.Generator) -> torch.Tensor:
    """Cut each image into grid x grid pieces and put them back in a random order (one per image).

    Args:
        images: uint8 (B, C, H, W) or (B, H, W); H and W multiples of `grid`.
        grid: pieces per side; 1 returns the images unchanged.
        generator: the random source of the permutations.
    """
    x, squeezed = _bchw(images)
    b, _, h, w = x.shape
    _check_divisor("grid", grid, (h, w))
    pieces = rearrange(x, "b c (gh ph) (gw pw) -> b (gh gw) c ph pw", gh=grid, gw=grid)  # (B, P, C, ph, pw)
    perm = torch.rand(b, grid * grid, generator=_check_generator(generator)).argsort(dim=1).to(x.device)
    pieces = pieces[torch.arange(b, device=x.device)[:, None], perm]  # (B, P, C, ph, pw), permuted
    out = rearrange(pieces, "b (gh gw) c ph pw -> b c (gh ph) (gw pw)", gh=grid, gw=grid)
    return out.squeeze(1) if squeezed else out


# ---------------------------------------------------------------- noise
def gaussian_noise(images: torch.Tensor, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """Add white Gaussian noise at a signal-to-noise ratio of `snr_db` decibels, per image.

    SNR = 10 log10(mean(x²) / sigma²) with x the pixels in [0, 1]: the noise is scaled to each
    image's own power (an all-black image stays black). The result is clamped to [0, 255] and
    rounded, which removes some noise near black and white: at low SNR the realised SNR is higher.

    Args:
        images: uint8 (B, C, H, W) or (B, H, W).
        snr_db: signal-to-noise ratio in dB (20 dB: noise power 1% of the signal's).
        generator: the random source of the noise.
    """
    x, squeezed = _bchw(images)
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number, got {snr_db!r}")
    pixels = x.float() / 255.0  # (B, C, H, W) in [0, 1]
    power = pixels.pow(2).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    sigma = (power / 10 ** (snr_db / 10)).sqrt()
    noise = torch.randn(x.shape, generator=_check_generator(generator)).to(x.device)
    return _to_uint8((pixels + sigma * noise) * 255.0, squeezed)


# ---------------------------------------------------------------- Fourier filters
def frequency_radius(h: int, w: int) -> torch.Tensor:
    """(H, W) distance of each 2D FFT bin from zero frequency, in cycles per image (torch.fft layout)."""
    fy = torch.fft.fftfreq(h) * h  # (H,): 0, 1, ..., -1 cycles per image height
    fx = torch.fft.fftfreq(w) * w  # (W,)
    return (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()  # (H, W)


def band_filter(x: torch.Tensor, radius: float, band: str = "low") -> torch.Tensor:
    """Keep one band of the 2D spectrum of float images (..., H, W); no rounding or clamping.

    "low" keeps the frequencies with |f| <= radius (cycles per image). "high" keeps |f| > radius
    AND the zero frequency (each image's mean), so a high-passed image keeps its brightness
    instead of swinging around 0, where clamping to [0, 255] would cut its negative half away.
    Hence low + high = x + mean(x) exactly (the mean is in both).

    Args:
        x: float images (..., H, W), filtered over the last two axes.
        radius: cut-off in cycles per image, >= 0; at sqrt((H/2)² + (W/2)²) "low" keeps everything.
        band: "low" or "high".
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, got {band!r}")
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius >= 0:
        raise ValueError(f"radius must be a number >= 0 (cycles per image), got {radius!r}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ValueError(f"x must be a float tensor (..., H, W), got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    r = frequency_radius(x.shape[-2], x.shape[-1]).to(x.device)  # (H, W)
    keep = r <= radius if band == "low" else (r > radius) | (r == 0)
    spectrum = torch.fft.fft2(x) * keep  # (..., H, W) complex
    return torch.fft.ifft2(spectrum).real.to(x.dtype)


def low_pass(images: torch.Tensor, radius: float) -> torch.Tensor:
    """uint8 images (B, C, H, W) / (B, H, W) with only the frequencies |f| <= radius kept (a blur);
    rounded and clamped to [0, 255]. See `band_filter`."""
    x, squeezed = _bchw(images)
    return _to_uint8(band_filter(x.float(), radius, "low"), squeezed)


def high_pass(images: torch.Tensor, radius: float) -> torch.Tensor:
    """uint8 images (B, C, H, W) / (B, H, W) with only the frequencies |f| > radius kept, plus each
    image's mean so it stays visible (edges and texture on its average grey); rounded and clamped
    to [0, 255], which cuts what falls below black. See `band_filter`."""
    x, squeezed = _bchw(images)
    return _to_uint8(band_filter(x.float(), radius, "high"), squeezed)


# ---------------------------------------------------------------- adversarial attacks
def pixels_to_input(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1], (B, H, W) / (B, 1, H, W) -> model input (B, 1, S, S), differentiably.

    The same resize and standardisation as `prepare_images` does for uint8 images (`data.normalize`,
    whose in-place division would break the gradient to the pixels).
    """
    from ..data import MEAN, STD

    if not isinstance(pixels, torch.Tensor) or not pixels.is_floating_point() or pixels.dim() not in (3, 4):
        raise ValueError("pixels must be a float tensor (B, H, W) or (B, 1, H, W) in [0, 1], got "
                         f"{getattr(pixels, 'dtype', type(pixels).__name__)} {tuple(getattr(pixels, 'shape', ()))}")
    x = pixels.unsqueeze(1) if pixels.dim() == 3 else pixels  # (B, 1, H, W)
    size = getattr(getattr(model, "config", None), "image_size", None)
    if isinstance(size, int) and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - MEAN) / STD


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _attack_inputs(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float
                   ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Checked pixels (B, ...) in [0, 1] and labels (B,) on the model's device, and eps."""
    _bchw(images)
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor ({images.shape[0]},), one class per image, got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
    eps = _check_fraction("eps", eps)
    device = _device(model)
    return images.to(device).float() / 255.0, labels.to(device), eps


def _loss_gradient(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d(cross-entropy)/d(pixels), same shape as pixels."""
    pixels = pixels.detach().requires_grad_(True)
    with torch.enable_grad():
        # summed, not averaged: each image's gradient does not shrink with the batch size
        loss = F.cross_entropy(model(pixels_to_input(model, pixels)), labels, reduction="sum")
        # autograd.grad, not backward(): the model's parameters' .grad stay untouched
        (grad,) = torch.autograd.grad(loss, pixels)
    return grad


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one step of size eps up the loss.

    Args:
        model: a classifier of normalised images (run in eval mode; its mode is restored).
        images: uint8 (B, H, W) / (B, 1, H, W) clean images.
        labels: (B,) true classes.
        eps: L-inf budget as a fraction of the pixel range [0, 1] (8 / 255 = 8 grey levels).

    Returns:
        Float pixels in [0, 1] of the images' shape and device, with |adv - clean|_inf <= eps.
    """
    pixels, labels, eps = _attack_inputs(model, images, labels, eps)
    with eval_mode(model):
        grad = _loss_gradient(model, pixels, labels)
    return (pixels + eps * grad.sign()).clamp(0.0, 1.0).to(images.device)


def pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, generator: torch.Generator | None = None,
        random_start: bool = True) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018), L-inf: `steps` signed-gradient steps,
    each followed by projection onto the eps-box around the clean image and onto [0, 1].

    Args:
        model, images, labels, eps: as in `fgsm`.
        steps: number of gradient steps.
        step_size: per-step size in pixel units; None: 2.5 * eps / steps (Madry et al.'s choice,
            so the walk can reach the box's far side from a random start).
        generator: the random source of the start; needed when `random_start`.
        random_start: start at a uniform random point of the eps-box (as Madry et al.), not at
            the clean image.

    Returns:
        Float pixels in [0, 1] of the images' shape and device (the last iterate).
    """
    pixels, labels, eps = _attack_inputs(model, images, labels, eps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or step_size <= 0:
        raise ValueError(f"step_size must be a positive number (pixel units), got {step_size!r}")
    adv = pixels
    if random_start:
        noise = torch.rand(pixels.shape, generator=_check_generator(generator)).to(pixels.device)
        adv = (pixels + eps * (2 * noise - 1)).clamp(0.0, 1.0)
    with eval_mode(model):
        for _ in range(steps):
            adv = adv + step_size * _loss_gradient(model, adv, labels).sign()
            adv = torch.min(torch.max(adv, pixels - eps), pixels + eps).clamp(0.0, 1.0)  # project
    return adv.detach().to(images.device)
