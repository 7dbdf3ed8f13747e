"""The package's architecture, read from its imports: models and layers never reach into training,
data, analysis, widgets or experiments; layers never reach into models; analysis never imports the
widgets that draw it. Imports are walked with `ast` (module level and inside functions alike)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vitcourse"

# importer prefix -> prefixes it must not import (widgets live in vitcourse.analysis.widgets)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "vitcourse.layers": ("vitcourse.models", "vitcourse.training", "vitcourse.data", "vitcourse.analysis",
                         "vitcourse.experiments", "vitcourse.checks", "vitcourse.exercises"),
    "vitcourse.models": ("vitcourse.training", "vitcourse.data", "vitcourse.analysis",
                         "vitcourse.experiments", "vitcourse.checks", "vitcourse.exercises"),
    "vitcourse.analysis": ("vitcourse.analysis.widgets", "vitcourse.experiments"),
    "vitcourse.training": ("vitcourse.analysis", "vitcourse.experiments"),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in `path`, relative ones resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` may name a submodule: record both the package and package.x
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def violations(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        for prefix, banned in FORBIDDEN.items():
            if importer != prefix and not importer.startswith(prefix + "."):
                continue
            for line, target in imported_modules(path, root):
                hit = next((b for b in banned if target == b or target.startswith(b + ".")), None)
                entry = f"{path.relative_to(root.parent)}:{line}: {importer} imports {hit}"
                if hit and not (importer == hit or importer.startswith(hit + ".")) and entry not in out:
                    out.append(entry)
    return out


def test_no_import_arrow_from_models_or_layers_into_training_data_analysis_or_experiments():
    assert violations(PACKAGE) == []


def test_the_import_walk_catches_a_forbidden_import_at_any_depth(tmp_path):
    root = tmp_path / "vitcourse"
    (root / "models").mkdir(parents=True)
    (root / "analysis").mkdir()
    for f in ["__init__.py", "models/__init__.py", "analysis/__init__.py", "data.py"]:
        (root / f).write_text("")
    (root / "models" / "good.py").write_text("from ..layers.patches import PatchEmbed\nimport torch\n")
    (root / "models" / "bad.py").write_text("def f():\n    from ..data import load_data\n")
    (root / "models" / "bad2.py").write_text("from vitcourse.training.loop import fit\n")
    (root / "analysis" / "bad3.py").write_text("from . import widgets\n")
    assert violations(root) == [
        "vitcourse/analysis/bad3.py:1: vitcourse.analysis.bad3 imports vitcourse.analysis.widgets",
        "vitcourse/models/bad.py:2: vitcourse.models.bad imports vitcourse.data",
        "vitcourse/models/bad2.py:1: vitcourse.models.bad2 imports vitcourse.training",
    ]


@pytest.mark.parametrize("folder", ["layers", "models", "training", "analysis", "experiments", "checks", "exercises"])
def test_each_folder_is_a_package_with_a_docstring(folder):
    init = PACKAGE / folder / "__init__.py"
    assert init.is_file(), f"{init} is missing"
    assert ast.get_docstring(ast.parse(init.read_text())), f"{init} should say what the folder holds"


def test_no_module_is_left_at_the_top_level_that_belongs_in_a_folder():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    # augment sits beside data: the loader (data.TensorLoader) calls it on every batch; i18n is
    # read by both checks/ and exercises/ (the grader)
    assert top == ["__init__", "__main__", "augment", "cli", "cli_args", "data", "flops", "i18n", "info",
                   "settings"], top


def test_contributing_maps_every_module_of_the_package():
    """CONTRIBUTING.md's map has a row naming every module (a new file gets its line)."""
    text = (PACKAGE.parent / "CONTRIBUTING.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and len(rel.parts) > 1 or rel.parts[0] in ("checks", "exercises"):
            continue  # a folder's row covers its __init__; checks/ and exercises/ have a row each
        folder = f"{rel.parts[0]}/" if len(rel.parts) > 1 else ""
        # a row names the module by its path ("layers/spt.py") or, after one, by its file name ("lsa.py")
        if not any(f"`{folder}{rel.name}`" in r or (folder and f"`{folder}" in r and f"`{rel.name}`" in r)
                   for r in rows):
            missing.append(str(rel))
    assert not missing, f"CONTRIBUTING.md's map lacks a row for {missing}"
