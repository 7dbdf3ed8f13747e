"""Where and from what a result came: the git commit and the hardware, recorded with every run.

Model cards (`vitcourse.training.card`) and the experiments' results CSVs (`vitcourse.experiments`)
both record them, from the same facts here. Each keeps the spelling its committed files already
have, so that old and new rows of one file read alike:

- a card: ``git_commit()`` (full hash, "-dirty") and ``hardware_info(device)`` (a dict);
- a CSV row: ``git_commit(short=True)`` (7 characters, "+dirty") and ``hardware_label()`` (one line),
  or all three columns at once with ``provenance_columns()``.
"""
from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import torch

from ..data import REPO_ROOT


def git_commit(*, short: bool = False) -> str:
    """The repository's HEAD commit, marked dirty when the package's tracked files have changed.

    Args:
        short: the short hash with "+dirty" ("" without git), as the results CSVs spell it; else
            the full hash with "-dirty" ("unknown" without git), as the model cards do.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", *(["--short"] if short else []), "HEAD")
        # only the package's code decides what a run computes; data or notebooks being edited do not
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "vitcourse"))
    except (OSError, subprocess.SubprocessError):  # no git, not a checkout, or git hung
        head, dirty = "", False
    if not head:
        return "" if short else "unknown"
    return head + (("+dirty" if short else "-dirty") if dirty else "")


def cpu_name() -> str:
    """The CPU's model name (e.g. "AMD EPYC"): /proc/cpuinfo on Linux, else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def hardware_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where a run trained, for a model card: device, platform, CPU, cores, torch threads, torch and
    Python versions, and the GPU's name on CUDA."""
    device = torch.device(device)
    info = {"device": str(device), "platform": platform.platform(), "cpu": cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": str(torch.__version__), "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def hardware_label() -> str:
    """`hardware_info` in one line for a CSV column: the GPU if there is one, else the CPU with its
    cores and torch threads (what sets the speed of a CPU run)."""
    info = hardware_info("cuda" if torch.cuda.is_available() else "cpu")
    if "gpu" in info:
        return f"{info['gpu']} (CUDA {torch.version.cuda})"
    return f"{info['cpu']}, {info['cpu_count']} cores, {info['torch_threads']} torch threads"


def provenance_columns() -> dict[str, str]:
    """The "hardware", "torch" and "commit" columns of a results CSV row."""
    return {"hardware": hardware_label(), "torch": torch.__version__, "commit": git_commit(short=True)}
