"""`python -m vitcourse COMMAND`: whatever a user gets wrong ends as one line
``vitcourse COMMAND: error: ...`` naming the argument, what was expected and what was given, with
exit status 2 and no traceback; a bug in vitcourse still shows its traceback.

Each user error runs in a subprocess, as a user would meet it; every one fails before any data
is loaded or any training starts (a second each, plus Python's start-up and importing torch)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import vitcourse.cli as cli
from vitcourse.cli_args import CommandError
from vitcourse.models import create_model
from vitcourse.training.checkpoint import model_spec, save_checkpoint
from vitcourse.training.loop import CHECKPOINT_NAME, TrainConfig

REPO = Path(__file__).resolve().parents[1]

# Fashion-MNIST looked for only in $VITCOURSE_DATA (set by the test), nothing downloaded.
NO_DATA_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import vitcourse.data as data
    data.REPO_DATA_DIR, data.DEBIAN_DIR = Path(sys.argv[1]) / "repo", Path(sys.argv[1]) / "debian"
    def no_network(root):
        raise OSError("[Errno -3] Temporary failure in name resolution")
    data._download = no_network
    from vitcourse.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitcourse", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "VITCOURSE_FAST": "1", **(env or {})})


def assert_one_line_error(done: subprocess.CompletedProcess, prog: str, *needles: str) -> str:
    """Exit 2, and stderr is one line `PROG: error: ...` holding every needle, no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_an_unknown_command_is_one_line_with_the_closest_command():
    line = assert_one_line_error(run_cli("trian"), "vitcourse", "unknown command 'trian'")
    assert "did you mean 'train'?" in line and "info, student, grade, train" in line


def test_an_unknown_model_name_lists_the_close_ones():
    line = assert_one_line_error(run_cli("train", "--model", "vit_fmnst"), "vitcourse train",
                                 "argument --model", "'vit_fmnst'")
    assert "did you mean 'vit_fmnist'" in line and "vitcourse info --models" in line


def test_zero_epochs_says_what_train_expects():
    assert_one_line_error(run_cli("train", "--epochs", "0"), "vitcourse train",
                          "argument --epochs", "epochs must be an int >= 1, got 0")


def test_an_output_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "run"
    line = assert_one_line_error(run_cli("train", "--out", str(out)), "vitcourse train",
                                 "argument --out", str(out))
    assert "is a file, not a folder" in line and not out.exists()


def test_grading_a_folder_that_does_not_exist(tmp_path):
    missing = tmp_path / "submissions"
    assert_one_line_error(run_cli("grade", str(missing), "--out", str(tmp_path / "s.csv")),
                          "vitcourse grade", "argument submissions", str(missing), "does not exist")
    assert not (tmp_path / "s.csv").exists()


def test_resuming_from_a_damaged_checkpoint(tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"\x80\x02not a checkpoint" * 100)
    assert_one_line_error(run_cli("train", "--fast", "--resume", "--out", str(tmp_path)), "vitcourse train",
                          "argument --resume", str(tmp_path / CHECKPOINT_NAME), "damaged", "another --out")


def test_resuming_another_runs_checkpoint_names_the_options_that_differ(tmp_path):
    save_checkpoint({"format": "vitcourse-train/1", "model_spec": model_spec(create_model("vit_fmnist")),
                     "config": dataclasses.asdict(TrainConfig(lr=0.01))}, tmp_path / CHECKPOINT_NAME)
    assert_one_line_error(run_cli("train", "--fast", "--resume", "--out", str(tmp_path)), "vitcourse train",
                          "argument --resume", "--lr (checkpoint 0.01, now 0.002)")


def test_no_data_found_says_how_to_get_it(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-c", NO_DATA_SCRIPT, str(tmp_path), "train", "--fast"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "VITCOURSE_FAST": "1", "VITCOURSE_DATA": str(tmp_path / "empty")})
    assert_one_line_error(done, "vitcourse train", "Fashion-MNIST was not found", str(tmp_path / "empty"),
                          "name resolution", "apt-get install dataset-fashion-mnist", "$VITCOURSE_DATA")


def test_damaged_data_names_the_file(tmp_path):
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / f"{stem}.gz").write_bytes(b"not gzip")
    assert_one_line_error(run_cli("train", "--fast", env={"VITCOURSE_DATA": str(tmp_path)}),
                          "vitcourse train", str(tmp_path / "train-images-idx3-ubyte.gz"), "is damaged")


def test_compare_with_a_model_it_does_not_compare():
    assert_one_line_error(run_cli("compare", "--models", "vit_fmnist", "resnet"), "vitcourse compare",
                          "argument --models", "'resnet'", "did you mean 'resnet_fmnist'?")


@pytest.mark.parametrize("command, option, value", [
    ("sweep", "--max-minutes", "0"),
    ("sweep", "--seeds", "0,x"),
    ("bench", "--steps", "-3"),
])
def test_bad_numbers_for_sweep_and_bench(command, option, value):
    assert_one_line_error(run_cli(command, option, value), f"vitcourse {command}", f"argument {option}",
                          repr(value.split(",")[-1]))


def test_output_into_a_closed_pipe_ends_quietly():
    """`python -m vitcourse info --models | head -1`: the reader goes away before the output."""
    child = subprocess.Popen([sys.executable, "-m", "vitcourse", "info", "--models"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.stdout.close()  # every write now fails with EPIPE
    err = child.stderr.read()
    assert child.wait(timeout=300) == 141 and err == "", err


# --- the same rules, in-process (milliseconds each) -----------------------------------------

def one_line_error(capsys, *argv: str) -> str:
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"vitcourse {argv[0]}: error: "), err
    return err


@pytest.mark.parametrize("argv, needles", [
    (["train", "--device", "gpu"], ["argument --device", "'gpu'", "cpu"]),
    (["train", "--lr", "nan"], ["argument --lr: expected a number, got 'nan'"]),
    (["train", "--lr", "-1"], ["argument --lr: lr must be > 0, got -1.0"]),
    (["train", "--betas", "0.9", "1.5"], ["argument --betas", ">= 0 and < 1", "'1.5'"]),
    (["train", "--train-size", "70000"], ["argument --train-size", "<= 60000", "'70000'"]),
    (["train", "--epox", "3"], ["unrecognized arguments: --epox 3", "did you mean ", "--epochs"]),
    # an abbreviation is a typo too: argparse would take it for --epochs and start training
    (["train", "--epoch", "3"], ["unrecognized arguments: --epoch 3", "did you mean ", "--epochs"]),
    (["mixers", "--budget-s", "0"], ["argument --budget-s", "> 0", "'0'"]),
    (["mixers", "--parts", "norm"], ["argument --parts", "did you mean 'norms'", "'norm'"]),
    (["train", "--out", "/proc/vitcourse-test/run"], ["argument --out", "cannot be written"]),
    (["info", "--probe-seconds", "-1"], ["argument --probe-seconds", ">= 0", "'-1'"]),
    (["sweep", "--axes", "data,depth"], ["argument --axes", "'depth'", "data, model, patch"]),
    (["compare", "--epochs", "0"], ["argument --epochs", "int >= 1", "'0'"]),
    (["grade", "--timeout", "0", "."], ["argument --timeout", "> 0", "'0'"]),
])
def test_bad_arguments_are_refused_at_parse_time(capsys, argv, needles):
    err = one_line_error(capsys, *argv)
    for needle in needles:
        assert needle in err, (needle, err)


def test_a_student_folder_under_a_file_and_an_unknown_kernel(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    err = one_line_error(capsys, "student", "--out", str(tmp_path / "afile" / "copies"), "01")
    assert "argument --out" in err and str(tmp_path / "afile") in err
    err = one_line_error(capsys, "grade", str(tmp_path), "--out", str(tmp_path / "s.csv"), "--kernel", "nope")
    assert "argument --kernel" in err and "'nope'" in err and "python3" in err


def test_a_model_that_cannot_take_the_option_is_refused_before_the_data_loads(capsys):
    err = one_line_error(capsys, "train", "--model", "resnet_fmnist", "--dropout", "0.1")
    assert "argument --dropout" in err and "dropout" in err.split("--dropout", 1)[1]
    err = one_line_error(capsys, "train", "--image-size", "32")
    assert "argument --image-size" in err and "32x32" in err


def test_resume_accepts_the_checkpoint_of_the_same_run(tmp_path):
    from vitcourse.data import load_data
    from vitcourse.training import cli as train_cli
    from vitcourse.training.loop import fit

    parser = cli.CommandParser(prog="vitcourse train")
    train_cli.add_arguments(parser)
    first = parser.parse_args(["--epochs", "1", "--batch-size", "64", "--no-hflip", "--out", str(tmp_path)])
    fit(train_cli.build_model(first), load_data(train_size=64, test_size=64), train_cli.config_from_args(first),
        checkpoint_dir=first.out, progress=False)
    again = parser.parse_args(["--epochs", "3", "--batch-size", "64", "--no-hflip", "--out", str(tmp_path),
                               "--resume"])  # more epochs: the same run, continued
    train_cli.check_resume(again, train_cli.config_from_args(again), train_cli.build_model(again))
    other = parser.parse_args(["--epochs", "3", "--batch-size", "64", "--out", str(tmp_path), "--resume"])
    with pytest.raises(CommandError, match=r"--no-hflip \(checkpoint False, now True\)"):
        train_cli.check_resume(other, train_cli.config_from_args(other), train_cli.build_model(other))


def test_a_sweep_csv_of_another_kind_is_refused(tmp_path, capsys):
    other = tmp_path / "grades.csv"
    other.write_text("student,score\nalice,3\n")
    err = one_line_error(capsys, "sweep", "--list", "--csv", str(other))
    assert "argument --csv" in err and str(other) in err and "'key'" in err


@pytest.fixture
def command(monkeypatch):
    """A command `fake` whose main runs `command.action` (set by the test)."""
    module = types.ModuleType("vitcourse_fake_command")
    module.add_arguments = lambda parser: None
    module.main = lambda args: module.action()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fake", (module.__name__, "a command for tests"))
    return module


def test_a_bug_in_a_command_still_shows_its_traceback(command):
    def bug():
        raise RuntimeError("a bug in vitcourse")
    command.action = bug
    with pytest.raises(RuntimeError, match="a bug in vitcourse"):
        cli.main(["fake"])
    command.action = lambda: {}["missing"]  # a KeyError or ValueError is a bug too, never caught
    with pytest.raises(KeyError):
        cli.main(["fake"])


def test_a_command_error_and_ctrl_c_are_one_line(command, capsys):
    def refuse():
        raise CommandError("argument --thing: expected\n  - a\n  - b\ngot 'c'")
    command.action = refuse
    assert cli.main(["fake"]) == 2
    assert capsys.readouterr().err == "vitcourse fake: error: argument --thing: expected a, b got 'c'\n"

    def interrupt():
        raise KeyboardInterrupt
    command.action = interrupt
    assert cli.main(["fake"]) == 130
    assert capsys.readouterr().err == "vitcourse fake: error: interrupted (Ctrl-C)\n"
