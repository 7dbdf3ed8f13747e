"""`python -m vitcourse student --format nbgrader`: the chapters as nbgrader source notebooks.

The unit tier checks the export's cell metadata on a real chapter (nbgrader's own validator
included) and the command's errors; the integration tier runs the real nbgrader on the export:
`generate_assignment` for every chapter with exercises, then `autograde` and `export` for two
chapters, the reference solutions (the source notebooks, submitted as they are) against the
untouched release copies, and compares the scores with `python -m vitcourse grade` on the same
notebooks (~100 s on 2 cores, most of it the eight fast-mode runs of the two chapters).
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vitcourse.checks import registered_exercises
from vitcourse.exercises import student as student_cmd
from vitcourse.exercises.grade import grade
from vitcourse.exercises.nbgrader_export import (CONFIG_NAME, POINTS, grade_id, nbgrader_notebook,
                                                 write_nbgrader_course)
from vitcourse.exercises.notebook import BEGIN_HIDDEN, BEGIN_SOLUTION, parse_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHAPTER = NOTEBOOKS / "01_patches.ipynb"
WITH_EXERCISES = [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if student_cmd.parse_chapter(p).exercises]
# Autograded for real: two short chapters (each runs four times in fast mode, ~9 s a run).
AUTOGRADED = ["01_patches", "02_attention"]


def export(out: Path, *chapters: str) -> int:
    from vitcourse.cli import main
    return main(["student", "--format", "nbgrader", "--out", str(out), *chapters])


def test_the_export_marks_solutions_checks_and_read_only_cells_with_stable_ids(tmp_path, capsys):
    assert export(tmp_path / "a", "00", "01") == 0
    said = capsys.readouterr().out
    assert "wrote 1 nbgrader source notebooks (3 exercises)" in said and "skipped 00_setup" in said
    path = tmp_path / "a" / "source" / "01_patches" / "01_patches.ipynb"
    assert sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.*")) == [
        CONFIG_NAME, "source/01_patches/01_patches.ipynb"]
    # A second export, here or elsewhere, gives the same bytes: the grade ids are stable.
    assert export(tmp_path / "b", "01") == 0
    assert (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes() == path.read_bytes()
    (tmp_path / "a" / CONFIG_NAME).write_text("c = get_config()  # the instructor's own\n")
    assert export(tmp_path / "a", "01") == 0
    assert "kept" in capsys.readouterr().out.splitlines()[-1]
    assert (tmp_path / "a" / CONFIG_NAME).read_text() == "c = get_config()  # the instructor's own\n"
    assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()

    nb = nbformat.read(str(path), as_version=4)
    chapter = nbformat.read(str(CHAPTER), as_version=4)
    assert [c.source for c in nb.cells] == [c.source for c in chapter.cells]  # solutions and hidden tests kept
    assert all(not c.get("outputs") for c in nb.cells)
    parsed = parse_notebook(chapter, CHAPTER.name)
    known = registered_exercises()
    roles = {}
    for ex in parsed.exercises:
        [cell] = {r.cell for r in ex.regions}
        roles[cell] = {"grade": False, "grade_id": grade_id(ex.exercise_id, "solution"), "locked": False,
                       "schema_version": 3, "solution": True}
        roles[ex.check_cell] = {"grade": True, "grade_id": grade_id(ex.exercise_id, "check"), "locked": True,
                                "points": POINTS[known[ex.exercise_id].difficulty], "schema_version": 3,
                                "solution": False}
    assert roles[8]["grade_id"] == "ex01_1_check" and roles[7]["grade_id"] == "ex01_1_solution"
    assert [roles[parsed.by_id()[i].check_cell]["points"] for i in ("01.1", "01.2", "01.3")] == [2, 1, 3]
    assert BEGIN_HIDDEN in nb.cells[8].source and BEGIN_SOLUTION in nb.cells[7].source
    importer = next(i for i, c in enumerate(nb.cells) if "from vitcourse.checks import ch01_patches as check"
                    in c.source)
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader")
        if index in roles:
            assert meta == roles[index], index
        elif cell.cell_type == "markdown" or index == importer:  # the lesson's text, the checker's import
            assert meta == {"grade": False, "grade_id": f"ch01_locked_{index:03d}", "locked": True,
                            "schema_version": 3, "solution": False}, index
        else:  # the chapter's other code: the student may run and change it
            assert meta is None, index
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids))

    from nbgrader.nbgraderformat import MetadataValidator  # nbgrader's own check of the metadata
    MetadataValidator().validate_nb(nb)


@pytest.mark.parametrize("lang", ["ko", "ja"])
def test_an_editions_nbgrader_config_gives_nbgrader_the_editions_stub(lang, tmp_path):
    from traitlets.config import Config
    from nbgrader.preprocessors import ClearSolutions
    from vitcourse.i18n import STUB_COMMENT, translate

    write_nbgrader_course([NOTEBOOKS / lang / CHAPTER.name], tmp_path)
    config = Config()
    exec((tmp_path / CONFIG_NAME).read_text(encoding="utf-8"), {"get_config": lambda: config})
    stub = ClearSolutions(config=config).code_stub["python"]
    assert stub == f"{translate(STUB_COMMENT, lang)}\nraise NotImplementedError()"
    assert stub != ClearSolutions().code_stub["python"]  # not nbgrader's English one
    write_nbgrader_course([CHAPTER], tmp_path / "en")
    assert "code_stub" not in (tmp_path / "en" / CONFIG_NAME).read_text(encoding="utf-8")


def test_an_export_nbgrader_would_misread_is_refused():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
        nbformat.v4.new_code_cell("# check: 97.1\ncheck.f(f)"),
        nbformat.v4.new_code_cell("from vitcourse.checks import ch97_x as check"),
        nbformat.v4.new_markdown_cell("nbgrader's `### BEGIN SOLUTION` marker starts a solution"),
    ])
    with pytest.raises(ValueError) as error:
        nbgrader_notebook(nb, "97_x.ipynb", points={"97.1": 1})
    message = str(error.value)
    assert "no cell before the first check cell imports the chapter's checker" in message
    assert "97_x.ipynb, cell 3: mentions one of nbgrader's markers" in message
    nb.cells = [nb.cells[2], *nb.cells[:2]]
    assert nbgrader_notebook(nb, "97_x.ipynb", points={"97.1": 1}).cells[2].metadata["nbgrader"]["points"] == 1


@pytest.mark.parametrize("argv, needles", [
    (["--format", "nbgradr"], ["argument --format: expected a format (one of student, nbgrader",
                               "did you mean 'nbgrader'?", "got 'nbgradr'"]),
    (["--format", "nbgrader", "--colab-folder", "https://github.com/p/hw/tree/main/w1"],
     ["argument --colab-folder: only for --format student"]),
])
def test_a_bad_format_is_one_line(argv, needles, tmp_path, capsys):
    from vitcourse.cli import main
    assert main(["student", "--out", str(tmp_path / "out"), *argv, "01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vitcourse student: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not (tmp_path / "out").exists()


# --- the real nbgrader ------------------------------------------------------------------------

def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """`nbgrader ARGS` in the course folder, as an instructor runs it (the venv's bin on PATH:
    nbgrader runs `alembic` to create its gradebook)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
           "VITCOURSE_FAST": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([str(bin_dir / "nbgrader"), *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.integration
@pytest.mark.slow
def test_nbgrader_releases_every_chapter_and_autogrades_two_as_vitcourse_grade_does(tmp_path, monkeypatch):
    course = tmp_path / "course"
    written, _, _ = write_nbgrader_course(WITH_EXERCISES, course)
    assert len(written) == len(WITH_EXERCISES)

    nbgrader(course, "generate_assignment", "*", "--force")
    for path in WITH_EXERCISES:
        release = nbformat.read(str(course / "release" / path.stem / path.name), as_version=4)
        text = "\n".join(c.source for c in release.cells)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, path.name
        assert "raise NotImplementedError()" in text, path.name

    subs = tmp_path / "submissions"  # the same notebooks, for `vitcourse grade`
    for name in AUTOGRADED:
        for student, folder in (("reference", "source"), ("release", "release")):
            for target in (course / "submitted" / student / name / f"{name}.ipynb",
                           subs / student / f"{name}.ipynb"):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(course / folder / name / f"{name}.ipynb", target)
        nbgrader(course, "autograde", name, "--force", "--create")
    nbgrader(course, "export", "--to", "grades.csv")

    rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader((course / "grades.csv").open())}
    from nbgrader.api import Gradebook
    cells = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for name in AUTOGRADED:
            for student in ("reference", "release"):
                for grade_cell in gradebook.find_notebook(name, name).grade_cells:
                    got = gradebook.find_grade(grade_cell.name, name, name, student)
                    cells[(student, name, grade_cell.name)] = (got.auto_score, grade_cell.max_score)
    known = registered_exercises()
    for name in AUTOGRADED:
        full = sum(POINTS[known[e.exercise_id].difficulty]
                   for e in student_cmd.parse_chapter(NOTEBOOKS / f"{name}.ipynb").exercises)
        assert float(rows[(name, "reference")]["score"]) == float(rows[(name, "reference")]["max_score"]) == full
        assert float(rows[(name, "release")]["score"]) == 0, rows[(name, "release")]

    # `vitcourse grade` on the same notebooks, in fast mode, from the submission's folder as nbgrader
    # runs them from its own: the chapters find their data and checks through the package.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    scores = grade(subs, tmp_path / "scores.csv", timeout=300, cell_timeout=120, fast=True, log=sys.stderr)
    ours = {(s.student, Path(s.file).stem, grade_id(s.exercise, "check")): s.passed for s in scores}
    theirs = {key: auto == most for key, (auto, most) in cells.items()}
    assert ours == theirs
    assert {key[0] for key, passed in ours.items() if passed} == {"reference"}
