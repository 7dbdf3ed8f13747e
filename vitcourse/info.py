"""Environment check for chapter 00 and ``python -m vitcourse info``: what is installed, which
device will be used, whether the data is found, and how fast this machine trains."""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass, field

import torch

from .settings import get_device, in_colab, is_fast, supports_bf16


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def __str__(self) -> str:
        lines = []
        for c in self.checks:
            lines.append(f"[{'ok' if c.ok else 'FIX'}] {c.name}: {c.detail}")
            if not c.ok and c.fix:
                lines.append(f"      -> {c.fix}")
        return "\n".join(lines)


def _version(module_name: str) -> str | None:
    try:
        module = __import__(module_name)
    except Exception:
        return None
    return getattr(module, "__version__", "installed")


MINIMUM = {"torch": (2, 1), "torchvision": (0, 16), "matplotlib": (3, 7), "ipywidgets": (8, 0),
           "einops": (0, 7), "tqdm": (4, 66), "numpy": (1, 24)}


OPTIONAL = [
    ("timm", "chapter 04 compares with it", "`make setup` installs it, or `pip install timm`"),
    ("d2l", "chapter 05 and the benchmark compare with it",
     "`make setup` installs it, or `pip install --no-deps d2l==1.0.3` (its exact pins would "
     "replace numpy and matplotlib)"),
]


def _at_least(version: str, floor: tuple[int, int]) -> bool:
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= floor


def environment_report() -> Report:
    """Versions, device, bf16 support and data location, each with what to fix if it is off."""
    report = Report()
    py_ok = (3, 10) <= sys.version_info[:2] <= (3, 13)
    report.checks.append(Check("python", py_ok, platform.python_version(),
                               "use Python 3.10 to 3.13 (the range the course is tested on)"))
    for name, floor in MINIMUM.items():
        v = _version(name)
        ok = v is not None and _at_least(v, floor)
        report.checks.append(Check(name, ok, v or "missing",
                                   f"run `make lab` (or `pip install -e .`) to get {name}>="
                                   f"{'.'.join(map(str, floor))}"))
    # Needed by single chapters only: say which, so a missing one is not a surprise later.
    for name, where, fix in OPTIONAL:
        v = _version(name)
        report.checks.append(Check(name, v is not None, f"{v} ({where})" if v else f"missing ({where})", fix))
    device = get_device()
    where = "Colab" if in_colab() else platform.node() or "this machine"
    detail = f"{device} on {where}"
    if device.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(device)})"
    report.checks.append(Check("device", True, detail))
    report.checks.append(Check("bf16", True,
                               "supported: training uses bf16 autocast" if supports_bf16(device)
                               else "not supported: training uses fp16 with a gradient scaler on "
                                    "CUDA, fp32 on CPU"))
    from .data import DataNotFoundError, find_fashion_mnist
    try:
        folder = find_fashion_mnist(download=True)
        report.checks.append(Check("data", True, f"Fashion-MNIST found in {folder}"))
    except DataNotFoundError as exc:
        report.checks.append(Check("data", False, "Fashion-MNIST not found", str(exc)))
    report.checks.append(Check("fast mode", True, "on (VITCOURSE_FAST=1)" if is_fast() else "off"))
    return report


def throughput_probe(seconds: float = 10.0, device: torch.device | None = None,
                     batch_size: int = 256) -> float:
    """Training images/s of the course's small ViT (`vit_fmnist`) on one batch of real images,
    in the precision the training loop would choose for `device`, measured for `seconds`."""
    from .data import load_fashion_mnist, normalize
    from .models.registry import create_model
    from .training.precision import autocast, grad_scaler, resolve_precision

    device = device or get_device()
    precision = resolve_precision("auto", device)
    model = create_model("vit_fmnist").to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = grad_scaler(precision, device)
    images, labels = load_fashion_mnist("test")
    x = normalize(images[:batch_size]).to(device)  # (B, 1, 28, 28): one real batch
    y = labels[:batch_size].to(device)
    n_images, start, step = 0, 0.0, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or step < 3:
        with autocast(precision, device):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        step += 1
        if step == 2:  # the first steps pay for allocation and kernel selection: not counted
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        elif step > 2:
            n_images += batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_images / (time.perf_counter() - start)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli_args import number

    parser.add_argument("--probe-seconds", type=number(float, at_least=0), default=10.0,
                        help="length of the throughput probe (0 skips it)")
    parser.add_argument("--models", action="store_true",
                        help="list the model names that `train --model` and `create_model` take, and exit")


def main(args: argparse.Namespace) -> int:
    if args.models:
        from .models.registry import list_models

        print("\n".join(list_models()))
        return 0
    report = environment_report()
    print(report)
    if args.probe_seconds > 0:
        print(f"throughput probe: {throughput_probe(args.probe_seconds):,.0f} training images/s")
    return 0 if report.ok else 1
