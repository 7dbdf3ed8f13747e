"""``python -m vitcourse student --format nbgrader --out DIR``: the chapters as nbgrader source notebooks.

nbgrader (https://nbgrader.readthedocs.io) reads a course folder: ``DIR/nbgrader_config.py`` and
``DIR/source/<assignment>/<notebook>.ipynb``. Here each chapter with exercises is one assignment
named after it (``source/01_patches/01_patches.ipynb``), and its cells carry nbgrader's metadata
(schema version 3), so that ``nbgrader generate_assignment`` makes the release copy, and
``nbgrader autograde`` grades submissions, with nothing marked by hand:

- a solution cell (the cell with ``### BEGIN SOLUTION``): ``solution``, not graded, editable;
  nbgrader replaces each solution region with its stub in the release copy;
- a check cell (``# check: NN.K``): an autograded test worth the exercise's points (`POINTS`, from
  its difficulty), locked; nbgrader removes its hidden tests from the release copy and restores
  them when it grades. The check raises (``ExerciseError``, ``NotImplementedError``) unless the
  answer is right, so the cell scores full points exactly when ``vitcourse grade`` passes it;
- read-only (locked) cells: the lesson's text, and the cell that imports the chapter's checker,
  which the check cells need;
- every other code cell is left as it is: the student may run and change it.

The ``grade_id`` of a cell comes from its exercise id (``ex01_2_solution``, ``ex01_2_check``) or,
for a read-only cell, from the chapter and the cell's place (``ch01_locked_004``), so exporting the
same chapter again gives the same ids. The chapters' own parser (`parse_notebook`) finds the
exercises, as it does for the student copies and for grading.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..i18n import STUB_COMMENT, folder_language, translate
from .notebook import (BEGIN_HIDDEN, BEGIN_SOLUTION, CHECKER_IMPORT, END_HIDDEN, END_SOLUTION,
                       notebook_text, parse_notebook, strip_notebook)

SCHEMA_VERSION = 3  # the version of nbgrader's cell metadata schema that nbgrader 0.9 reads
POINTS = {"easy": 1, "medium": 2, "hard": 3}  # an exercise's points, by its difficulty
DEFAULT_POINTS = 1  # for an exercise whose checker gives no difficulty
CONFIG_NAME = "nbgrader_config.py"
_CHAPTER_NUMBER = re.compile(r"^(\d\d)_")
# nbgrader finds its markers anywhere in a line, in any cell (ClearSolutions, ClearHiddenTests).
_NBGRADER_MARKERS = tuple(m.lstrip("# ") for m in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN))

CONFIG = '''\
# nbgrader's configuration for the vitcourse chapters, written by
# `python -m vitcourse student --format nbgrader`, which never overwrites it: edit it freely.
c = get_config()  # noqa: F821 (nbgrader defines get_config)

# Your course's id, as nbgrader's exchange knows it (release_assignment, fetch, submit, collect).
c.CourseDirectory.course_id = "vitcourse"

# How long one cell may run when nbgrader autogrades (its default is 30 s; `vitcourse grade`
# allows 120 s). Grade in fast mode, as `make grade` does: VITCOURSE_FAST=1 nbgrader autograde ...
c.Execute.timeout = 120
'''

STUB_CONFIG = '''
# The stub nbgrader puts where an answer was, in the language of these chapters (an edition's).
c.ClearSolutions.code_stub = {{"python": {stub!r}}}
'''


def nbgrader_config(lang: str = "en") -> str:
    """The course's nbgrader_config.py; for an edition (``ko``, ``ja``) nbgrader's stubs speak
    its language, as the course's own student copies do."""
    if lang == "en":
        return CONFIG
    return CONFIG + STUB_CONFIG.format(stub=f"{translate(STUB_COMMENT, lang)}\nraise NotImplementedError()")


def grade_id(exercise_id: str, part: str) -> str:
    """nbgrader's id of an exercise's cell: ("01.2", "check") -> "ex01_2_check"."""
    return f"ex{exercise_id.replace('.', '_')}_{part}"


def _meta(grade_id: str, *, solution: bool = False, grade: bool = False, locked: bool = False,
          points: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked,
                            "schema_version": SCHEMA_VERSION, "solution": solution}
    if grade:
        meta["points"] = points
    return meta


def exercise_points(exercise_ids: list[str]) -> dict[str, int]:
    """Points of each exercise, from the difficulty its ``@exercise(...)`` checker gives."""
    from ..checks import registered_exercises
    from .student import import_check_modules

    import_check_modules()
    known = registered_exercises()
    return {i: POINTS.get(known[i].difficulty, DEFAULT_POINTS) if i in known else DEFAULT_POINTS
            for i in exercise_ids}


def nbgrader_notebook(nb: Any, name: str = "notebook", points: dict[str, float] | None = None) -> Any:
    """Chapter `nb` (file name `name`) as an nbgrader source notebook: the solutions and hidden
    tests kept, outputs cleared, and nbgrader's metadata on the cells (see the module's docstring).

    Args:
        points: the points of each exercise by id; None takes them from the checkers (`POINTS`).

    Raises ValueError listing the problems if the chapter's exercises are malformed, if its check
    cells come before the import of its checker, or if a cell other than an exercise's mentions
    one of nbgrader's markers (nbgrader would take it for one).
    """
    parsed = parse_notebook(nb, name)
    if parsed.problems:
        raise ValueError(f"{name} has malformed exercises:\n  " + "\n  ".join(parsed.problems))
    if points is None:
        points = exercise_points([ex.exercise_id for ex in parsed.exercises])
    out = strip_notebook(nb)
    roles: dict[int, dict[str, Any]] = {}
    for ex in parsed.exercises:
        cells = sorted({r.cell for r in ex.regions})
        for k, index in enumerate(cells):
            part = "solution" if k == 0 else f"solution_{k + 1}"
            roles[index] = _meta(grade_id(ex.exercise_id, part), solution=True)
        roles[ex.check_cell] = _meta(grade_id(ex.exercise_id, "check"), grade=True, locked=True,
                                     points=points.get(ex.exercise_id, DEFAULT_POINTS))
    problems = []
    importer = next((i for i, c in enumerate(nb.cells)
                     if c.cell_type == "code" and CHECKER_IMPORT.search(c.source)), None)
    if parsed.exercises and (importer is None or importer > parsed.exercises[0].check_cell):
        problems.append(f"{name}: no cell before the first check cell imports the chapter's checker "
                        "(`from vitcourse.checks import chNN_name as check`)")
    number = _CHAPTER_NUMBER.match(Path(name).name)
    prefix = f"ch{number.group(1)}" if number else re.sub(r"[^A-Za-z0-9_-]", "_", Path(name).stem)
    for index, cell in enumerate(out.cells):
        cell.metadata.pop("nbgrader", None)
        if index in roles:
            cell.metadata["nbgrader"] = roles[index]
            continue
        if any(marker in cell.source for marker in _NBGRADER_MARKERS):
            problems.append(f"{name}, cell {index}: mentions one of nbgrader's markers "
                            f"({', '.join(_NBGRADER_MARKERS)}) outside an exercise; nbgrader would "
                            "take it for one")
        if cell.cell_type == "markdown" or index == importer:
            cell.metadata["nbgrader"] = _meta(f"{prefix}_locked_{index:03d}", locked=True)
    if problems:
        raise ValueError(f"{name} cannot be exported for nbgrader:\n  " + "\n  ".join(problems))
    return out


def nbgrader_notebook_text(path: str | Path) -> str:
    """The nbgrader source notebook of the chapter at `path`, as the text of an .ipynb file."""
    import nbformat

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = nbgrader_notebook(nbformat.reads(text, as_version=4), path.name)
    return notebook_text(nb, trailing_newline=text.endswith("\n"))


def assignment_name(path: str | Path) -> str:
    """The nbgrader assignment of a chapter: its file name's stem ("01_patches")."""
    return Path(path).stem


def write_nbgrader_course(paths: list[Path], out: str | Path) -> tuple[list[Path], list[Path], bool]:
    """Write `out`/source/<chapter>/<chapter>.ipynb for each chapter in `paths` with exercises,
    and `out`/nbgrader_config.py unless it exists (its stubs in the chapters' language, when they
    are an edition's).

    Returns the notebooks written, the chapters skipped (no exercises), and whether the config
    was written. Every chapter is converted before anything is written.
    """
    import nbformat

    texts: dict[Path, str] = {}
    skipped: list[Path] = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if not parse_notebook(nbformat.reads(text, as_version=4), path.name).exercises:
            skipped.append(path)
            continue
        texts[path] = nbgrader_notebook_text(path)
    out = Path(out)
    written = []
    for path, text in texts.items():
        target = out / "source" / assignment_name(path) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    config = out / CONFIG_NAME
    new_config = not config.exists()
    if new_config:
        out.mkdir(parents=True, exist_ok=True)
        langs = {folder_language(path) for path in paths}
        config.write_text(nbgrader_config(langs.pop() if len(langs) == 1 else "en"), encoding="utf-8")
    return written, skipped, new_config
