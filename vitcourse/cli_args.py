"""Argument types for ``python -m vitcourse COMMAND``, and the error a command raises for a problem
the user can fix.

Each type is an argparse ``type=``: it turns the text given into a value or raises
`argparse.ArgumentTypeError` with what was expected and what was given, so a bad argument fails
at parse time, before any data is loaded, as one line::

    vitcourse sweep: error: argument --max-minutes: expected a number > 0, got '0' (see `vitcourse sweep --help`)

Writable paths are tested with a real write (a temporary folder, removed at once), not with
permission bits: root may write anywhere the bits forbid, and nowhere on a read-only disk.
"""
from __future__ import annotations

import argparse
import difflib
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable


class CommandError(Exception):
    """A failure the user can fix (a bad argument, a missing file or package, a checkpoint of
    another run). ``vitcourse.cli.main`` prints it as one line and exits 2; a command module
    raises it instead of printing and returning, so its message reaches the user whole."""


def _expect(expected: str, given: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"expected {expected}, got {given!r}")


def number(kind: type = int, *, at_least: float | None = None, above: float | None = None,
           below: float | None = None, at_most: float | None = None) -> Callable[[str], int | float]:
    """A type for an int (or float) within the given bounds: ``number(int, at_least=1)`` for
    epochs, ``number(float, at_least=0, below=1)`` for label smoothing."""
    bounds = [(at_least, ">=", lambda v, b: v >= b), (above, ">", lambda v, b: v > b),
              (below, "<", lambda v, b: v < b), (at_most, "<=", lambda v, b: v <= b)]
    bounds = [(b, sign, ok) for b, sign, ok in bounds if b is not None]
    noun = "an int" if kind is int else "a number"
    expected = noun + "".join(f"{' and' if i else ''} {sign} {b:g}" for i, (b, sign, _) in enumerate(bounds))

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise _expect(expected, text) from None
        if (isinstance(value, float) and not math.isfinite(value)) or not all(ok(value, b) for b, _, ok in bounds):
            raise _expect(expected, text)
        return value

    convert.__name__ = expected  # what argparse names the type in its own messages
    return convert


positive_int = number(int, at_least=1)
non_negative_int = number(int, at_least=0)
positive_float = number(float, above=0)
train_subset = number(int, at_least=1, at_most=60_000)  # Fashion-MNIST has 60,000 training images
test_subset = number(int, at_least=1, at_most=10_000)   # ...and 10,000 test images


def int_list(item: Callable[[str], int]) -> Callable[[str], list[int]]:
    """A type for comma-separated values, each checked by `item` (``"0,1,2"`` -> [0, 1, 2])."""
    def convert(text: str) -> list[int]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise _expect(f"comma-separated values, each {item.__name__}", text)
        try:
            return [item(t) for t in items]
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} in {text!r}") from None
    return convert


def one_of(names: Iterable[str], what: str = "a name", normalise: Callable[[str], str] = lambda s: s,
           listed_by: str = "") -> Callable[[str], str]:
    """A type for one of `names` (compared after `normalise`). A miss names the closest, and all
    of them when they are few or none is close (else `listed_by`, what lists them all)."""
    names = list(names)

    def convert(text: str) -> str:
        if normalise(text) in names:
            return text
        key, few = normalise(text), len(names) <= 8
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6 if few else 0.4)
        hints = [f"one of {', '.join(names)}"] if few or not close else []
        if close:
            more = f" {listed_by} lists all {len(names)}" if listed_by and not few else ""
            hints.append(f"did you mean {' or '.join(map(repr, close))}?{more}")
        hint = "; ".join(hints)
        raise _expect(f"{what} ({hint})", text)
    return convert


def model_name(text: str) -> str:
    """A type for a preset of `vitcourse.models.create_model` ("vit_fmnist", "ViT-B/16"...)."""
    from .models.registry import _normalise, list_models

    return one_of(list_models(), "a model name", _normalise, "`python -m vitcourse info --models`")(text)


def device_name(text: str) -> str:
    """A type for a torch device that this machine has ("cpu", "cuda", "cuda:1", "mps")."""
    import torch

    from .settings import get_device

    try:
        get_device(text)
    except (RuntimeError, ValueError):  # torch's "Expected one of cpu, cuda, ..." or ours
        mps = getattr(torch.backends, "mps", None)
        have = ["cpu"] + ["cuda"] * torch.cuda.is_available() + ["mps"] * bool(mps and mps.is_available())
        raise _expect(f"a device this machine has ({', '.join(have)})", text) from None
    return text


def _why_unwritable(folder: Path) -> str | None:
    """Why files cannot be written in `folder` (created if missing), or None if they can."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a folder"
    try:
        with tempfile.TemporaryDirectory(dir=existing, prefix=".vitcourse-write-test-"):
            pass
    except OSError as exc:
        return f"{str(existing)!r} cannot be written (a test write there failed: {exc.strerror or exc})"
    return None


def existing_folder(text: str) -> Path:
    """A type for a folder that exists."""
    path = Path(text).expanduser()
    if not path.is_dir():
        state = "a file" if path.exists() else "it does not exist"
        raise argparse.ArgumentTypeError(f"expected an existing folder, got {text!r} ({state})")
    return path


def output_folder(text: str) -> Path:
    """A type for a folder to write into: it exists and is writable, or can be created."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a folder to write into, got {text!r} (a file)")
    why = _why_unwritable(path)
    if why:
        raise argparse.ArgumentTypeError(f"expected a folder that can be written, got {text!r} ({why})")
    return path


def output_file(text: str) -> Path:
    """A type for a file to write: not a folder, in a folder that is writable or can be created."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a file to write, got {text!r} (a folder)")
    why = _why_unwritable(path.parent)
    if why is None and path.exists() and not os.access(path, os.W_OK):
        why = "the file is read-only"
    if why:
        raise argparse.ArgumentTypeError(f"expected a file that can be written, got {text!r} ({why})")
    return path
