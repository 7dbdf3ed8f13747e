"""Argument checks the model configs and forwards share: each error names the argument, what was
expected and what was given."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch

C = TypeVar("C")


def check_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def int_tuple(name: str, value: Any, one_per: str = "") -> tuple[int, ...]:
    """A non-empty tuple of positive ints; with `one_per` (e.g. "stage") a single int is taken as
    a tuple of one."""
    if one_per and isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if (not isinstance(value, (tuple, list)) or not value
            or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value)):
        what = f" (one per {one_per})" if one_per else ""
        raise ValueError(f"{name} must be a non-empty list of positive ints{what}, got {value!r}")
    return tuple(value)


def check_image_batch(x: Any, in_channels: int | None = None, image_size: tuple[int, int] | None = None,
                      model: str = "this model") -> None:
    """`x` is a float (B, C, H, W) batch; with `in_channels` / `image_size`, of that shape."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float tensor of images (B, C, H, W), got {shape} "
                         "(convert uint8 images with x.float() / 255 and normalise them)")
    if in_channels is not None and image_size is not None and tuple(x.shape[1:]) != (in_channels, *image_size):
        raise ValueError(f"x has shape {tuple(x.shape)}, but {model} was built for images "
                         f"(B, {in_channels}, {image_size[0]}, {image_size[1]})")


def check_patch_geometry(image_size: tuple[int, int], patch_size: int, in_channels: int, dim: int) -> None:
    """Patches tile the image, and the channel and embedding widths are positive ints."""
    h, w = image_size
    if h % patch_size or w % patch_size:
        raise ValueError(f"image_size=({h}, {w}) must be divisible by patch_size={patch_size}")
    for name, v in (("in_channels", in_channels), ("dim", dim)):
        check_int(name, v)


def config_or_default(config: Any, cls: type[C]) -> C:
    """`config`, or `cls()` when it is None; anything else than a `cls` is an error."""
    if config is None:
        return cls()
    if not isinstance(config, cls):
        raise ValueError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    return config


def check_rate(name: str, value: Any) -> None:
    """A dropout-like rate: a float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def plain_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict (tuples as lists); `type(config)(**d)` rebuilds it."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
