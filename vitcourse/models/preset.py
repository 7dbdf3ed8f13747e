"""`preset_builder`: the lowercase builder every family's presets are made with (`vit_b_16(...)`,
`swin_t(...)`), so each family module lists its presets as data and `create_model` finds them."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

import torch.nn as nn

M = TypeVar("M", bound=nn.Module)


def preset_builder(model_cls: Callable[[Any], M], config_cls: type, name: str, doc: str,
                   **defaults: Any) -> Callable[..., M]:
    """A function `name(**overrides)` that builds `model_cls(config_cls(**{**defaults, **overrides}))`.

    An override that is not a field of `config_cls` is a ValueError that lists the known fields
    (a dataclass would say only "unexpected keyword argument"). `build.defaults` keeps the preset's
    own values, for tables and tests.
    """
    fields = [f.name for f in dataclasses.fields(config_cls)]

    def build(**overrides: Any) -> M:
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"unknown {config_cls.__name__} field(s) {unknown} for preset {name!r}; "
                             f"known fields: {', '.join(fields)}")
        return model_cls(config_cls(**{**defaults, **overrides}))

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{doc}\n\nKeyword arguments override {config_cls.__name__} fields."
    build.defaults = dict(defaults)  # type: ignore[attr-defined]
    return build
