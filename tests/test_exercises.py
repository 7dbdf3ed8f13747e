"""Student copies, the notebooks' exercise format, and grading (vitcourse.exercises).

The mechanism is tested on a synthetic chapter written here (with its own small check module),
then on every real chapter in notebooks/: well formed, student copy consistent, and the student
copy runs end to end (fast mode) with only its check cells failing, as an instructor hands it out.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from tools.nbbuild import code, md, write_chapter
from vitcourse.checks import registered_exercises
from vitcourse.exercises import student as student_cmd
from vitcourse.exercises.grade import execute_notebook, grade
from vitcourse.exercises.notebook import (BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION,
                                          check_id, notebook_text, parse_notebook, stub_lines,
                                          student_notebook)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Every chapter with exercises: its student copy is executed end to end, as an instructor hands it out.
END_TO_END_CHAPTERS = [p.name for p in CHAPTERS if student_cmd.parse_chapter(p).exercises]

CHECKS_MODULE = '''
from vitcourse.checks import exercise, expect_equal


@exercise("98.1", "double a list of numbers", difficulty="easy", minutes=5)
def double(student_double):
    numbers = [3, -1, 4, 1.5, 0]
    expect_equal("double([3, -1, 4, 1.5, 0])", student_double(list(numbers)),
                 [2 * n for n in numbers])


@exercise("98.2", "the number of 7x7 patches of a 28x28 image", difficulty="easy", minutes=2)
def num_patches(value):
    expect_equal("num_patches", value, 16)


@exercise("98.3", "a class whose forward reverses a list", difficulty="medium", minutes=10)
def flip(flipper):
    expect_equal("Flip().forward([1, 2, 3, 5])", flipper.forward([1, 2, 3, 5]), [5, 3, 2, 1])
'''
# The same checks without vitcourse (so without importing torch): the grading test's kernels start
# in about a second even on a loaded machine, which keeps its time limits short. The messages
# follow vitcourse.checks.exercise's format, which the grader reads.
PLAIN_CHECKS_MODULE = '''
import functools


class ExerciseError(AssertionError):
    pass


def exercise(exercise_id, title, **info):
    def decorate(check):
        @functools.wraps(check)
        def run(*args):
            try:
                check(*args)
            except ExerciseError as exc:
                raise ExerciseError(f"Exercise {exercise_id} ({title}): {exc}") from None
            print(f"Exercise {exercise_id} passed: {title}.")
        return run
    return decorate


def expect_equal(what, got, expected):
    if got != expected:
        raise ExerciseError(f"{what} is wrong: expected {expected!r}, got {got!r}")
''' + CHECKS_MODULE.replace("from vitcourse.checks import exercise, expect_equal", "")

SOLUTION_DOUBLE = f'''
def double(numbers):
    \"\"\"Each number times two.\"\"\"
    {BEGIN_SOLUTION}
    doubled = [n + n for n in numbers]
    return doubled
    {END_SOLUTION}
'''
CHECK_DOUBLE = f'''
# check: 98.1
check.double(double)
{BEGIN_HIDDEN}
assert double([1, 2]) == [2, 4], "hidden test failed"
{END_HIDDEN}
'''
SOLUTION_PATCHES = f'''
{BEGIN_SOLUTION}
num_patches = (28 // 7) ** 2
{END_SOLUTION}
print("the answer cell ran")
'''
SOLUTION_FLIP = f'''
class Flip:
    \"\"\"Reverses a list.\"\"\"

    {BEGIN_SOLUTION}
    def forward(self, items):
        return items[::-1]
    {END_SOLUTION}
'''


def synthetic_cells(double: str = SOLUTION_DOUBLE, patches: str = SOLUTION_PATCHES,
                    flip: str = SOLUTION_FLIP, extra: list | None = None) -> list:
    return [
        md("## A synthetic chapter\n\nThree exercises, one of each kind of solution region."),
        code("import synthetic_checks as check\n\n%precision 3"),
        md("**Exercise 98.1.** Double a tensor."),
        code(double), code(CHECK_DOUBLE),
        code("print([2 * n for n in (1, 2)])  # what follows uses the reference, not double()"),
        md("**Exercise 98.2.** How many patches?"),
        code(patches), code("# check: 98.2\ncheck.num_patches(num_patches)"),
        md("**Exercise 98.3.** Flip."),
        code(flip), code("# check: 98.3\ncheck.flip(Flip())"),
        *(extra or []),
        code("print('the end')"),
    ]


@pytest.fixture
def chapter(tmp_path, monkeypatch):
    """A synthetic chapter notebooks/98_synthetic.ipynb with its check module on the path."""
    (tmp_path / "synthetic_checks.py").write_text(CHECKS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT),
                                                      os.environ.get("PYTHONPATH", "")]))
    folder = tmp_path / "notebooks"
    folder.mkdir()
    return write_chapter(folder / "98_synthetic.ipynb", "98 · Synthetic", "For tests.",
                         synthetic_cells())


def read(path: Path):
    return nbformat.read(str(path), as_version=4)


# --- the format ---------------------------------------------------------------------------------

def test_parse_finds_each_exercise_with_its_regions_and_hidden_tests(chapter):
    parsed = parse_notebook(read(chapter), chapter.name)
    assert parsed.problems == []
    assert [e.exercise_id for e in parsed.exercises] == ["98.1", "98.2", "98.3"]
    assert [len(e.regions) for e in parsed.exercises] == [1, 1, 1]
    assert [e.hidden_tests for e in parsed.exercises] == [True, False, False]
    double = parsed.exercises[0].regions[0]
    assert (double.start, double.end, double.indent) == (2, 5, "    ")


@pytest.mark.parametrize("source, problem", [
    (f"def f():\n    {BEGIN_SOLUTION}\n    return 1\n", "never closed"),
    (f"def f():\n    return 1\n    {END_SOLUTION}\n", "without"),
    (f"def f():\n    {BEGIN_SOLUTION}\n    {END_SOLUTION}\n", "empty"),
    (f"def f():\n    {BEGIN_SOLUTION}\n    return 1\n{END_SOLUTION}\n", "different indentation"),
    (f"x = 1  {BEGIN_SOLUTION}\n", "alone on its line"),
    (f"{BEGIN_SOLUTION}\n{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}\n", "again"),
    (f"{BEGIN_HIDDEN}\nassert True\n{END_HIDDEN}\n", "hidden tests outside a check cell"),
])
def test_malformed_solution_regions_are_reported(source, problem):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source),
                                         nbformat.v4.new_code_cell("# check: 01.1\npass")])
    problems = parse_notebook(nb, "01_x.ipynb").problems
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("cells, problem", [
    (["x = 1", "# check: 01.1\npass"], "no solution region"),
    ([f"{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}"], "no '# check: NN.K' cell after it"),
    ([f"{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}", "# check: 02.1\npass"], "is in chapter 01"),
    ([f"{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}", "# check: 1.1\npass"], "should look like"),
    ([f"{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}", "# check: 01.1\npass",
      f"{BEGIN_SOLUTION}\ny = 1\n{END_SOLUTION}", "# check: 01.1\npass"], "second check cell"),
    ([f"{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}",
      f"# check: 01.1\n{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}"], "inside the check cell"),
])
def test_exercises_without_a_check_or_a_solution_are_reported(cells, problem):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    problems = parse_notebook(nb, "01_x.ipynb").problems
    assert any(problem in p for p in problems), problems
    with pytest.raises(ValueError, match="malformed exercises"):
        student_notebook(nb, "01_x.ipynb")


@pytest.mark.parametrize("later, flagged", [
    ("print(double([1]))", True),  # the student's answer, used after the exercise
    ("print(num_patches + 1)", True),
    ("y = Flip().forward([1])", True),
    ("def double(numbers):\n    return [2 * n for n in numbers]\n\nprint(double([1]))", False),
    ("print([2 * n for n in [1]])", False),
])
def test_cells_that_use_the_students_answer_after_the_exercise_are_reported(later, flagged):
    cells = [nbformat.v4.new_code_cell(c.source) for c in synthetic_cells() if c.cell_type == "code"]
    nb = nbformat.v4.new_notebook(cells=cells + [nbformat.v4.new_code_cell(later)])
    problems = parse_notebook(nb, "98_synthetic.ipynb").problems
    assert bool(problems) == flagged, problems
    if flagged:
        assert f"cell {len(cells)}: uses " in problems[0]
        assert "must use the package's reference implementation" in problems[0]


def test_markers_in_markdown_are_reported():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"{BEGIN_SOLUTION}\nx")])
    assert any("markdown cell" in p for p in parse_notebook(nb, "01_x.ipynb").problems)


# --- the student copy -----------------------------------------------------------------------------

def test_student_copy_stubs_solutions_removes_hidden_tests_and_keeps_the_rest(chapter):
    nb = read(chapter)
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x")]
    nb.cells[4].execution_count = 3
    copy = student_notebook(nb, chapter.name)
    src = {i: c.source for i, c in enumerate(copy.cells)}
    assert src[5] == textwrap.dedent('''\
        def double(numbers):
            """Each number times two."""
            # YOUR CODE HERE
            raise NotImplementedError('Exercise 98.1: replace this stub with your code')''')
    assert src[6] == "# check: 98.1\ncheck.double(double)"  # hidden tests gone
    # Top level and class level: the names are bound to placeholders, the cell still runs.
    assert src[9].splitlines() == [
        "# YOUR CODE HERE: replace the lines below with your answer",
        "from vitcourse.exercises import unanswered",
        "num_patches = unanswered('Exercise 98.2: replace this stub with your code')",
        'print("the answer cell ran")']
    assert "    forward = unanswered('Exercise 98.3: replace this stub with your code')" in src[12]
    changed = {5, 6, 9, 12}
    for i, (a, b) in enumerate(zip(nb.cells, copy.cells)):
        assert a.get("id") == b.get("id") and a.metadata == b.metadata
        if i not in changed:
            assert a.source == b.source
        if b.cell_type == "code":
            assert b.outputs == [] and b.execution_count is None
    assert len(copy.cells) == len(nb.cells)
    text = student_cmd.student_copy_text(chapter)
    for marker in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN, "n + n", "hidden test"):
        assert marker not in text
    nbformat.validate(nbformat.reads(text, as_version=4))


def test_student_copy_keeps_the_committed_bytes_outside_the_exercises(chapter):
    """Only the exercise cells' sources differ, as JSON lines, from the chapter's file."""
    import difflib
    original = chapter.read_text().splitlines()
    copy = student_cmd.student_copy_text(chapter).splitlines()
    changed = [l for l in difflib.ndiff(original, copy) if l[:2] in ("- ", "+ ")]
    # Every changed line is a line of a cell's source (JSON strings at the sources' indentation).
    assert changed and all(l[2:].startswith('    "') for l in changed), changed
    assert len([l for l in changed if l.startswith("- ")]) == 15
    assert student_cmd.student_copy_text(chapter).endswith("}\n")


def test_stub_in_a_cell_with_ipython_syntax_is_still_placed_by_scope():
    source = f"%matplotlib inline\ndef f(x):\n    {BEGIN_SOLUTION}\n    return x\n    {END_SOLUTION}"
    from vitcourse.exercises.notebook import Region
    lines = stub_lines(source, Region(0, 2, 4, "    "), "01.1")
    assert lines[-1].strip().startswith("raise NotImplementedError")


def test_top_level_region_without_names_raises_when_run():
    from vitcourse.exercises.notebook import Region
    lines = stub_lines(f"{BEGIN_SOLUTION}\nprint(1)\n{END_SOLUTION}", Region(0, 0, 2, ""), "01.4")
    assert lines == ["# YOUR CODE HERE",
                     "raise NotImplementedError('Exercise 01.4: replace this stub with your code')"]


@pytest.mark.parametrize("lang, script", [("ko", r"[\uac00-\ud7a3]"), ("ja", r"[\u3040-\u30ff]")])
def test_an_editions_stubs_speak_its_language(lang, script):
    from vitcourse.exercises.notebook import Region
    from vitcourse.i18n import folder_language
    raise_stub = stub_lines(f"{BEGIN_SOLUTION}\nprint(1)\n{END_SOLUTION}", Region(0, 0, 2, ""), "01.4", lang)
    names_stub = stub_lines(f"{BEGIN_SOLUTION}\nx = 1\n{END_SOLUTION}", Region(0, 0, 2, ""), "01.4", lang)
    assert raise_stub[0].startswith("# ") and re.search(script, raise_stub[0]), raise_stub
    assert re.search(script, raise_stub[1]) and "01.4" in raise_stub[1], raise_stub
    assert re.search(script, names_stub[0]) and "YOUR CODE" not in " ".join(names_stub), names_stub
    assert folder_language(f"notebooks/{lang}/01_patches.ipynb") == lang
    assert folder_language("notebooks/01_patches.ipynb") == "en"


def test_student_command_writes_copies_and_rejects_unknown_chapters(chapter, tmp_path, capsys):
    from vitcourse.cli import main
    out = tmp_path / "handout"
    assert main(["student", "--notebooks", str(chapter.parent), "--out", str(out), "98"]) == 0
    assert (out / chapter.name).read_text() == student_cmd.student_copy_text(chapter)
    capsys.readouterr()
    assert main(["student", "--notebooks", str(chapter.parent), "--out", str(out), "42"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitcourse student: error: chapters: '42' should name exactly one notebook")
    assert err.count("\n") == 1
    __import__("synthetic_checks")  # its @exercise titles, difficulties and times
    assert main(["student", "--notebooks", str(chapter.parent), "--list"]) == 0
    table = capsys.readouterr().out
    assert "| 98.3 | 98_synthetic | a class whose forward reverses a list | medium | 10 |" in table
    assert "3 exercises; expected time 17 minutes." in table


def test_student_copies_can_open_on_colab_from_where_they_are_published(tmp_path, capsys):
    chapter = ROOT / "notebooks" / "01_patches.ipynb"
    course = student_cmd.student_copy_text(chapter)
    published = student_cmd.student_copy_text(chapter, "https://github.com/prof/vit-hw/tree/main/week1")
    new = "https://colab.research.google.com/github/prof/vit-hw/blob/main/week1/01_patches.ipynb"
    assert new in published and new not in course
    assert "github/vitcourse/vitcourse/blob/main/notebooks/01_patches.ipynb" not in published
    # nothing else changes: the same copy once the link is put back
    old = re.search(r"https://colab\.research\.google\.com/github/[^)\s\"]*01_patches\.ipynb", course).group(0)
    assert published.replace(new, old) == course
    from vitcourse.cli import main
    assert main(["student", "--out", str(tmp_path), "--colab-folder", "github.com/prof/vit-hw", "01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitcourse student: error: argument --colab-folder: colab_folder must be the GitHub folder")
    assert "'github.com/prof/vit-hw'" in err
    assert not list(tmp_path.iterdir()), "nothing is written when the folder is wrong"


def test_synthetic_student_copy_runs_with_only_its_check_cells_failing(chapter):
    nb = student_notebook(read(chapter), chapter.name)
    run = execute_notebook(nb, timeout=120, cwd=chapter.parent)
    assert run.stopped is None
    _assert_only_checks_fail_unimplemented(nb, run)
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "the answer cell ran" in outputs and "the end" in outputs


def _assert_only_checks_fail_unimplemented(nb, run):
    ids = [check_id(c) for c in nb.cells]
    assert any(ids)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if ids[index]:
            assert run.status[index] == "error" and len(errors) == 1, (index, cell.source)
            assert errors[0].ename == "NotImplementedError"
            assert errors[0].evalue.startswith(f"Exercise {ids[index]} (")
            assert "is not implemented yet" in errors[0].evalue
        else:
            assert run.status[index] == "ok", (index, cell.source, errors)


# --- every real chapter ------------------------------------------------------------------------

def test_there_are_chapters_to_check():
    assert CHAPTERS, "notebooks/ has no chapter notebooks"
    assert len(END_TO_END_CHAPTERS) >= 10, END_TO_END_CHAPTERS  # chapters 01-10 have exercises


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_every_chapter_has_well_formed_exercises_and_a_consistent_student_copy(path):
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    # nbformat's round trip keeps the committed bytes (as tools/nbbuild.py writes them), so the
    # student copy differs from the chapter in the exercise cells only.
    assert notebook_text(nb, trailing_newline=text.endswith("\n")) == text
    parsed = parse_notebook(nb, path.name)
    assert parsed.problems == []
    student_cmd.import_check_modules()
    known = registered_exercises()
    copy = nbformat.reads(student_cmd.student_copy_text(path), as_version=4)
    assert len(copy.cells) == len(nb.cells)
    touched = set()
    for ex in parsed.exercises:
        assert ex.exercise_id in known, f"no @exercise({ex.exercise_id!r}, ...) in vitcourse.checks"
        assert copy.cells[ex.check_cell].source.startswith(f"# check: {ex.exercise_id}")
        touched.add(ex.check_cell)
        for region in ex.regions:
            touched.add(region.cell)
            stub = copy.cells[region.cell].source
            assert f"Exercise {ex.exercise_id}:" in stub
            compile(_python(stub), f"{path.name} cell {region.cell}", "exec")
    for i, (a, b) in enumerate(zip(nb.cells, copy.cells)):
        assert (a.cell_type, a.get("id"), a.metadata) == (b.cell_type, b.get("id"), b.metadata)
        if i not in touched:
            assert a.source == b.source
        for marker in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN):
            assert marker not in b.source


def test_exercise_ids_are_unique_across_chapters():
    ids = [e.exercise_id for p in CHAPTERS for e in student_cmd.parse_chapter(p).exercises]
    assert len(ids) == len(set(ids))


def _python(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(source)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("name", END_TO_END_CHAPTERS)
def test_real_chapter_student_copy_runs_with_only_check_cells_failing(name, monkeypatch):
    monkeypatch.setenv("VITCOURSE_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = ROOT / "notebooks" / name
    nb = nbformat.reads(student_cmd.student_copy_text(path), as_version=4)
    run = execute_notebook(nb, timeout=300, cell_timeout=None, cwd=path.parent)
    assert run.stopped is None
    _assert_only_checks_fail_unimplemented(nb, run)


def test_the_instructors_guide_lists_the_current_exercises():
    guide = (ROOT / "notebooks" / "instructors.md").read_text(encoding="utf-8")
    assert student_cmd.updated_guide(guide, CHAPTERS) == guide, (
        "the exercise table or the checks' output in notebooks/instructors.md is stale: run "
        "`python -m vitcourse student --update-guide`")


# --- grading ---------------------------------------------------------------------------------------

WRONG_DOUBLE = SOLUTION_DOUBLE.replace("[n + n for n in numbers]", "[n + n for n in numbers[::-1]]")
CRASH_PATCHES = SOLUTION_PATCHES.replace("num_patches = (28 // 7) ** 2",
                                         "import os\nos._exit(3)")
LOOP_DOUBLE = SOLUTION_DOUBLE.replace("doubled = [n + n for n in numbers]", "while True:\n        pass")
STUBBORN_FLIP = SOLUTION_FLIP.replace("return items[::-1]", textwrap.indent(textwrap.dedent("""\
    while True:
        try:
            while True:
                pass
        except KeyboardInterrupt:
            pass"""), "        ").lstrip())


def _submission(folder: Path, name: str, **cells) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_chapter(path, "98 · Synthetic", "A submission.", synthetic_cells(**cells))
    nb = student_notebook(read(path), path.name)  # what the student got ...
    good = read(path)  # ... and what they wrote back: the answers above, hidden tests removed
    for cell, stub in zip(good.cells, nb.cells):
        if check_id(cell):
            cell.source = stub.source
    nbformat.write(good, str(path))
    return path


CELL_LIMIT = 8  # seconds; generous for these cells, even on a loaded 2-core machine


@pytest.mark.integration
@pytest.mark.slow
def test_grade_scores_correct_wrong_crashing_and_looping_submissions(chapter, tmp_path):
    subs = tmp_path / "submissions"
    _submission(subs, "ada/98_synthetic.ipynb")  # all correct
    _submission(subs, "ben/98_synthetic.ipynb", double=WRONG_DOUBLE)
    _submission(subs, "cai/98_synthetic.ipynb", patches=CRASH_PATCHES)
    _submission(subs, "dee/98_synthetic.ipynb", double=LOOP_DOUBLE, flip=STUBBORN_FLIP)
    tampered = _submission(subs, "eve.ipynb")
    nb = read(tampered)  # eve deletes check 98.3 and rewrites 98.1 to pass without checking
    nb.cells = [c for c in nb.cells if check_id(c) != "98.3"]
    for cell in nb.cells:
        if check_id(cell) == "98.1":
            cell.source = "# check: 98.1\nprint('Exercise 98.1 passed: double a list of numbers.')"
        if "n + n" in cell.source:
            cell.source = cell.source.replace("n + n", "3 * n")
    nbformat.write(nb, str(tampered))
    (subs / "fay").mkdir()
    (subs / "fay" / "98_synthetic.ipynb").write_text("{ not json")
    (subs / "gus").mkdir()
    (subs / "gus" / "98_synthetic.ipynb").write_text(json.dumps(json.loads(
        nbformat.writes(read(subs / "ada" / "98_synthetic.ipynb")))).replace(
        "(28 // 7) ** 2", "(28 // 7) ** 2 +"))  # a syntax error in 98.2

    (tmp_path / "synthetic_checks.py").write_text(PLAIN_CHECKS_MODULE)  # no torch: fast kernels
    out = tmp_path / "scores.csv"
    started = time.monotonic()
    grade(subs, out, timeout=60, cell_timeout=CELL_LIMIT, source=chapter.parent, log=sys.stderr)
    elapsed = time.monotonic() - started
    rows = list(csv.DictReader(out.open()))
    table = {(r["student"], r["exercise"]): (r["passed"], r["message"]) for r in rows}
    ok = {(s, e) for (s, e), (p, _) in table.items() if p == "1"}
    assert ok == {("ada", "98.1"), ("ada", "98.2"), ("ada", "98.3"),
                  ("ben", "98.2"), ("ben", "98.3"),
                  ("cai", "98.1"),
                  ("dee", "98.2"),
                  ("eve", "98.2"), ("eve", "98.3"),
                  ("gus", "98.1"), ("gus", "98.3")}, table
    assert rows[0].keys() == {"student", "file", "exercise", "passed", "message"}
    assert table[("ada", "98.1")][1] == "Exercise 98.1 passed: double a list of numbers."
    assert table[("ben", "98.1")][1] == (
        "ExerciseError: Exercise 98.1 (double a list of numbers): double([3, -1, 4, 1.5, 0]) is "
        "wrong: expected [6, -2, 8, 3.0, 0], got [0, 3.0, 8, -2, 6]")
    assert table[("cai", "98.2")][1].startswith("not run: the kernel died in cell 9")
    assert table[("cai", "98.3")][1] == table[("cai", "98.2")][1]
    assert table[("dee", "98.1")][1].startswith("timed out")
    assert table[("dee", "98.3")][1].startswith("timed out")
    assert "ExerciseError" in table[("eve", "98.1")][1]  # the course's check, hidden tests too
    assert "could not read the notebook" in table[("fay", "98.1")][1]
    assert "NameError" in table[("gus", "98.2")][1]
    assert {r["file"] for r in rows if r["student"] == "gus"} == {"gus/98_synthetic.ipynb"}
    # dee's two loops cost a cell limit each, plus the probe after the stubborn one; the other
    # notebooks a few seconds each.
    assert elapsed < 3 * CELL_LIMIT + 6 * 15, elapsed


FAKE_CHECKER = """\
class _PassEverything:  # a student's attempt to fake the checks
    def __getattr__(self, name):
        return lambda *args, **kwargs: print("\\n".join(f"Exercise 01.{i} passed" for i in range(1, 10)))
check = _PassEverything()
"""


@pytest.mark.integration
@pytest.mark.slow
def test_grade_a_real_chapter_solution_student_copy_and_a_faked_checker(tmp_path):
    """The real chapter 01 with the real checks: the course's solutions pass every exercise, the
    untouched student copy fails each with NotImplementedError, and a copy that re-binds `check`
    to a fake gains nothing (the grader's check cells import their checker themselves)."""
    source = ROOT / "notebooks" / "01_patches.ipynb"
    subs = tmp_path / "submissions"
    (subs / "ana").mkdir(parents=True)
    shutil.copy(source, subs / "ana" / "01_patches.ipynb")
    (subs / "bo").mkdir()
    (subs / "bo" / "01_patches.ipynb").write_text(student_cmd.student_copy_text(source))
    faked = nbformat.reads(student_cmd.student_copy_text(source), as_version=4)
    at = next(i for i, c in enumerate(faked.cells) if "from vitcourse.checks import" in c.source)
    faked.cells.insert(at + 1, nbformat.v4.new_code_cell(FAKE_CHECKER))
    (subs / "eve").mkdir()
    nbformat.write(faked, str(subs / "eve" / "01_patches.ipynb"))

    out = tmp_path / "scores.csv"
    env = {"VITCOURSE_FAST": "1", "MPLBACKEND": "Agg"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        grade(subs, out, timeout=300, cell_timeout=120, log=sys.stderr)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    rows = list(csv.DictReader(out.open()))
    ids = sorted({r["exercise"] for r in rows})
    assert ids == ["01.1", "01.2", "01.3"], ids
    by = {(r["student"], r["exercise"]): r for r in rows}
    for ex in ids:
        assert by[("ana", ex)]["passed"] == "1", by[("ana", ex)]["message"]
        assert by[("ana", ex)]["message"].startswith(f"Exercise {ex} passed")
        for who in ("bo", "eve"):
            assert by[(who, ex)]["passed"] == "0", (who, by[(who, ex)])
            assert by[(who, ex)]["message"].startswith("NotImplementedError"), (who, by[(who, ex)])
            assert f"Exercise {ex}" in by[(who, ex)]["message"]


# --- the command line --------------------------------------------------------------------------

def test_student_check_fails_on_a_malformed_chapter(tmp_path, capsys):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"{BEGIN_SOLUTION}\nx = 1")])
    nbformat.write(nb, str(tmp_path / "07_broken.ipynb"))
    from vitcourse.cli import main
    assert main(["student", "--notebooks", str(tmp_path), "--check"]) == 1
    assert "never closed by '### END SOLUTION'" in capsys.readouterr().err
    assert main(["student", "--notebooks", str(tmp_path), "--out", str(tmp_path / "s")]) == 1
    assert not (tmp_path / "s").exists()  # nothing written when a chapter is malformed
    capsys.readouterr()
    assert main(["student", "--notebooks", str(tmp_path / "nowhere"), "--list"]) == 2
    assert "argument --notebooks: expected an existing folder" in capsys.readouterr().err
    assert main(["student", "--notebooks", str(tmp_path), "--update-guide"]) == 2
    assert "no instructors' guide at" in capsys.readouterr().err


def test_grade_command_rejects_bad_arguments(tmp_path, capsys):
    from vitcourse.cli import main
    assert main(["grade", str(tmp_path), "--timeout", "0"]) == 2
    assert "argument --timeout: expected a number > 0, got '0'" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "missing"), "--out", str(tmp_path / "s.csv")]) == 2
    assert "argument submissions: expected an existing folder" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()
    with pytest.raises(ValueError, match="cell_timeout must be a positive number"):
        execute_notebook(nbformat.v4.new_notebook(), timeout=10, cell_timeout=-1)
