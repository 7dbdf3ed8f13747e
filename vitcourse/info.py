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


def _at_least(version: str, floor: tuple[int, int]) -> bool:
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= floor


def environment_report() -> Report:
    """Versions, device, bf16 support and data location, each with what to fix if it is off."""
    report = Report()
    py_ok = sys.version_info >= (3, 10)
    report.checks.append(Check("python", py_ok, platform.python_version(),
                               "install Python 3.10 to 3.13"))
    for name, floor in MINIMUM.items():
        v = _version(name)
        ok = v is not None and _at_least(v, floor)
        report.checks.append(Check(name, ok, v or "missing",
                                   f"run `make lab` (or `pip install -e .`) to get {name}>="
                                   f"{'.'.join(map(str, floor))}"))
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
                     batch_size: int = 128) -> float:
    """Training images/s of a small ViT-like model on 28x28 inputs, measured for `seconds`."""
    device = device or get_device()
    model = torch.nn.Sequential(  # 16 tokens of width 128, 2 transformer layers, like a small ViT
        torch.nn.Unflatten(1, (1, 28, 28)),
        torch.nn.Conv2d(1, 128, kernel_size=7, stride=7),
        torch.nn.Flatten(2),
    ).to(device)
    encoder = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(128, 4, 256, dropout=0.0, batch_first=True, norm_first=True),
        num_layers=2, enable_nested_tensor=False).to(device)
    head = torch.nn.Linear(128, 10).to(device)
    params = [*model.parameters(), *encoder.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    from .data import load_fashion_mnist, normalize
    images, labels = load_fashion_mnist("test")
    x = normalize(images[:batch_size]).flatten(1).to(device)  # (B, 784): one real batch
    y = labels[:batch_size].to(device)
    n_images, start = 0, None
    deadline = time.perf_counter() + seconds
    step = 0
    while time.perf_counter() < deadline or step < 3:
        tokens = model(x).transpose(1, 2)  # (B, 128, 16) -> (B, 16, 128)
        loss = torch.nn.functional.cross_entropy(head(encoder(tokens).mean(1)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step == 2:  # skip warm-up steps
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        elif step > 2:
            n_images += batch_size
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_images / (time.perf_counter() - start)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--probe-seconds", type=float, default=10.0,
                        help="length of the throughput probe (0 skips it)")


def main(args: argparse.Namespace) -> int:
    report = environment_report()
    print(report)
    if args.probe_seconds > 0:
        print(f"throughput probe: {throughput_probe(args.probe_seconds):,.0f} training images/s")
    return 0 if report.ok else 1
