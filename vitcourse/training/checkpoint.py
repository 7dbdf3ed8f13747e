"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing pickled that
could run code when loaded). It names the model's class and config so `load_model` can rebuild
the model without the code that trained it.

Atomic writes: the file is written to a temporary name in the same folder and then renamed over
the old one (`os.replace` is atomic on POSIX and Windows), so a run killed mid-write leaves the
previous checkpoint intact, never half a file.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, NamedTuple

import torch
import torch.nn as nn

from ..data import REPO_ROOT

PRETRAINED_DIR = REPO_ROOT / "data" / "checkpoints"


class HowToMake(NamedTuple):
    """How a shipped checkpoint is produced: the command, and how long it takes on an idle 2-core CPU."""
    command: str
    duration: str

    def __str__(self) -> str:
        return f"`{self.command}` in the repository root ({self.duration} on an idle 2-core CPU)"


# name -> how to produce it (named in the error when the file is missing)
PRETRAINED: dict[str, HowToMake] = {
    "vit_fmnist": HowToMake("make checkpoint", "15-20 minutes"),
    "resnet_fmnist": HowToMake("make resnet-checkpoint", "15-20 minutes"),
    # chapter 13's best ViT: the regularised 60-minute run of the small-data ablation's long part
    "vit_convstem_s_fmnist": HowToMake("make best-checkpoint", "about 65 minutes"),
    # chapter 06's model: 49 patch tokens and a class token, so its attention can be read
    "vit_fmnist_p4_cls": HowToMake("make attention-checkpoint", "about 17 minutes"),
    # chapter 14's masked autoencoder (encoder + decoder), pre-trained without labels
    "mae_fmnist": HowToMake("make pretrain", "about 20 minutes"),
}


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], text: bool = False) -> Path:
    """Call `write(f)` on a temporary file in `path`'s folder, then rename it to `path`: readers
    see the old file or the new one, never half of one. `text` opens it as UTF-8 text (newline="",
    as the csv module wants) instead of bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp makes it private (0600); these are ordinary files
    try:
        with (os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `state` to `path` atomically (temporary file in the same folder, then rename)."""
    return atomic_write(path, lambda f: torch.save(state, f))


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint: damaged, truncated, of another kind, or holding
    more than tensors and plain containers."""


def _why_unreadable(exc: BaseException) -> str:
    """torch.load's reason in a few words (its messages run to several paragraphs)."""
    text = str(exc)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n\n|$)", text, re.DOTALL)
    reason = found.group(1) if found else text.split(". ")[0]
    return f"{type(exc).__name__}: {' '.join(reason.split()) or 'end of file'}"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (tensors and plain containers only).

    Raises:
        FileNotFoundError: there is no file at `path`.
        CheckpointError: the file is damaged, truncated or not a checkpoint (including one that
            holds other objects, which weights_only loading refuses to rebuild).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    # Damaged bytes can fail anywhere in torch.load: UnpicklingError, RuntimeError (zip), OSError,
    # EOFError, and from its unpickler on random bytes IndexError, UnicodeDecodeError... The call
    # only reads the file, so whatever it raises says the file is not a checkpoint.
    except Exception as exc:
        raise CheckpointError(f"{path} could not be read as a checkpoint: it is damaged or "
                              f"truncated, or not a vitcourse checkpoint ({_why_unreadable(exc)})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a vitcourse checkpoint "
                              "(a dict of tensors and plain values)")
    return state


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside `torch.compile` and `DistributedDataParallel` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def model_spec(model: nn.Module) -> dict[str, Any] | None:
    """How to rebuild `model`: its class and its dataclass config, or None if it has no config."""
    model = unwrap(model)
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return None
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config_class": f"{type(config).__module__}.{type(config).__qualname__}",
        "config": dataclasses.asdict(config),
    }


# Where vitcourse 0.1's model modules went in 0.2, so checkpoints saved before the package got its
# folders (the shipped vit_fmnist.pt among them) still name an importable class. This maps file
# contents, not import paths: nothing imports the old names.
MOVED_MODULES: dict[str, str] = {
    "vitcourse.vit": "vitcourse.models.vit",
    "vitcourse.t2t": "vitcourse.models.t2t",
    "vitcourse.swin": "vitcourse.models.swin",
    "vitcourse.cnn": "vitcourse.models.cnn",
}


def _moved(qualified: str) -> str:
    module_name, _, attr = qualified.rpartition(".")
    return f"{MOVED_MODULES.get(module_name, module_name)}.{attr}"


def upgrade_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored `model_spec` with 0.1's class paths renamed to today's (a copy; others unchanged)."""
    return {**spec, "class": _moved(spec["class"]), "config_class": _moved(spec["config_class"])}


def _import(qualified: str) -> Any:
    module_name, _, attr = qualified.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild an (untrained) model from `model_spec`'s output (0.1's class paths included)."""
    spec = upgrade_spec(spec)
    config_cls = _import(spec["config_class"])
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["config"].items()}
    return _import(spec["class"])(config_cls(**config))


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model stored in a checkpoint written by `fit` or `export_model`, in eval mode."""
    state = load_checkpoint(path, map_location)
    spec = state.get("model_spec")
    if spec is None:
        raise ValueError(f"checkpoint {path} does not say how to build its model (the model had no "
                         "dataclass `.config`); build the model yourself and call "
                         "model.load_state_dict(load_checkpoint(path)['model'])")
    model = build_from_spec(spec)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state["model"].items()})
    return model.to(map_location).eval()


def export_model(model: nn.Module, path: str | os.PathLike, card: dict[str, Any] | None = None,
                 dtype: torch.dtype = torch.float32) -> Path:
    """Write just the weights (in `dtype`) and the model spec: what ships in ``data/checkpoints``."""
    spec = model_spec(model)
    if spec is None:
        raise ValueError("model must have a dataclass `.config` so the checkpoint can rebuild it")
    weights = {k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()
               for k, v in unwrap(model).state_dict().items()}
    card = json.loads(json.dumps(card or {}))  # plain types only, or weights_only loading refuses it
    return save_checkpoint({"format": "vitcourse-model/1", "model_spec": spec, "model": weights,
                            "card": card}, path)


def load_pretrained(name: str = "vit_fmnist", map_location: str | torch.device = "cpu") -> nn.Module:
    """A trained model shipped in ``data/checkpoints/NAME.pt``, in eval mode."""
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    path = PRETRAINED_DIR / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the trained checkpoint {path} is missing; produce it with {PRETRAINED[name]}")
    return load_model(path, map_location)
