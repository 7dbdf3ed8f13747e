"""Reading the exercises out of a chapter notebook, and writing its student copy.

The format (CONTRIBUTING.md), the same markers nbgrader uses:

- a **solution cell** holds the reference answer between the lines ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` (usually inside the body of a function the student completes);
- the **check cell** after it starts with the line ``# check: NN.K`` and calls the chapter's
  checker; extra checks the student should not see sit between ``### BEGIN HIDDEN TESTS`` and
  ``### END HIDDEN TESTS``.

A solution cell belongs to the first check cell after it. The student copy replaces every solution
region by a stub (`stub_lines`), removes the hidden tests, clears outputs, and leaves every other
byte as it was: the notebook is written back the way ``tools/nbbuild.py`` and Jupyter write it.
"""
from __future__ import annotations

import ast
import copy
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..i18n import STUB_COMMENT, STUB_MESSAGE, STUB_REPLACE, translate

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
_CHECK_LINE = re.compile(r"^#\s*check:\s*(?P<id>\S+)\s*$")
# The line that imports a chapter's checker, `from vitcourse.checks import ch01_patches as check`.
CHECKER_IMPORT = re.compile(r"^from vitcourse\.checks import (ch\d\d_\w+) as (\w+)[ \t]*$", re.MULTILINE)
_ID = re.compile(r"^\d\d\.\d+$")
_CHAPTER = re.compile(r"^(\d\d)_")


@dataclass
class Region:
    """One solution region: lines `start` (the BEGIN marker) to `end` (the END marker) of a cell."""

    cell: int  # index of the cell in the notebook
    start: int  # 0-based line of "### BEGIN SOLUTION"
    end: int  # 0-based line of "### END SOLUTION"
    indent: str  # the markers' indentation, which the stub keeps


@dataclass
class Exercise:
    """One exercise of a chapter: its id, its check cell and the solution regions before it."""

    exercise_id: str  # "01.2"
    notebook: str  # the chapter's file name, "01_patches.ipynb"
    check_cell: int  # index of the `# check: NN.K` cell
    regions: list[Region] = field(default_factory=list)
    hidden_tests: bool = False  # whether the check cell has hidden tests


@dataclass
class ChapterExercises:
    """What `parse_notebook` finds: the exercises in notebook order, and what is malformed."""

    notebook: str
    exercises: list[Exercise]
    problems: list[str]  # empty when the notebook is well formed

    def by_id(self) -> dict[str, Exercise]:
        return {e.exercise_id: e for e in self.exercises}


def read_notebook(path: str | Path) -> Any:
    """The notebook at `path` as an nbformat v4 NotebookNode."""
    import nbformat

    return nbformat.read(str(path), as_version=4)


def notebook_text(nb: Any, trailing_newline: bool = True) -> str:
    """`nb` serialised the way tools/nbbuild.py writes chapters (nbformat's JSON, then a newline)."""
    import nbformat

    return nbformat.writes(nb) + ("\n" if trailing_newline else "")


def check_id(cell: Any) -> str | None:
    """The exercise id of a check cell (its first line is ``# check: NN.K``), else None."""
    if cell.get("cell_type") != "code":
        return None
    lines = cell.get("source", "").splitlines()
    if not lines:
        return None
    match = _CHECK_LINE.match(lines[0].strip())
    return match.group("id") if match else None


def _marker_spans(lines: list[str], begin: str, end: str, where: str,
                  problems: list[str]) -> list[tuple[int, int]]:
    """(begin line, end line) of each well-formed `begin`/`end` pair; problems for the others."""
    spans: list[tuple[int, int]] = []
    open_at: int | None = None
    for i, line in enumerate(lines):
        text = line.strip()
        if text not in (begin, end):
            if begin in line or end in line:
                problems.append(f"{where}, line {i + 1}: a marker must be alone on its line "
                                f"(apart from indentation), got {line.strip()!r}")
            continue
        if text == begin:
            if open_at is not None:
                problems.append(f"{where}, line {i + 1}: {begin!r} again before {end!r} "
                                f"(the one on line {open_at + 1} is not closed)")
            open_at = i
        else:
            if open_at is None:
                problems.append(f"{where}, line {i + 1}: {end!r} without {begin!r} before it")
                continue
            if _indent(lines[open_at]) != _indent(line):
                problems.append(f"{where}, lines {open_at + 1} and {i + 1}: {begin!r} and {end!r} "
                                "have different indentation")
            elif i == open_at + 1 or not any(s.strip() for s in lines[open_at + 1:i]):
                problems.append(f"{where}, line {open_at + 1}: the solution region is empty")
            else:
                spans.append((open_at, i))
            open_at = None
    if open_at is not None:
        problems.append(f"{where}, line {open_at + 1}: {begin!r} is never closed by {end!r}")
    return spans


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def parse_notebook(nb: Any, name: str = "notebook") -> ChapterExercises:
    """Find the exercises of notebook `nb` (file name `name`) and everything malformed in it.

    Checks: markers alone on their lines, paired, not nested, same indentation, regions not
    empty; solution regions only in code cells that are not check cells, each followed by a check
    cell; hidden tests only in check cells; check ids "NN.K" with NN the chapter's number (from
    the file name), each id once; every check cell has a solution before it; and no later cell
    (other than exercise cells) uses the student's answer instead of the package's reference.
    """
    problems: list[str] = []
    exercises: list[Exercise] = []
    pending: list[Region] = []  # solution regions waiting for their check cell
    seen: dict[str, int] = {}
    chapter = _CHAPTER.match(Path(name).name)
    for index, cell in enumerate(nb.cells):
        source = cell.get("source", "")
        lines = source.splitlines()
        where = f"{name}, cell {index}"
        ex_id = check_id(cell)
        if cell.get("cell_type") != "code":
            if any(line.strip() in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
                   for line in lines):
                problems.append(f"{where}: exercise markers in a {cell.get('cell_type')} cell; "
                                "they belong in code cells")
            continue
        if ex_id is None:
            if "# check:" in lines[0] if lines else False:
                problems.append(f"{where}: the first line {lines[0]!r} looks like a check line but "
                                "is not '# check: NN.K'")
            for start, end in _marker_spans(lines, BEGIN_SOLUTION, END_SOLUTION, where, problems):
                pending.append(Region(index, start, end, _indent(lines[start])))
            if any(line.strip() in (BEGIN_HIDDEN, END_HIDDEN) for line in lines):
                problems.append(f"{where}: hidden tests outside a check cell (they belong in the "
                                "cell that starts with '# check: NN.K')")
            continue
        # A check cell.
        if not _ID.match(ex_id):
            problems.append(f"{where}: exercise id {ex_id!r} should look like '01.2'")
        elif chapter and not ex_id.startswith(chapter.group(1) + "."):
            problems.append(f"{where}: exercise {ex_id} is in chapter {chapter.group(1)}; its id "
                            f"should start with {chapter.group(1)}.")
        if ex_id in seen:
            problems.append(f"{where}: exercise {ex_id} has a second check cell (the first is "
                            f"cell {seen[ex_id]})")
        seen.setdefault(ex_id, index)
        if any(line.strip() in (BEGIN_SOLUTION, END_SOLUTION) for line in lines):
            problems.append(f"{where}: a solution region inside the check cell of {ex_id}; put the "
                            "solution in the cell before it")
        hidden = _marker_spans(lines, BEGIN_HIDDEN, END_HIDDEN, where, problems)
        if not pending:
            problems.append(f"{where}: exercise {ex_id} has no solution region before its check "
                            "cell, so the student copy would pass it unanswered")
        exercises.append(Exercise(ex_id, Path(name).name, index, pending, bool(hidden)))
        pending = []
    for region in pending:
        problems.append(f"{name}, cell {region.cell}: the solution region on line "
                        f"{region.start + 1} has no '# check: NN.K' cell after it")
    if not problems:
        problems.extend(_answers_used_later(nb, exercises, name))
    return ChapterExercises(Path(name).name, exercises, problems)


def _answer_names(source: str, region: Region) -> list[str]:
    """The names through which the rest of a notebook could reach a region's answer: the
    top-level function or class around it, or the names it binds at the top level."""
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return []
    line = region.start + 2  # 1-based line after the BEGIN marker
    for stmt in tree.body:
        end = getattr(stmt, "end_lineno", None) or stmt.lineno
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and stmt.lineno < line <= end:
            return [stmt.name]
    lines = source.splitlines()
    return _bound_names("\n".join(lines[region.start + 1:region.end])) or []


def _answers_used_later(nb: Any, exercises: list[Exercise], name: str) -> list[str]:
    """Cells after an exercise that use the student's answer instead of the package's reference
    (in the student copy they would fail, and everything depending on them)."""
    problems = []
    exercise_cells = {ex.check_cell for ex in exercises} | {
        r.cell for ex in exercises for r in ex.regions}
    for ex in exercises:
        answers = {n for r in ex.regions for n in _answer_names(nb.cells[r.cell].source, r)}
        for index in range(ex.check_cell + 1, len(nb.cells)):
            cell = nb.cells[index]
            if index in exercise_cells or cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(_python_source(cell.source))
            except SyntaxError:
                continue
            stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                      and isinstance(n.ctx, ast.Store)} | {
                n.name for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            answers -= stored  # redefined from here on: no longer the student's answer
            used = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                           and isinstance(n.ctx, ast.Load) and n.id in answers})
            if used:
                problems.append(
                    f"{name}, cell {index}: uses {', '.join(used)}, the student's answer to "
                    f"exercise {ex.exercise_id}; code after an exercise must use the package's "
                    "reference implementation, so an open exercise breaks nothing below it")
    return problems


# --- stubs -------------------------------------------------------------------------------------

def _python_source(source: str) -> str:
    """`source` with IPython syntax (``%magic``, ``!shell``) turned into Python, line for line."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # no IPython: only plain Python cells can be analysed
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def _enclosing_scope(tree: ast.AST, line: int, col: int) -> str:
    """"function", "class" or "module": the innermost scope around 1-based `line` at column `col`."""
    kind = "module"
    best = -1
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            end = getattr(node, "end_lineno", None) or node.lineno
            # The region must be in the body: after the header line and indented deeper.
            if node.lineno < line <= end and col > node.col_offset and node.lineno > best:
                best = node.lineno
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
    return kind


def _bound_names(code: str) -> list[str] | None:
    """Names a block of statements binds at its own level (None if it does not parse)."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return None
    names: list[str] = []

    def add_target(target: ast.AST) -> None:
        if isinstance(target, ast.Name):
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                add_target(elt)
        elif isinstance(target, ast.Starred):
            add_target(target.value)

    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                add_target(target)
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
            add_target(stmt.target)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                if alias.name != "*":
                    names.append(alias.asname or alias.name.split(".")[0])
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                if item.optional_vars is not None:
                    add_target(item.optional_vars)
    return list(dict.fromkeys(names))


def stub_message(exercise_id: str, lang: str = "en") -> str:
    return translate(STUB_MESSAGE, lang).format(exercise_id=exercise_id)


def stub_lines(source: str, region: Region, exercise_id: str, lang: str = "en") -> list[str]:
    """The lines that replace `region` of cell `source` in the student copy.

    Inside a function the stub raises NotImplementedError when the function is called. At the top
    level of a cell or of a class body a raise would stop the whole cell (and a class definition),
    so the stub binds each name the solution defines to a placeholder that raises
    NotImplementedError when it is used (see `vitcourse.checks.Unanswered`); a region that binds
    no name gets the plain raise. The stub's words are in `lang` (an edition's copy speaks its
    edition's language).
    """
    lines = source.splitlines()
    ind = region.indent
    message = stub_message(exercise_id, lang)
    raise_stub = [f"{ind}{translate(STUB_COMMENT, lang)}", f"{ind}raise NotImplementedError({message!r})"]
    python = _python_source(source)
    try:
        tree = ast.parse(python)
    except SyntaxError:
        tree = None
    first_code = next((i for i in range(region.start + 1, region.end) if lines[i].strip()),
                      region.start)
    if tree is not None:
        scope = _enclosing_scope(tree, first_code + 1, len(ind))
    else:  # unparsable cell: only an unindented region can safely be taken as top level
        scope = "module" if not ind else "function"
    if scope == "function":
        return raise_stub
    names = _bound_names("\n".join(lines[region.start + 1:region.end]))
    if not names:
        return raise_stub
    return [f"{ind}{translate(STUB_REPLACE, lang)}",
            f"{ind}from vitcourse.exercises import unanswered",
            *(f"{ind}{name} = unanswered({message!r})" for name in names)]


def _replace_spans(source: str, spans: list[tuple[int, int, list[str]]]) -> str:
    """`source` with lines start..end (inclusive) of each span replaced by its new lines."""
    lines = source.splitlines()
    for start, end, new in sorted(spans, reverse=True):
        lines[start:end + 1] = new
    text = "\n".join(lines)
    if source.endswith("\n") and lines:
        text += "\n"
    return text


def student_notebook(nb: Any, name: str = "notebook", lang: str = "en") -> Any:
    """The student copy of chapter `nb`: stubs (in `lang`) for solutions, no hidden tests, no outputs.

    Raises ValueError listing the problems if the chapter's exercises are malformed.
    """
    parsed = parse_notebook(nb, name)
    if parsed.problems:
        raise ValueError(f"{name} has malformed exercises:\n  " + "\n  ".join(parsed.problems))
    out = copy.deepcopy(nb)
    by_cell: dict[int, list[tuple[int, int, list[str]]]] = {}
    for ex in parsed.exercises:
        for region in ex.regions:
            source = nb.cells[region.cell].source
            by_cell.setdefault(region.cell, []).append(
                (region.start, region.end, stub_lines(source, region, ex.exercise_id, lang)))
        if ex.hidden_tests:
            lines = nb.cells[ex.check_cell].source.splitlines()
            spans = _marker_spans(lines, BEGIN_HIDDEN, END_HIDDEN, "", [])
            by_cell.setdefault(ex.check_cell, []).extend((s, e, []) for s, e in spans)
    for index, spans in by_cell.items():
        out.cells[index].source = _replace_spans(nb.cells[index].source, spans)
    return strip_notebook(out)


def strip_notebook(nb: Any) -> Any:
    """A copy of `nb` with outputs cleared (what `student_notebook` does to cells it leaves alone)."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)  # timings nbclient/Jupyter record: outputs too
    return out
