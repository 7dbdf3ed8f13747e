"""``python -m vitcourse gpucheck`` (``make gpu-check``): what only a GPU can show, in one short run
(under 5 minutes on one GPU), written to ``data/results/gpu_check.json`` next to ``bench.json``:

1. `fit` on the device in **fp16 with a GradScaler** (what a Colab T4 runs) and in **bf16**, both
   with ``torch.compile`` on: the loss stays finite, the test accuracy after 2 epochs on a subset,
   images/s, and the scaler's final scale.
2. **Resume bit-exactness on the device**: a run interrupted mid-epoch and resumed from its
   checkpoint ends with the same weights as one never stopped (deterministic algorithms on, as
   the CPU tests do implicitly; compile off, since its kernels are chosen per run).
3. **Speed**: the bench's D2L comparison on the device (D2L's model as the book trains it against
   vitcourse's `d2l_vit` under `fit`), and the training images/s of the course's models, the
   small-data recipe's among them.

On a machine without CUDA ``--device cpu`` runs the same code path (fp32 and bf16, compile off
unless ``--compile``): that is what the test suite does.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..cli_args import CommandError, device_name, model_name, output_file, positive_int
from ..data import REPO_ROOT, FashionMNISTData, load_data
from ..models.registry import create_model
from ..settings import seed_everything

GPU_JSON = REPO_ROOT / "data" / "results" / "gpu_check.json"
SPEED_MODELS: tuple[str, ...] = ("vit_fmnist", "cct_fmnist", "vit_convstem_fmnist", "resnet_fmnist")


class StopAt(nn.Module):
    """Wraps a model; raises KeyboardInterrupt at its `at`-th training forward (as Ctrl-C would)."""

    def __init__(self, inner: nn.Module, at: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
        return self.inner(x)


def _subset(data: FashionMNISTData, train: int, test: int) -> FashionMNISTData:
    return FashionMNISTData(data.train_images[:train], data.train_labels[:train],
                            data.test_images[:test], data.test_labels[:test], data.classes)


def precision_run(data: FashionMNISTData, precision: str, device: str, compile_: bool, epochs: int = 2) -> dict:
    """`fit` of vit_fmnist in `precision`: finite loss, accuracy, speed, the scaler's last scale."""
    from ..training.loop import TrainConfig, fit

    seed_everything(0)
    config = TrainConfig(epochs=epochs, precision=precision, compile=compile_)
    start = time.perf_counter()
    result = fit(create_model("vit_fmnist"), data, config, device=device, progress=False)
    losses = [h["train_loss"] for h in result.history]
    return {"precision": precision, "compile": compile_, "epochs": epochs,
            "finite": all(map(lambda v: v == v and abs(v) != float("inf"), losses)),
            "train_loss": losses, "test_acc": result.test_accuracy, "images_per_s": result.images_per_s,
            "wall_s": time.perf_counter() - start}


def resume_run(data: FashionMNISTData, precision: str, device: str, folder: Path) -> dict:
    """Interrupt at step 11 of 2 epochs, resume, compare every weight with an uninterrupted run."""
    from ..training.loop import TrainConfig, fit

    deterministic = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
    torch.use_deterministic_algorithms(True)
    try:
        config = TrainConfig(epochs=2, batch_size=64, seed=3, crop_padding=2, precision=precision, compile=False)
        seed_everything(0)
        reference = StopAt(create_model("vit_fmnist", dropout=0.1), at=-1)
        fit(reference, data, config, device=device, progress=False)
        seed_everything(0)
        stopped = StopAt(create_model("vit_fmnist", dropout=0.1), at=11)
        first = fit(stopped, data, config, device=device, checkpoint_dir=folder, progress=False)
        seed_everything(99)  # another init: the resume has to load everything
        resumed = StopAt(create_model("vit_fmnist", dropout=0.1), at=-1)
        fit(resumed, data, config, device=device, checkpoint_dir=folder, resume=True, progress=False)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    a, b = reference.inner.state_dict(), resumed.inner.state_dict()
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    return {"precision": precision, "interrupted": first.interrupted, "bit_exact": diff == 0.0,
            "max_abs_weight_diff": diff}


def speeds(data: FashionMNISTData, device: str, steps: int, models: tuple[str, ...] = SPEED_MODELS) -> dict:
    """The bench's D2L comparison on `device`, and each model's training images/s."""
    from .bench import d2l_speed, vitcourse_speed
    from .compare import training_throughput

    out: dict[str, Any] = {}
    try:
        out["d2l_img_per_s"] = d2l_speed(data, steps, 128, device)
        out["vitcourse_d2l_img_per_s"] = vitcourse_speed(data, steps, 128, torch.device(device))
        out["speedup"] = out["vitcourse_d2l_img_per_s"] / out["d2l_img_per_s"]
    except ImportError as exc:  # d2l is not installed: say so in the JSON, measure the rest
        out["d2l_error"] = str(exc).splitlines()[0]
    out["train_img_per_s"] = {m: training_throughput(m, data.train_images, data.train_labels, device=device)
                              for m in models}
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_name, default=None, help="default: cuda if present, else cpu")
    parser.add_argument("--train-size", type=positive_int, default=10_000, help="images of the precision runs")
    parser.add_argument("--steps", type=positive_int, default=30, help="timed steps of the D2L comparison")
    parser.add_argument("--compile", action="store_true", help="torch.compile on a CPU too (always on CUDA)")
    parser.add_argument("--models", nargs="+", type=model_name, default=list(SPEED_MODELS),
                        help="models whose training images/s are measured")
    parser.add_argument("--json", type=output_file, default=GPU_JSON, help="where the figures go")


def main(args: argparse.Namespace) -> int:
    import tempfile

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {device}: CUDA is not available on this machine")
    on_gpu = device.startswith("cuda")
    start = time.perf_counter()
    data = load_data(fast=False)
    small = _subset(data, args.train_size, 2_000)
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu", "torch": torch.__version__,
        "cuda": torch.version.cuda, "bf16_supported": bool(on_gpu and torch.cuda.is_bf16_supported()),
    }
    compile_ = on_gpu or args.compile
    out["precision_runs"] = [precision_run(small, p, device, compile_) for p in (("fp16", "bf16") if on_gpu
                                                                                  else ("fp32", "bf16"))]
    with tempfile.TemporaryDirectory() as folder:
        out["resume"] = resume_run(_subset(data, 512, 256), "fp16" if on_gpu else "fp32", device, Path(folder))
    out["speed"] = speeds(data, device, args.steps, tuple(args.models))
    out["ok"] = all(r["finite"] for r in out["precision_runs"]) and out["resume"]["bit_exact"]
    out["wall_s"] = time.perf_counter() - start
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    for r in out["precision_runs"]:
        print(f"fit {r['precision']:4s} compile={r['compile']}: loss {r['train_loss'][-1]:.3f}, test acc "
              f"{r['test_acc']:.3f}, {r['images_per_s']:,.0f} img/s, finite={r['finite']}")
    print(f"resume bit-exact on {device}: {out['resume']['bit_exact']} "
          f"(max |weight difference| {out['resume']['max_abs_weight_diff']:.1e})")
    sp = out["speed"]
    if "speedup" in sp:
        print(f"D2L {sp['d2l_img_per_s']:,.0f} img/s, vitcourse {sp['vitcourse_d2l_img_per_s']:,.0f} img/s: "
              f"{sp['speedup']:.2f}x")
    for m, v in sp["train_img_per_s"].items():
        print(f"  {m:22s} {v:10,.0f} training img/s")
    print(f"wrote {args.json} ({out['wall_s']:.0f} s); all checks {'passed' if out['ok'] else 'FAILED'}")
    return 0 if out["ok"] else 1
