"""The experiments' results CSVs: one row per finished run, keyed by its "key" column.

A runner reads the keys already in its CSV to skip finished runs (so an interrupted experiment
resumes where it stopped) and appends each new row atomically as soon as the run is done. Chapter
07's sweep started this format; the robustness, ablation and small-data runners share it.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.checkpoint import atomic_write


def read_results(path: str | Path) -> list[dict[str, str]]:
    """The rows of a results CSV as dicts of strings ([] if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path: str | Path, row: dict[str, Any]) -> None:
    """Add `row` to the CSV at `path` atomically: write the whole new file aside, then rename.

    Columns are the union of the old header and the row's keys (new ones at the end), so a
    later version of a runner can add a column without breaking older rows.
    """
    if not isinstance(row, dict) or "key" not in row:
        raise ValueError(f"row must be a dict with a 'key' entry, got {type(row).__name__}")
    rows = read_results(path)
    fields: list[str] = list(rows[0].keys()) if rows else []
    fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    writer.writerow(row)
    atomic_write(path, lambda f: f.write(buf.getvalue()), text=True)


def config_dict(obj: Any) -> dict[str, Any]:
    """A config dataclass as a dict for a JSON column (tuples as lists); {} for anything else,
    e.g. a model without a config."""
    if dataclasses.is_dataclass(obj):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(obj).items()}
    return {}


@dataclass
class SweepReport:
    """What one call of a resumable runner did with its runs' keys."""
    done: list[str] = field(default_factory=list)      # keys trained in this call
    skipped: list[str] = field(default_factory=list)   # keys already in the CSV
    remaining: list[str] = field(default_factory=list)  # keys left for a later call (time limit)
