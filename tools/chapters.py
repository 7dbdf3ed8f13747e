"""Build the chapter notebooks from their sources (``make chapters``).

    .venv/bin/python tools/chapters.py build [NN ...]   # chapters/NN_name.md -> notebooks/NN_name.ipynb
    .venv/bin/python tools/chapters.py check            # exit 1 when a notebook differs from its source

``chapters/NN_name.md`` is the only hand-edited text of a chapter: a MyST markdown notebook (the
``md:myst`` format that Jupytext and MyST-NB read; ```` ```{code-cell} ```` blocks, ``+++``
between markdown cells, cell tags kept). The notebook a student opens is built from it:

1. the Colab badge goes under the title and the Colab set-up cell after the first cell (both
   made from book.yml's repository URL, so no source repeats it);
2. ``{{ name }}`` in a markdown cell becomes the chapter's measured fact ``name`` from
   ``data/facts/NN_name.json`` (``make facts`` writes those from the committed results), so prose
   never holds a number typed by hand, and the translations keep the placeholder;
3. cell ids are ``NN-000``, ``NN-001``, ... in order, outputs are empty: the same source gives the
   same bytes, and a diff of a notebook is a diff of its source.

An edit made in a notebook is lost at the next build: ``check`` (and tests/test_chapters.py) fails
while a notebook differs from what its source builds.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import jupytext
import nbformat

from tools.nbbuild import badge, setup_cell

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "chapters"
NOTEBOOKS = ROOT / "notebooks"
FACTS = ROOT / "data" / "facts"
SOURCE_FORMAT = "md:myst"
SETUP_TAG = "colab-setup"
# `{{ name }}`, the placeholder MyST's substitution extension uses too; names are identifiers.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def sources(folder: Path = SOURCES) -> list[Path]:
    """The chapter sources ``NN_name.md``, in order."""
    return sorted(folder.glob("[0-9][0-9]_*.md"))


def facts_path(stem: str, facts_dir: Path = FACTS) -> Path:
    return facts_dir / f"{stem}.json"


def read_facts(stem: str, facts_dir: Path = FACTS) -> dict[str, Any]:
    """The measured facts of chapter `stem` ({} for a chapter that quotes none)."""
    path = facts_path(stem, facts_dir)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def render_value(value: Any) -> str:
    """How a fact reads in prose: strings as they are, numbers as JSON writes them (the facts
    are rounded to the precision the prose quotes when they are made)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a fact must be a string or a number, got {value!r}")
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else json.dumps(value)


def placeholders(text: str) -> list[str]:
    """The fact names `text` refers to, in order, with repeats."""
    return PLACEHOLDER.findall(text)


def substitute(text: str, facts: Mapping[str, Any], where: str = "text") -> str:
    """`text` with every ``{{ name }}`` replaced by its fact; an unknown name is an error that
    says where it is and which facts exist."""
    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in facts:
            known = ", ".join(sorted(facts)) or "none"
            raise KeyError(f"{where}: no fact named {name!r} (run `make facts`; known: {known})")
        return render_value(facts[name])
    return PLACEHOLDER.sub(one, text)


def read_source(path: Path) -> nbformat.NotebookNode:
    """A chapter source as a notebook (markdown and code cells, no header, no set-up cell)."""
    if not path.is_file():
        raise FileNotFoundError(f"path must be a chapter source chapters/NN_name.md, got {path}")
    return jupytext.read(path, fmt=SOURCE_FORMAT)


def build_notebook(path: Path, facts: Mapping[str, Any] | None = None) -> nbformat.NotebookNode:
    """The student's notebook of chapter source `path`. `facts=None` reads the chapter's facts
    file; pass a mapping to use other facts, or ``{}`` with ``fill=False`` semantics via
    `template_notebook` to keep the placeholders."""
    facts = read_facts(path.stem) if facts is None else facts
    return _assemble(path, lambda text, where: substitute(text, facts, where))


def template_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook of `path` with its ``{{ name }}`` placeholders kept: what the translation
    catalogs are extracted from, so that a new measurement changes no catalog."""
    return _assemble(path, lambda text, where: text)


def _assemble(path: Path, fill) -> nbformat.NotebookNode:
    source = read_source(path)
    name = f"{path.stem}.ipynb"
    cells = list(source.cells)
    if not cells or cells[0].cell_type != "markdown" or not cells[0].source.startswith("# "):
        raise ValueError(f"{path.name}: the first cell must be markdown that starts with the chapter's "
                         "'# NN · Title' line")
    title, _, teaches = cells[0].source.partition("\n")
    header = nbformat.v4.new_markdown_cell(f"{title}\n\n{badge(name)}\n\n{teaches.strip()}")
    setup = nbformat.v4.new_code_cell(setup_cell())
    setup.metadata["tags"] = [SETUP_TAG]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [header, setup]
    for i, cell in enumerate(cells[1:], start=2):
        if cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.source)
        elif cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(cell.source)
        else:
            raise ValueError(f"{path.name}: cell {i} is a {cell.cell_type} cell; chapters hold markdown and code")
        metadata = {k: v for k, v in cell.metadata.items() if k not in ("vscode",)}
        if metadata:
            new.metadata.update(metadata)
        nb.cells.append(new)
    nb.cells[0].source = fill(nb.cells[0].source, f"{path.name}, title cell")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            cell.source = fill(cell.source, f"{path.name}, cell {i}")
        cell["id"] = f"{path.stem[:2]}-{i:03d}"  # stable ids: clean diffs, the same cells in every edition
    nbformat.validate(nb)
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """A notebook's bytes as committed (nbformat's JSON and a newline, as Jupyter writes it)."""
    return nbformat.writes(nb) + "\n"


def target(path: Path, notebooks: Path = NOTEBOOKS) -> Path:
    return notebooks / f"{path.stem}.ipynb"


def build(paths: list[Path] | None = None, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """Write the notebooks of `paths` (every chapter by default); returns those that changed."""
    changed = []
    for path in paths or sources():
        out = target(path, notebooks)
        text = notebook_text(build_notebook(path))
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            out.write_text(text, encoding="utf-8")
            changed.append(out)
    return changed


def stale(paths: list[Path] | None = None, notebooks: Path = NOTEBOOKS) -> list[str]:
    """One line per notebook that differs from what its source builds ([] when all agree), and
    per notebook without a source."""
    problems = []
    srcs = paths or sources()
    for path in srcs:
        out = target(path, notebooks)
        if not out.is_file():
            problems.append(f"{out.relative_to(ROOT)}: missing: run `make chapters`")
        elif out.read_text(encoding="utf-8") != notebook_text(build_notebook(path)):
            problems.append(f"{out.relative_to(ROOT)}: differs from chapters/{path.name}: edit the source, "
                            "then run `make chapters`")
    if paths is None:
        have = {p.stem for p in srcs}
        problems += [f"{nb.relative_to(ROOT)}: no source chapters/{nb.stem}.md"
                     for nb in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")) if nb.stem not in have]
    return problems


def select(numbers: list[str]) -> list[Path]:
    """Chapter sources by number ('04') or stem; all when `numbers` is empty."""
    if not numbers:
        return sources()
    chosen = []
    for number in numbers:
        found = [p for p in sources() if p.stem == number or p.stem[:2] == number.zfill(2)]
        if not found:
            raise ValueError(f"chapters must be numbers like 04 or names like 04_vision_transformer, "
                             f"got {number!r}")
        chosen += found
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write notebooks/NN_name.ipynb from chapters/NN_name.md")
    b.add_argument("chapters", nargs="*", help="chapter numbers (all by default)")
    sub.add_parser("check", help="list the notebooks that differ from their sources")
    args = parser.parse_args(argv)
    if args.command == "check":
        problems = stale()
        print("\n".join(problems) or f"chapters: {len(sources())} notebooks match their sources")
        return 1 if problems else 0
    try:
        paths = select(args.chapters)
        changed = build(paths)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"chapters: {err.args[0]}", file=sys.stderr)
        return 1
    print(f"chapters: {len(paths)} built, {len(changed)} changed"
          + "".join(f"\n  {p.relative_to(ROOT)}" for p in changed))
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:  # run as a script: make `tools` importable
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
