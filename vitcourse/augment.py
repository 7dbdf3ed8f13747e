"""Batched training-time augmentations: TrivialAugment, Random Erasing, Mixup and CutMix.

Every function takes a batch that already lives on its device, normalised as
``(pixel01 - mean) / std`` (what ``TensorLoader`` hands out), and one CPU ``torch.Generator``.
As in ``data.random_crop``, all random numbers are drawn from that generator on the CPU and only
then moved to the device: a run is reproducible and resumable bit for bit, and the global torch and
numpy RNGs are never touched.

mean and std are keyword arguments rather than imported from ``vitcourse.data``, because data.py
imports this module.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

TRIVIAL_OPS: tuple[str, ...] = (
    "identity", "brightness", "contrast", "sharpness", "autocontrast", "posterize", "solarize",
    "rotate", "shear_x", "shear_y", "translate_x", "translate_y",
)
# Left out of torchvision's TrivialAugmentWide list:
# - "color" (saturation): does nothing to a one-channel image.
# - "equalize": about half of a Fashion-MNIST image is black background, so one histogram bin holds
#   half the pixels and the per-image equalisation spreads the item's few remaining grey levels over
#   the whole range; that mostly turns faint fabric texture and scan noise into hard contrast.

# (value at the first bin, value at the last bin) in apply_op's units, chosen for 28 x 28 items.
# TrivialAugmentWide's ranges were tuned for 32 x 32 and larger colour photos; where they wreck a
# 28 x 28 grey item we use RandAugment's smaller range (torchvision's RandAugment space) instead.
TRIVIAL_MAGNITUDES: dict[str, tuple[float, float]] = {
    "identity": (0.0, 0.0),
    # factor 1 +- m. Wide goes to 0.99: brightness factor 0.01 leaves a black square, no item.
    "brightness": (0.0, 0.9),
    "contrast": (0.0, 0.9),
    "sharpness": (0.0, 0.9),
    "autocontrast": (0.0, 0.0),
    # Bits kept, 8 (no-op) down to 4 as in RandAugment; Wide's 2 bits leaves 4 grey levels.
    "posterize": (8.0, 4.0),
    # Pixels brighter than the threshold are inverted: 1.0 is a no-op, 0.0 inverts the whole item.
    "solarize": (1.0, 0.0),
    # Degrees. Wide's 135 turns a boot upside down, and no test image is rotated.
    "rotate": (0.0, 30.0),
    # Shear factor. Wide's 0.99 (45 degrees) pushes a centred 20-px item out through the border.
    "shear_x": (0.0, 0.3),
    "shear_y": (0.0, 0.3),
    # Fraction of the side: 4 px at 28 x 28. Wide translates up to 32 px, more than the whole image.
    "translate_x": (0.0, 4 / 28),
    "translate_y": (0.0, 4 / 28),
}
# Ops whose magnitude gets a random sign (a darker as well as a brighter image, both rotations).
SIGNED_OPS: frozenset[str] = frozenset({
    "brightness", "contrast", "sharpness", "rotate", "shear_x", "shear_y",
    "translate_x", "translate_y",
})
GEOMETRIC_OPS: frozenset[str] = frozenset({
    "rotate", "shear_x", "shear_y", "translate_x", "translate_y",
})


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float batch (B, C, H, W), got {tuple(x.shape)} {x.dtype}")


def _check_name(name: str) -> None:
    if name not in TRIVIAL_OPS:
        raise ValueError(f"name must be one of {TRIVIAL_OPS}, got {name!r}")


def _per_sample(m: torch.Tensor) -> torch.Tensor:
    return m[:, None, None, None]  # (B,) -> (B, 1, 1, 1), broadcasts over (C, H, W)


def _pixel_op(x01: torch.Tensor, name: str, m: torch.Tensor) -> torch.Tensor:
    """One pixel op with per-sample magnitudes. x01: (B, C, H, W) in [0, 1]; m: (B,) on x's device.
    Written as ``x + m * (x - degenerate)`` so that magnitude 0 returns x exactly."""
    if name == "identity":
        return x01
    if name == "brightness":  # blend with black: factor * x
        out = x01 + _per_sample(m) * x01
    elif name == "contrast":  # blend with the image's mean grey, as torchvision does
        mean = x01.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        out = x01 + _per_sample(m) * (x01 - mean)
    elif name == "sharpness":  # blend with a smoothed copy; the border keeps its pixels (PIL, torchvision)
        out = x01 + _per_sample(m) * (x01 - _smooth(x01))
    elif name == "autocontrast":  # stretch each image's [min, max] to [0, 1]
        lo = x01.amin(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        hi = x01.amax(dim=(1, 2, 3), keepdim=True)
        flat = hi <= lo  # a constant image has no range to stretch
        out = torch.where(flat, x01, (x01 - lo) / torch.where(flat, torch.ones_like(hi), hi - lo))
    elif name == "posterize":  # keep the top `bits` bits of the 8-bit pixel value
        bits = m.round().clamp(1, 8).to(torch.int32)
        shift = _per_sample(8 - bits)
        q = (x01.clamp(0, 1) * 255).round().to(torch.int32)
        q = (q >> shift) << shift
        # 8 bits returns x itself: real-valued inputs (after resizing, say) are not re-quantised.
        out = torch.where(_per_sample(bits >= 8), x01, q.to(x01.dtype) / 255)
    elif name == "solarize":
        # Strictly brighter than the threshold, so that 1.0 is a no-op (torchvision's >= inverts
        # pure white at 1.0); 0.0 inverts every non-black pixel and leaves the background black.
        out = torch.where(x01 > _per_sample(m), 1 - x01, x01)
    else:
        raise ValueError(f"name must be a pixel op, got {name!r}")
    return out.clamp(0, 1)


def _smooth(x01: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (3x3, centre weight 5) inside, the original pixels on the border."""
    b, c, h, w = x01.shape
    if h < 3 or w < 3:
        return x01
    kernel = x01.new_tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13
    kernel = kernel.expand(c, 1, 3, 3)  # one filter per channel
    inner = F.conv2d(x01, kernel, groups=c)  # (B, C, H-2, W-2)
    out = x01.clone()
    out[:, :, 1:-1, 1:-1] = inner
    return out


def _inverse_maps(name: str, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output-to-input maps in pixel units about the image centre, y pointing down.
    m: (N,) float64 magnitudes. Returns A (N, 2, 2) and t (N, 2): input = A @ output + t."""
    n = m.shape[0]
    a = torch.eye(2, dtype=torch.float64).repeat(n, 1, 1)  # (N, 2, 2)
    t = torch.zeros(n, 2, dtype=torch.float64)  # (N, 2) as (x, y)
    if name == "rotate":  # counter-clockwise on screen for positive degrees, as torchvision
        rad = m * math.pi / 180
        cos, sin = torch.cos(rad), torch.sin(rad)
        a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], 1)
    elif name == "shear_x":  # x_in = x + m * y
        a[:, 0, 1] = m
    elif name == "shear_y":  # y_in = y + m * x
        a[:, 1, 0] = m
    elif name == "translate_x":  # output(x) = input(x - m): positive moves the item right
        t[:, 0] = -m
    elif name == "translate_y":  # positive moves the item down
        t[:, 1] = -m
    else:
        raise ValueError(f"name must be a geometric op, got {name!r}")
    return a, t


def _warp(x01: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Resample each image with its pixel-unit map (A, t); outside the image is black (0).
    align_corners=False: pixel centres then sit at (2i + 1) / W - 1, so a whole-pixel translation
    lands exactly on pixel centres and the identity map returns the input."""
    b, c, h, w = x01.shape
    # affine_grid works in normalised units: W / 2 pixels per unit along x, H / 2 along y.
    s = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    a_norm = a * s[None, None, :] / s[None, :, None]  # S^-1 A S, (B, 2, 2)
    t_norm = t / s[None, :]  # S^-1 t, (B, 2)
    theta = torch.cat([a_norm, t_norm[:, :, None]], dim=2)  # (B, 2, 3)
    theta = theta.to(device=x01.device, dtype=x01.dtype)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def apply_op(x01: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """Apply one named op with one signed magnitude to every image of a batch in [0, 1].

    Units of `magnitude`: brightness / contrast / sharpness: factor - 1 (0 = unchanged);
    posterize: bits kept (8 = unchanged); solarize: threshold (pixels above it are inverted;
    1 = unchanged); rotate: degrees, counter-clockwise; shear_x / shear_y: shear factor;
    translate_x / translate_y: pixels, right / down. identity and autocontrast ignore it.

    Args:
        x01: (B, C, H, W) float in [0, 1].
        name: one of TRIVIAL_OPS.
        magnitude: the op's strength, in the units above.
    Returns:
        (B, C, H, W), same dtype and device, in [0, 1].
    """
    _check_name(name)
    _check_images(x01)
    b = x01.shape[0]
    if name in GEOMETRIC_OPS:
        a, t = _inverse_maps(name, torch.full((b,), float(magnitude), dtype=torch.float64))
        return _warp(x01, a, t)
    return _pixel_op(x01, name, torch.full((b,), float(magnitude), dtype=x01.dtype,
                                           device=x01.device))


def sample_trivial_ops(batch_size: int, height: int, width: int, generator: torch.Generator, *,
                       num_magnitude_bins: int = 31) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw TrivialAugment's op and signed magnitude for each image (CPU tensors).

    Always draws the same amount from `generator` for a given batch size, whatever comes out, so
    the generator's state after a batch does not depend on the images.

    Args:
        batch_size: images in the batch.
        height, width: image size; translations are a fraction of it.
        generator: the only source of randomness.
        num_magnitude_bins: magnitudes are evenly spaced over each op's range in this many bins.
    Returns:
        op_index (B,) int64 into TRIVIAL_OPS, magnitude (B,) float64 in apply_op's units.
    """
    if num_magnitude_bins < 2:
        raise ValueError(f"num_magnitude_bins must be >= 2, got {num_magnitude_bins}")
    op_index = torch.randint(0, len(TRIVIAL_OPS), (batch_size,), generator=generator)
    bins = torch.randint(0, num_magnitude_bins, (batch_size,), generator=generator)
    negative = torch.randint(0, 2, (batch_size,), generator=generator).bool()
    ranges = torch.tensor([TRIVIAL_MAGNITUDES[n] for n in TRIVIAL_OPS], dtype=torch.float64)
    lo, hi = ranges[op_index, 0], ranges[op_index, 1]  # (B,) each
    magnitude = lo + (hi - lo) * bins.double() / (num_magnitude_bins - 1)
    for k, name in enumerate(TRIVIAL_OPS):
        sel = op_index == k
        if name == "posterize":
            magnitude[sel] = magnitude[sel].round()  # whole bits
        elif name == "translate_x":
            magnitude[sel] *= width  # fraction of the side -> pixels
        elif name == "translate_y":
            magnitude[sel] *= height
    signed = torch.tensor([n in SIGNED_OPS for n in TRIVIAL_OPS])[op_index]  # (B,)
    magnitude = torch.where(signed & negative, -magnitude, magnitude)
    return op_index, magnitude


def trivial_augment(x: torch.Tensor, generator: torch.Generator, *, mean: float, std: float,
                    num_magnitude_bins: int = 31) -> torch.Tensor:
    """TrivialAugment (Mueller & Hutter, ICCV 2021): one random op at a random strength per image.

    All geometric ops of the batch are one affine_grid + grid_sample call with per-sample 2x3
    matrices; each pixel op runs once on the images that drew it.

    Args:
        x: (B, C, H, W) float, normalised as (pixel01 - mean) / std.
        generator: CPU generator, the only source of randomness.
        mean, std: the normalisation constants of x.
        num_magnitude_bins: magnitude bins per op (31 as in the paper).
    Returns:
        (B, C, H, W), same dtype and device, normalised the same way.
    """
    _check_images(x)
    if std <= 0:
        raise ValueError(f"std must be > 0, got {std}")
    b, c, h, w = x.shape
    op_index, magnitude = sample_trivial_ops(b, h, w, generator,
                                             num_magnitude_bins=num_magnitude_bins)
    # Work in float32 [0, 1]: the ops' ranges and the black fill are defined there, and
    # grid_sample has no half-precision CPU kernel.
    x01 = (x.float() * std + mean).clamp(0, 1)

    # Geometric ops: one warp for the batch; samples with another op get the identity map.
    a = torch.eye(2, dtype=torch.float64).repeat(b, 1, 1)  # (B, 2, 2)
    t = torch.zeros(b, 2, dtype=torch.float64)  # (B, 2)
    geometric = torch.zeros(b, dtype=torch.bool)
    for k, name in enumerate(TRIVIAL_OPS):
        sel = op_index == k
        if name in GEOMETRIC_OPS and sel.any():
            a[sel], t[sel] = _inverse_maps(name, magnitude[sel])
            geometric |= sel
    if geometric.any():  # known on the CPU: no device sync
        warped = _warp(x01, a, t)
        # Keep the others exactly: bilinear sampling at pixel centres is only identity to ~1e-7.
        x01 = torch.where(_per_sample(geometric.to(x.device)), warped, x01)

    # Pixel ops on the subset that drew each; CPU indices, so no boolean-mask sync on a GPU.
    mag_dev = magnitude.to(device=x.device, dtype=x01.dtype)
    for k, name in enumerate(TRIVIAL_OPS):
        if name in GEOMETRIC_OPS or name == "identity":
            continue
        idx = (op_index == k).nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            continue
        idx = idx.to(x.device)
        x01[idx] = _pixel_op(x01[idx], name, mag_dev[idx])

    out = ((x01.clamp(0, 1) - mean) / std).to(x.dtype)
    # Identity images come back as they went in, without the round trip's rounding.
    identity = _per_sample((op_index == TRIVIAL_OPS.index("identity")).to(x.device))
    return torch.where(identity, x, out)


def _check_pair(name: str, pair: tuple[float, float], upper: float | None = None) -> None:
    lo, hi = pair
    if not (0 < lo <= hi) or (upper is not None and hi > upper):
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be an ordered pair 0 < low <= high{bound}, got {pair}")


def random_erasing(x: torch.Tensor, p: float, generator: torch.Generator, *,
                   scale: tuple[float, float] = (0.02, 0.33),
                   ratio: tuple[float, float] = (0.3, 3.3), value: float = 0.0) -> torch.Tensor:
    """Random Erasing (Zhong et al., AAAI 2020): with probability p, one rectangle per image is set
    to `value`. On normalised images 0 is the data mean, torchvision's default.

    The rectangle's area fraction is uniform in `scale`, its aspect ratio (height / width)
    log-uniform in `ratio`; sides are rounded down and clipped into the image (torchvision
    retries instead, a loop that does not batch), so the erased fraction is at most scale[1].

    Args:
        x: (B, C, H, W) float.
        p: probability that an image gets a rectangle.
        generator: CPU generator, the only source of randomness.
        scale: (min, max) area fraction of the rectangle.
        ratio: (min, max) aspect ratio height / width.
        value: what the rectangle is filled with.
    Returns:
        (B, C, H, W), same dtype and device.
    """
    _check_images(x)
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    _check_pair("scale", scale, upper=1.0)
    _check_pair("ratio", ratio)
    if p == 0:
        return x
    b, c, h, w = x.shape
    u = torch.rand(b, 5, generator=generator, dtype=torch.float64)  # (B, 5): one column per draw
    erase = u[:, 0] < p
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 1]) * h * w  # pixels
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 2])
    eh = torch.sqrt(area * aspect).floor().clamp(1, h).long()  # (B,)
    ew = torch.sqrt(area / aspect).floor().clamp(1, w).long()
    top = (u[:, 3] * (h - eh + 1)).floor().long()  # in [0, H - eh]
    left = (u[:, 4] * (w - ew + 1)).floor().long()
    top, left, eh, ew, erase = (v.to(x.device) for v in (top, left, eh, ew, erase))
    rows = torch.arange(h, device=x.device)[None]  # (1, H)
    cols = torch.arange(w, device=x.device)[None]  # (1, W)
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (B, W)
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :] & _per_sample(erase)  # (B, 1, H, W)
    return torch.where(mask, x.new_tensor(value), x)


def _sample_beta(alpha: float, generator: torch.Generator) -> float:
    """One Beta(alpha, alpha) draw that depends only on `generator`.

    torch.distributions.Beta draws from the global RNG and takes no generator, so we draw one
    integer seed from `generator` and let numpy's exact Beta sampler use it in a private
    Generator; the global numpy state is untouched, and the torch generator advances by one draw."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, generator: torch.Generator, *,
              mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
              switch_prob: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al., 2018) or CutMix (Yun et al., 2019) for a whole batch, as DeiT / timm do.

    One lam ~ Beta(alpha, alpha) per batch; image i is mixed with image B-1-i (``x.flip(0)``), so no
    permutation has to be drawn. With both alphas > 0, CutMix is chosen with probability
    switch_prob, otherwise Mixup. CutMix pastes one box of area fraction 1 - lam, centred at a
    uniform random pixel and clipped to the image, and then sets lam to the area actually kept.

    Args:
        x: (B, C, H, W) float.
        y: (B,) integer class labels in [0, num_classes).
        num_classes: width of the targets.
        generator: CPU generator, the only source of randomness.
        mixup_alpha: Beta parameter for Mixup; 0 = off.
        cutmix_alpha: Beta parameter for CutMix; 0 = off.
        switch_prob: probability of CutMix when both are on.
    Returns:
        mixed x (B, C, H, W), same dtype and device; soft targets (B, num_classes) float32,
        lam * one_hot(y) + (1 - lam) * one_hot(y.flip(0)).
    """
    _check_images(x)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, "
                         f"got mixup_alpha={mixup_alpha}, cutmix_alpha={cutmix_alpha}")
    if not 0 <= switch_prob <= 1:
        raise ValueError(f"switch_prob must be in [0, 1], got {switch_prob}")
    b, c, h, w = x.shape
    if y.shape != (b,) or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y must be integer labels of shape ({b},), got {tuple(y.shape)} {y.dtype}")
    if b > 0 and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"y must lie in [0, {num_classes}), "
                         f"got values in [{int(y.min())}, {int(y.max())}]")
    one_hot = F.one_hot(y.long(), num_classes).float()  # (B, num_classes)
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return x, one_hot

    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = bool(torch.rand(1, generator=generator) < switch_prob)
    else:
        use_cutmix = cutmix_alpha > 0
    lam = _sample_beta(cutmix_alpha if use_cutmix else mixup_alpha, generator)
    partner = x.flip(0)
    if use_cutmix:
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy = int(torch.randint(0, h, (1,), generator=generator))
        cx = int(torch.randint(0, w, (1,), generator=generator))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy - cut_h // 2 + cut_h, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx - cut_w // 2 + cut_w, w)
        mixed = x.clone()
        mixed[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the box may have been clipped or rounded
    else:
        mixed = lam * x + (1 - lam) * partner
    targets = lam * one_hot + (1 - lam) * one_hot.flip(0)  # (B, num_classes)
    return mixed, targets
