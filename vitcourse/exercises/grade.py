"""``python -m vitcourse grade SUBMISSIONS [--out scores.csv] [--timeout 300]``: grade notebooks.

Each ``.ipynb`` under SUBMISSIONS (``alice.ipynb``, or ``alice/01_patches.ipynb``: the first folder
names the student) runs in a fresh kernel, cell by cell, errors allowed. Before it runs, every
check cell is replaced by the chapter's own check cell (hidden tests included), and check cells the
student deleted are appended at the end, so what is graded is the course's check, not the
student's copy of it. A check cell passes when it prints ``Exercise NN.K passed``.

Time limits: the whole notebook gets ``--timeout`` seconds (kernel start included) and one cell at
most ``--cell-timeout``; a cell over its limit is interrupted and the notebook goes on, a kernel
that ignores the interrupt or dies is stopped, and the exercises it did not reach score 0 with the
reason. One submission's crash, loop or syntax error never stops the others.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cli_args import CommandError, existing_folder, output_file, output_folder, positive_float
from ..i18n import PASSED, every_translation
from .notebook import CHECKER_IMPORT, check_id, parse_notebook, read_notebook
from .student import NOTEBOOKS

FIELDS = ("student", "file", "exercise", "passed", "message")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MESSAGE_CHARS = 500
_TIMEOUT_ENAME = "VitcourseCellTimeLimit"  # nbclient's reply for a cell over its time limit
_IOPUB_SECONDS = 10  # how long a finished cell's output may trail its reply
_PROBE_SECONDS = 5  # how long an interrupted kernel has to answer a trivial cell


@dataclass
class Score:
    """One row of the grades CSV."""

    student: str
    file: str
    exercise: str
    passed: bool
    message: str

    def row(self) -> dict[str, str]:
        return {"student": self.student, "file": self.file, "exercise": self.exercise,
                "passed": "1" if self.passed else "0", "message": self.message}


@dataclass
class Execution:
    """What happened when a notebook ran: per code cell "ok", "error", "timeout" or "not run"."""

    status: dict[int, str]
    stopped: str | None  # why the notebook stopped early, None if every cell ran
    seconds: float


def _clean(text: str) -> str:
    text = _ANSI.sub("", text).strip()
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS - 3] + "..."


def _error_output(ename: str, evalue: str) -> Any:
    import nbformat

    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])


def execute_notebook(nb: Any, timeout: float = 300, cell_timeout: float | None = 120,
                     cwd: str | Path | None = None, env: dict[str, str] | None = None,
                     kernel_name: str = "python3") -> Execution:
    """Run every code cell of `nb` in place in a fresh kernel, errors allowed, within `timeout` s.

    A cell running longer than `cell_timeout` seconds (or than what is left of `timeout`) gets an
    error output ``TimeoutError`` and the kernel an interrupt; if the kernel does not become idle
    within a few seconds, or dies, the notebook stops there and the kernel is killed.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    if not timeout or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if cell_timeout is not None and cell_timeout <= 0:
        raise ValueError(f"cell_timeout must be a positive number of seconds or None, "
                         f"got {cell_timeout!r}")
    start = time.monotonic()
    deadline = start + timeout
    limit = {"seconds": 1}  # the timeout of the cell about to run (read by nbclient)
    timed_out: list[int] = []  # cells whose time ran out (told by nbclient's error hook)

    def on_cell_error(cell: Any, cell_index: int, execute_reply: dict) -> None:
        if execute_reply.get("content", {}).get("ename") == _TIMEOUT_ENAME:
            timed_out.append(cell_index)

    # On a timeout nbclient interrupts the kernel and reports the reply below, then waits up to
    # iopub_timeout for the cell's last output; a kernel that ignores the interrupt is caught by
    # the probe cell after it.
    client = NotebookClient(
        nb, kernel_name=kernel_name, allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": _TIMEOUT_ENAME, "evalue": "time limit", "traceback": []},
        on_cell_error=on_cell_error, timeout_func=lambda cell: limit["seconds"],
        record_timing=False, shutdown_kernel="immediate", startup_timeout=max(10, int(timeout)),
        # On a loaded machine a cell's output can trail its reply by seconds (default: 4 s).
        iopub_timeout=_IOPUB_SECONDS,
        resources={"metadata": {"path": str(cwd)}} if cwd else {})
    status = {i: "not run" for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    stopped: str | None = None

    def set_limit(cap: float | None) -> float:
        left = deadline - time.monotonic()
        seconds = left if cap is None else min(cap, left)
        limit["seconds"] = max(1, math.ceil(seconds))
        return seconds

    try:
        with client.setup_kernel(env=dict(os.environ if env is None else env)):
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if not cell.source.strip():
                    status[index] = "ok"
                    continue
                if set_limit(cell_timeout) <= 0:
                    stopped = f"the notebook used up its {timeout:g} s before cell {index}"
                    break
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    status[index] = "error"
                    cell.outputs.append(_error_output(
                        "DeadKernelError", f"the kernel died while running cell {index}"))
                    stopped = (f"the kernel died in cell {index} (a crash, os._exit or out of "
                               "memory)")
                    break
                if index not in timed_out:
                    failed = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
                    status[index] = "error" if failed else "ok"
                    continue
                status[index] = "timeout"
                cell.outputs.append(_error_output(
                    "TimeoutError", f"cell {index} did not finish within {limit['seconds']} s"))
                # The kernel was interrupted: does it answer a trivial cell now?
                if set_limit(_PROBE_SECONDS) < 1:
                    stopped = (f"the notebook used up its {timeout:g} s in cell {index}, which "
                               "did not finish")
                    break
                probe = nbformat.v4.new_code_cell("pass")
                before = len(timed_out)
                client.iopub_timeout = 2
                try:
                    client.execute_cell(probe, index)
                except DeadKernelError:
                    timed_out.append(index)
                finally:
                    client.iopub_timeout = _IOPUB_SECONDS
                    nb.cells[index] = cell  # execute_cell stores the probe in the cell's place
                if len(timed_out) > before:
                    stopped = (f"cell {index} did not finish within its time limit and ignored "
                               "the interrupt")
                    break
    except Exception as exc:  # kernel failed to start, or nbclient itself failed
        if stopped is None:
            stopped = f"the notebook could not be run: {type(exc).__name__}: {_clean(str(exc))}"
    return Execution(status, stopped, time.monotonic() - start)


def reference_checks(source: str | Path | None) -> dict[str, dict[str, Any]]:
    """Check cells of the course's chapters by exercise id: {"01.2": {"source": ..., "chapter":
    "01_patches.ipynb", "order": [ids of that chapter]}}; empty when `source` is None or absent."""
    if source is None or not Path(source).is_dir():
        return {}
    checks: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(source).glob("*.ipynb")):
        try:
            nb = read_notebook(path)
        except Exception:
            continue
        parsed = parse_notebook(nb, path.name)
        order = [e.exercise_id for e in parsed.exercises]
        prelude = _checker_import(nb)
        for ex in parsed.exercises:
            checks.setdefault(ex.exercise_id, {"source": _self_contained(nb.cells[ex.check_cell].source, prelude),
                                               "chapter": path.name, "order": order})
    return checks




def _checker_import(nb: Any) -> str:
    """The chapter's `from vitcourse.checks import chNN_x as check` line, re-binding a fresh copy."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            found = CHECKER_IMPORT.search(cell.source)
            if found:
                module, alias = found.groups()
                # A check cell that imports its checker itself cannot be fooled by a student's
                # cell that re-bound the name, nor broken by one that deleted the import cell;
                # reload() also undoes monkey-patching of the checker module's own functions.
                return (f"import importlib as _importlib, vitcourse.checks.{module} as {alias}  "
                        f"# added by the grader\n{alias} = _importlib.reload({alias})")
    return ""


def _self_contained(check_source: str, prelude: str) -> str:
    """The check cell with `prelude` after its first line (the `# check: NN.K` line stays first)."""
    if not prelude:
        return check_source
    first, _, rest = check_source.partition("\n")
    return f"{first}\n{prelude}\n{rest}"


def _expected_ids(path: Path, found: list[str], checks: dict[str, dict[str, Any]]) -> list[str]:
    """The exercises a submission should have: those of every chapter it shows signs of being."""
    chapters = {checks[i]["chapter"] for i in found if i in checks}
    for info in checks.values():  # a file named after a chapter ("alice_01_patches.ipynb")
        if Path(info["chapter"]).stem in path.stem:
            chapters.add(info["chapter"])
    expected = [i for ch in sorted(chapters) for i in next(
        v["order"] for v in checks.values() if v["chapter"] == ch)]
    return list(dict.fromkeys([*expected, *found]))


def _check_result(cell: Any, exercise_id: str, status: str, stopped: str | None) -> tuple[bool, str]:
    if status == "not run":
        return False, f"not run: {stopped or 'the notebook stopped before this check'}"
    outputs = cell.get("outputs", [])
    errors = [o for o in outputs if o.get("output_type") == "error"]
    if status == "timeout":
        limits = [e for e in errors if e.get("ename") == "TimeoutError"]
        return False, f"timed out: {_clean(limits[-1].get('evalue', '')) if limits else ''}"
    if errors:
        err = errors[0]
        return False, _clean(f"{err.get('ename', 'Error')}: {err.get('evalue', '')}")
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    # the confirmation in any language (a Korean submission prints the Korean line)
    prefixes = [t.split("{title}")[0].format(exercise_id=exercise_id).strip()
                for t in every_translation(PASSED)]
    confirmation = re.search("^(?:" + "|".join(map(re.escape, prefixes)) + ").*$",
                             _ANSI.sub("", text), re.MULTILINE)
    if confirmation:
        return True, confirmation.group(0).strip()
    return False, "the check cell ran but did not print the exercise's confirmation"


def grade_notebook(path: str | Path, student: str, file: str, checks: dict[str, dict[str, Any]],
                   timeout: float = 300, cell_timeout: float | None = 120,
                   cwd: str | Path | None = None, env: dict[str, str] | None = None,
                   kernel_name: str = "python3", keep: str | Path | None = None) -> list[Score]:
    """Run one submitted notebook and score each of its exercises (see the module's docstring)."""
    import nbformat

    path = Path(path)
    try:
        nb = read_notebook(path)
    except Exception as exc:
        ids = _expected_ids(path, [], checks)
        message = f"could not read the notebook: {type(exc).__name__}: {_clean(str(exc))}"
        return [Score(student, file, i, False, message) for i in ids] or [
            Score(student, file, "-", False, message)]
    found = [i for i in (check_id(c) for c in nb.cells) if i]
    expected = _expected_ids(path, found, checks)
    for cell in nb.cells:  # the course's check (with its hidden tests), not the student's copy
        ex_id = check_id(cell)
        if ex_id in checks:
            cell.source = checks[ex_id]["source"]
    for ex_id in expected:
        if ex_id not in found and ex_id in checks:
            nb.cells.append(nbformat.v4.new_code_cell(checks[ex_id]["source"]))
    if not expected:
        return [Score(student, file, "-", False, "no '# check: NN.K' cell and no chapter name "
                      "found in this notebook")]
    execution = execute_notebook(nb, timeout=timeout, cell_timeout=cell_timeout,
                                 cwd=cwd if cwd else path.parent, env=env, kernel_name=kernel_name)
    if keep is not None:
        target = Path(keep) / file
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(target))
    cells = {}
    for index, cell in enumerate(nb.cells):
        ex_id = check_id(cell)
        if ex_id and ex_id not in cells:
            cells[ex_id] = index
    scores = []
    for ex_id in expected:
        index = cells[ex_id]
        passed, message = _check_result(nb.cells[index], ex_id, execution.status.get(index, "not run"),
                                        execution.stopped)
        scores.append(Score(student, file, ex_id, passed, message))
    return scores


def find_submissions(folder: str | Path) -> list[tuple[str, str, Path]]:
    """(student, file relative to `folder`, path) of every .ipynb under `folder`, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"submissions must be a folder of .ipynb files, got {str(folder)!r}")
    found = []
    for path in sorted(folder.rglob("*.ipynb")):
        rel = path.relative_to(folder)
        if ".ipynb_checkpoints" in rel.parts or not path.is_file():
            continue
        student = rel.parts[0] if len(rel.parts) > 1 else path.stem
        found.append((student, rel.as_posix(), path))
    return found


def grade(submissions: str | Path, out: str | Path, timeout: float = 300,
          cell_timeout: float | None = 120, source: str | Path | None = NOTEBOOKS,
          cwd: str | Path | None = None, fast: bool | None = None, kernel_name: str = "python3",
          keep: str | Path | None = None, log: Any = sys.stdout) -> list[Score]:
    """Grade every notebook under `submissions` and write the CSV `out`; return the scores.

    Args:
        fast: True sets VITCOURSE_FAST=1 in the kernels, False removes it, None passes the
            current environment's value through.
    """
    env = dict(os.environ)
    if fast is True:
        env["VITCOURSE_FAST"] = "1"
    elif fast is False:
        env.pop("VITCOURSE_FAST", None)
    submitted = find_submissions(submissions)  # a bad folder fails before anything is written
    checks = reference_checks(source)
    scores: list[Score] = []
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for student, file, path in submitted:
            started = time.monotonic()
            try:
                rows = grade_notebook(path, student, file, checks, timeout=timeout,
                                      cell_timeout=cell_timeout, cwd=cwd, env=env,
                                      kernel_name=kernel_name, keep=keep)
            except Exception as exc:  # never let one submission stop the others
                rows = [Score(student, file, "-", False,
                              f"grading failed: {type(exc).__name__}: {_clean(str(exc))}")]
            for score in rows:
                writer.writerow(score.row())
            handle.flush()  # a long run can be followed, and survives an interruption
            scores.extend(rows)
            passed = sum(s.passed for s in rows)
            print(f"{file}: {passed}/{len(rows)} passed ({time.monotonic() - started:.0f} s)",
                  file=log)
    return scores


def check_kernel(name: str) -> None:
    """Fail before grading, not once per notebook, when no Jupyter kernel is called `name`."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    specs = KernelSpecManager()
    try:
        specs.get_kernel_spec(name)
    except NoSuchKernel:
        raise CommandError(f"argument --kernel: expected an installed Jupyter kernel "
                           f"({', '.join(sorted(specs.find_kernel_specs()))}), got {name!r}") from None


def _source_folder(text: str) -> Path | None:
    return existing_folder(text) if text else None  # '' grades the submitted checks as they are


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", type=existing_folder,
                        help="folder of submitted .ipynb files (searched recursively)")
    parser.add_argument("--out", type=output_file, default="scores.csv",
                        help="the CSV to write (default: scores.csv)")
    parser.add_argument("--timeout", type=positive_float, default=300,
                        help="seconds for each notebook, kernel start included (default: 300)")
    parser.add_argument("--cell-timeout", type=positive_float, default=120,
                        help="seconds for one cell before it is interrupted (default: 120)")
    # A Path default is not passed through `type`: a course without its chapters grades the
    # submitted checks (see reference_checks) instead of failing on an option never given.
    parser.add_argument("--source", type=_source_folder, default=NOTEBOOKS,
                        help="the course's chapters, whose check cells replace the submitted ones "
                             f"(default: {NOTEBOOKS}); '' to grade the submitted checks as they are")
    parser.add_argument("--cwd", type=existing_folder, default=None,
                        help="working folder of the kernels (default: each submission's folder)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel (default: python3)")
    parser.add_argument("--keep", type=output_folder, default=None,
                        help="folder to save the executed notebooks in, for a closer look")
    fast = parser.add_mutually_exclusive_group()
    fast.add_argument("--fast", dest="fast", action="store_true", default=None,
                      help="run the notebooks in fast mode (VITCOURSE_FAST=1)")
    fast.add_argument("--full", dest="fast", action="store_false",
                      help="run them in full mode (default: VITCOURSE_FAST as set in the shell)")


def main(args: argparse.Namespace) -> int:
    check_kernel(args.kernel)
    scores = grade(args.submissions, args.out, timeout=args.timeout, cell_timeout=args.cell_timeout,
                   source=args.source, cwd=args.cwd, fast=args.fast, kernel_name=args.kernel,
                   keep=args.keep)
    students = sorted({s.student for s in scores})
    print(f"graded {len(students)} students, {sum(s.passed for s in scores)}/{len(scores)} "
          f"exercises passed; wrote {args.out}")
    return 0
