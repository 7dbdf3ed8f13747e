"""What a broken clone would break: the package imports, the set-up files agree, notebooks are
committed clean, every chapter opens on Colab from the one configured repository URL."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tools.nbbuild import colab_url, repo_url, setup_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _requirement_names(reqs):
    return {re.split(r"[<>=!~ \[]", r.strip(), maxsplit=1)[0].lower() for r in reqs}


def test_package_imports_without_side_effects():
    code = ("import torch, matplotlib; before = (torch.initial_seed(), matplotlib.get_backend());"
            "import vitcourse; assert (torch.initial_seed(), matplotlib.get_backend()) == before;"
            "print(vitcourse.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    # the version the package reports is the one pyproject.toml declares
    assert out.stdout.strip() == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_environment_yml_is_in_step_with_pyproject():
    from packaging.requirements import InvalidRequirement, Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict()
    for req in project["dependencies"] + [r for extra in project["optional-dependencies"].values()
                                          for r in extra]:
        name = re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0].lower()
        wanted[name] = req.replace(" ", "")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    have = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if isinstance(dep, dict):
                # conda writes these lines to a requirements file for pip: each must be one that
                # pip accepts there (per-line options such as --no-deps are refused).
                if item == "-e .":
                    continue
                try:
                    Requirement(item)
                except InvalidRequirement as exc:
                    pytest.fail(f"environment.yml pip item {item!r} is not a valid requirement: {exc}")
            name = re.split(r"[<>=!~ \[;]", item, maxsplit=1)[0].lower()
            have["torch" if name == "pytorch" else name] = item.replace(" ", "").replace("pytorch", "torch", 1)
    for name, req in wanted.items():
        assert name in have, f"{name} is in pyproject.toml but not in environment.yml"
        assert have[name] == req, f"{name}: pyproject.toml says {req}, environment.yml says {have[name]}"
    # ... and nothing extra, bar conda's own pieces and what d2l imports (installed by make setup)
    extra = set(have) - set(wanted) - {"python", "pip", "pandas", "scipy"}
    assert not extra, f"environment.yml has {sorted(extra)}, which pyproject.toml does not"
    py = project["requires-python"]
    assert f"python{py}" in [d.replace(" ", "") for d in env["dependencies"] if isinstance(d, str)]
    # the d2l step conda cannot express is spelled out for conda users
    assert "pip install --no-deps d2l==1.0.3" in (ROOT / "environment.yml").read_text()
    assert "pip install --no-deps d2l==1.0.3" in (ROOT / "README.md").read_text()


def test_d2l_is_not_a_hard_requirement():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "d2l" not in _requirement_names(project["dependencies"])
    assert all(">=" in r or "<" in r for r in project["dependencies"]), "floors, not pins"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert "dataset-fashion-mnist" in ci
    assert "make test" in readme and "make lab" in readme


def test_notebooks_exist_and_are_committed_without_outputs():
    assert NOTEBOOKS, "no chapter notebooks found"
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        dirty = [i for i, c in enumerate(nb["cells"])
                 if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
        assert not dirty, f"{path.name}: cells {dirty} have outputs; strip them before committing"
        # saved widget state and execution timings are outputs too (JupyterLab stores them)
        assert "widgets" not in nb["metadata"], f"{path.name}: saved widget state in its metadata"
        timed = [i for i, c in enumerate(nb["cells"]) if "execution" in c.get("metadata", {})]
        assert not timed, f"{path.name}: cells {timed} keep execution timings in their metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_chapter_opens_on_colab_from_the_configured_repository(path):
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    assert first.startswith("# "), f"{path.name} must start with a title"
    assert f"({colab_url(path.name)})" in first, f"{path.name}: Colab badge missing or not {repo_url()}"
    links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+", "".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"))
    assert all(link == colab_url(path.name) for link in links), links
    setup = "".join(nb["cells"][1]["source"])
    assert setup == setup_cell(), f"{path.name}: the second cell must be the standard Colab set-up cell"


def test_fast_mode_switch(monkeypatch):
    from vitcourse.settings import fast_or, is_fast
    monkeypatch.setenv("VITCOURSE_FAST", "1")
    assert is_fast() and fast_or(1, 20) == 1
    monkeypatch.setenv("VITCOURSE_FAST", "0")
    assert not is_fast() and fast_or(1, 20) == 20


def test_device_choice(monkeypatch):
    from vitcourse.settings import get_device
    monkeypatch.setenv("VITCOURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.delenv("VITCOURSE_DEVICE")
    assert get_device().type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'.*CUDA is not available"):
            get_device("cuda")


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"),
                                                 (False, False, "cpu")])
def test_device_order_is_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    from vitcourse.settings import get_device
    monkeypatch.delenv("VITCOURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert get_device().type == expected
    assert get_device("cpu").type == "cpu"  # an explicit choice wins


def test_colab_is_detected_by_its_module_or_its_environment(monkeypatch):
    from vitcourse.settings import in_colab
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not in_colab()
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20261201")
    assert in_colab()
    monkeypatch.delenv("COLAB_RELEASE_TAG")
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert in_colab()


def test_seeding_is_reproducible():
    from vitcourse.settings import seed_everything
    seed_everything(7)
    a = torch.rand(3)
    seed_everything(7)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_cli_lists_commands_and_rejects_unknown_ones():
    out = subprocess.run([sys.executable, "-m", "vitcourse", "--help"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0 and "student" in out.stdout and "train" in out.stdout
    out = subprocess.run([sys.executable, "-m", "vitcourse", "fly"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 2 and "unknown command 'fly'" in out.stderr


def test_environment_report_finds_the_data():
    from vitcourse.info import environment_report
    report = environment_report()
    assert report.ok, str(report)
    assert "Fashion-MNIST found" in str(report)


def test_environment_report_checks_what_the_chapters_need(monkeypatch):
    from vitcourse import info
    report = info.environment_report()
    names = [c.name for c in report.checks]
    assert names[:1] == ["python"] and {"torch", "torchvision", "timm", "d2l", "device", "bf16",
                                        "data"} <= set(names)
    assert report.ok, str(report)  # make setup installed everything; the data is found
    assert "Fashion-MNIST found in" in str(report)


def test_environment_report_says_how_to_get_missing_data(monkeypatch, tmp_path):
    import vitcourse.data as data
    from vitcourse import info
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "none")
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "none")

    def offline(root):
        raise OSError("no internet")
    monkeypatch.setattr(data, "_download", offline)
    report = info.environment_report()
    assert not report.ok
    text = str(report)
    assert "[FIX] data: Fashion-MNIST not found" in text and "apt-get install dataset-fashion-mnist" in text


def test_environment_report_flags_an_unsupported_python(monkeypatch):
    from vitcourse import info
    monkeypatch.setattr(info.sys, "version_info", (3, 14, 0, "final", 0))
    check = info.environment_report().checks[0]
    assert check.name == "python" and not check.ok and "3.10 to 3.13" in check.fix
