"""The chapters' measured facts (``make facts``): committed results -> ``data/facts/NN_name.json``.

    .venv/bin/python -m tools.facts write [NN ...]   # recompute and write the facts files
    .venv/bin/python -m tools.facts check            # exit 1 when a facts file is not what the results give

A chapter's prose quotes numbers by name, ``{{ vit_acc }}``; ``tools/chapters.py`` fills them in
from the chapter's facts file when it builds the notebook. Each chapter that quotes results has a
module here, ``tools/facts/chNN.py``, with ``CHAPTER = "NN_name"`` and ``facts() -> dict``: the
analysis of the committed results (``data/results/*.csv``, the checkpoints' cards), rounded to
the precision the prose quotes. What the prose *claims* about those numbers (A beats B) is
asserted on the facts by the chapter's claims test, so a re-run that no longer supports a
sentence fails a test and a person rewrites the sentence; no code writes prose.

Conclusions that code depends on (the best recipe, the shipped variant) are facts too, derived
from the results, so the chapter and the runners cannot disagree.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT / "data" / "facts"


def modules() -> dict[str, ModuleType]:
    """{chapter stem: its facts module}, for every ``tools/facts/chNN.py``."""
    found = {}
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.name.startswith("ch"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            found[module.CHAPTER] = module
    return found


def text(facts: dict[str, Any]) -> str:
    """A facts file's bytes: sorted keys, one per line, so a new result is a one-line diff."""
    return json.dumps(facts, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def compute(chapter: str) -> dict[str, Any]:
    mods = modules()
    if chapter not in mods:
        raise ValueError(f"chapter must be one of {sorted(mods)}, got {chapter!r}")
    facts = mods[chapter].facts()
    for name, value in facts.items():
        if not name.isidentifier():
            raise ValueError(f"{chapter}: a fact's name must be an identifier (it is written {{{{ name }}}}), got {name!r}")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise TypeError(f"{chapter}: fact {name!r} must be a string or a number, got {value!r}")
    return facts


def write(chapters: list[str] | None = None, out: Path = FACTS) -> list[Path]:
    """Write the facts files of `chapters` (all by default); returns those that changed."""
    changed = []
    out.mkdir(parents=True, exist_ok=True)
    for chapter in chapters or list(modules()):
        path = out / f"{chapter}.json"
        new = text(compute(chapter))
        if not path.is_file() or path.read_text(encoding="utf-8") != new:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def stale(chapters: list[str] | None = None, out: Path = FACTS) -> list[str]:
    """One line per facts file that differs from what the committed results give."""
    problems = []
    for chapter in chapters or list(modules()):
        path = out / f"{chapter}.json"
        if not path.is_file() or path.read_text(encoding="utf-8") != text(compute(chapter)):
            problems.append(f"{path.relative_to(ROOT)}: not what the results give: run `make facts chapters`")
    return problems


def select(numbers: list[str]) -> list[str]:
    names = list(modules())
    if not numbers:
        return names
    chosen = [n for n in names if any(n == x or n[:2] == x.zfill(2) for x in numbers)]
    if len(chosen) < len(numbers):
        raise ValueError(f"chapters must be among {names} (by number or name), got {numbers}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="recompute data/facts/NN_name.json from the committed results")
    w.add_argument("chapters", nargs="*")
    c = sub.add_parser("check", help="list the facts files that differ from the results")
    c.add_argument("chapters", nargs="*")
    args = parser.parse_args(argv)
    try:
        chosen = select(args.chapters)
    except ValueError as err:
        parser.error(str(err))
    if args.command == "check":
        problems = stale(chosen)
        print("\n".join(problems) or f"facts: {len(chosen)} files match the results")
        return 1 if problems else 0
    changed = write(chosen)
    print(f"facts: {len(chosen)} chapters, {len(changed)} files changed"
          + "".join(f"\n  {p.relative_to(ROOT)}" for p in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
