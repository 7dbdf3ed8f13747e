"""Write a chapter notebook from a list of cells, with the course's standard header.

Used by developers to (re)generate a chapter's .ipynb; the .ipynb is what is committed.

    from tools.nbbuild import md, code, write_chapter
    write_chapter("notebooks/01_patches.ipynb", "01 · Patches", "What you will learn ...", [
        md("## Prose"), code("x = 1"),
    ])

Every chapter starts with: a title cell with the Colab badge and what it teaches, then the set-up
cell that installs the package only on Colab. Outputs are never written.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


def repo_url() -> str:
    """The repository URL, set in one place: book.yml's repository.url."""
    return yaml.safe_load((ROOT / "book.yml").read_text())["repository"]["url"].rstrip("/")


def colab_url(notebook_name: str) -> str:
    slug = re.sub(r"^https://github.com/", "", repo_url())
    return f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{notebook_name}"


def badge(notebook_name: str) -> str:
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook_name)})")


def setup_cell() -> str:
    url = repo_url()
    return (
        "# Set-up. On Colab this fetches the course and installs the `vitcourse` package;\n"
        "# locally `make lab` has done that already and this cell does nothing.\n"
        "import sys\n"
        "\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    !git clone -q --depth 1 {url} /content/vitcourse\n"
        "    %pip install -q -e /content/vitcourse\n"
        "    sys.path.insert(0, \"/content/vitcourse\")\n"
        "    %cd /content/vitcourse/notebooks"
    )


def md(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(source.strip("\n"))


def code(source: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def write_chapter(path: str | Path, title: str, teaches: str, cells: list) -> Path:
    """Write notebook `path`: header (title, badge, what it teaches), Colab set-up, then `cells`."""
    path = ROOT / path if not Path(path).is_absolute() else Path(path)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    header = f"# {title}\n\n{badge(path.name)}\n\n{teaches.strip()}"
    nb.cells = [md(header), code(setup_cell(), tags=["colab-setup"]), *cells]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{path.stem[:2]}-{i:03d}"  # stable ids: clean diffs when regenerated
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n")
    return path
