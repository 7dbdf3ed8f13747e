"""A shipped model: its weights (fp32) in ``data/checkpoints/NAME.pt`` and its JSON card beside it.

The card says what was run and on what: the command that reproduces it, seed, commit, the
TrainConfig, the teacher (if any), the per-epoch history, the wall time, and the test accuracy
re-measured in fp32 without augmentation. `python -m vitcourse train --export` and chapter 13's
budgeted long run (`vitcourse.experiments.small_data`) both ship a model through `ship`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..data import FashionMNISTData
from .provenance import git_commit, hardware_info
from .checkpoint import atomic_write, export_model
from .config import TrainConfig
from .loop import evaluate


def ship(model: nn.Module, path: str | os.PathLike, *, name: str, command: str, config: TrainConfig,
         data: FashionMNISTData, history: list[dict[str, Any]], wall_time_s: float, images_per_s: float,
         teacher: str = "", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `model`'s weights to `path` and its card to `path` with ``.json``; returns the card.

    The card's ``test_accuracy`` is measured here (fp32, the whole test split of `data`), not
    copied from the history, whose last epoch was measured in the training precision."""
    path = Path(path)
    device = next(model.parameters()).device
    measured = evaluate(model, data.test_images, data.test_labels)  # fp32, no augmentation
    card: dict[str, Any] = {
        "model": name, "command": command, "seed": config.seed, "commit": git_commit(),
        "epochs": len(history), "test_accuracy": measured["accuracy"], "test_loss": measured["loss"],
        "test_images": len(data.test_labels), "train_images": len(data.train_labels),
        "wall_time_s": round(wall_time_s, 1), "images_per_s": round(images_per_s, 1),
        "hardware": hardware_info(device), "config": dataclasses.asdict(config),
        **({"teacher": teacher} if teacher else {}), **(extra or {}),
        "history": history, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    export_model(model, path, card=card)
    atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(card, indent=1) + "\n"), text=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {path.with_suffix('.json')}: "
          f"test accuracy {100 * measured['accuracy']:.2f}% on {len(data.test_labels)} images")
    return card
