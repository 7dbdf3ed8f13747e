"""Data parallel training with PyTorch's own engine (`torch.distributed` + DDP), via torchrun.

``torchrun --nproc_per_node=2 -m vitcourse train ...`` starts 2 processes with RANK, WORLD_SIZE
and LOCAL_RANK set; `init_from_env` joins them into a process group (gloo on CPU, nccl on CUDA).
Every rank holds the whole data set and draws the *same* global batch (same seed); each trains on
its own slice of it (`shard`), and DDP averages the gradients, so the update equals one process
training on the whole batch. Rank 0 alone writes checkpoints and logs.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a plain single process): the one that writes files and prints."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device: torch.device | str | None = None) -> bool:
    """Join the process group torchrun describes in the environment; False when not under torchrun.

    Args:
        device: the training device; "cuda" picks nccl and this rank's GPU, anything else gloo.
    """
    if is_distributed():
        return True
    if not launched_by_torchrun():
        return False
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def local_device(device: torch.device | str) -> torch.device:
    """On CUDA under torchrun: this rank's GPU; otherwise `device` unchanged."""
    device = torch.device(device)
    if device.type == "cuda" and launched_by_torchrun() and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This rank's contiguous slice of each tensor's first dimension (all ranks cover it once)."""
    if not is_distributed():
        return tensors
    r, w = rank(), world_size()
    return tuple(t.tensor_split(w)[r] for t in tensors)


def all_reduce_sum(values: list[float] | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sum a vector of numbers over all ranks (a float64 tensor; unchanged when not distributed)."""
    t = torch.as_tensor(values, dtype=torch.float64, device=device).clone()
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
