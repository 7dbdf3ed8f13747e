"""Checkpoints: atomic writes, weights_only loading, rebuilding the model, exact resume after a
SIGKILL between epochs. (The shipped checkpoint: test_train_shipped.py.)"""
from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import vitcourse.training.checkpoint as ckpt_mod
from vitcourse.training.checkpoint import (CheckpointError, export_model, load_checkpoint, load_model,
                                          load_pretrained, save_checkpoint)
from vitcourse.models import create_model

REPO = Path(__file__).resolve().parents[1]


class NotAllowed:
    """An arbitrary class: weights_only loading must refuse to rebuild it."""


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint({"x": torch.arange(3)}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        save_checkpoint({"x": lambda: 0}, path)  # cannot be pickled: fails mid-write
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3)), "old checkpoint must survive"
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_loading_uses_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": NotAllowed()}, path)
    with pytest.raises(CheckpointError, match="NotAllowed was not an allowed global") as info:
        load_checkpoint(path)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_damaged_checkpoint_raises_one_clear_error_naming_the_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"x": torch.arange(1000)}, path)
    whole = path.read_bytes()
    noise = [random.Random(seed).randbytes(3000) for seed in range(50)]  # torch.load's unpickler
    # raises IndexError, UnicodeDecodeError... on some of these: one error for them all
    for damaged in (whole[: len(whole) // 2], whole[:100], b"", b"not a checkpoint" * 20, *noise):
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=r"last\.pt could not be read as a checkpoint: it is damaged"):
            load_checkpoint(path)
    torch.save(torch.arange(3), path)  # loads, but is not a checkpoint's dict
    with pytest.raises(CheckpointError, match="holds a Tensor, not a vitcourse checkpoint"):
        load_checkpoint(path)


def test_export_and_load_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("vit_fmnist", depth=2).eval()
    export_model(model, tmp_path / "m.pt", card={"note": "x"})
    again = load_model(tmp_path / "m.pt")
    assert not again.training and again.config == model.config
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(again(x), model(x))
    with pytest.raises(ValueError, match="config"):
        export_model(torch.nn.Linear(2, 2), tmp_path / "n.pt")


def test_load_pretrained_names_the_make_target_when_missing(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="name"):
        load_pretrained("vit_huge_imaginary")
    monkeypatch.setattr(ckpt_mod, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"produce it with `make checkpoint` in the repository root "
                                                r"\(15-20 minutes on an idle 2-core CPU\)"):
        load_pretrained("vit_fmnist")
    for name, how in ckpt_mod.PRETRAINED.items():  # every shipped name says how long its command takes
        assert how.command.startswith("make ") and ("minute" in how.duration or "hour" in how.duration), name


SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from vitcourse.data import load_data
    from vitcourse.models import create_model
    from vitcourse.training.loop import TrainConfig, fit
    folder, out = sys.argv[1], sys.argv[2]
    data = load_data(train_size=256, test_size=64)
    torch.manual_seed(0)
    # dropout, crops and flips on: every random stream must be restored on resume
    model = create_model("vit_fmnist", dim=32, depth=1, heads=2, mlp_dim=64, dropout=0.1)
    fit(model, data, TrainConfig(epochs=4, batch_size=64, crop_padding=2), checkpoint_dir=folder,
        resume=True, progress=False)
    torch.save(model.state_dict(), out)
""")


def _run(script: Path, folder: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(script), str(folder), str(out)], env=env, cwd=REPO)


@pytest.mark.slow
def test_resume_after_sigkill_between_epochs_is_bit_for_bit(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    # the run never stopped
    ref = _run(script, tmp_path / "ref", tmp_path / "ref.pt")
    assert ref.wait(timeout=600) == 0
    # a run killed (SIGKILL: no clean-up at all) as soon as its first checkpoint exists
    killed = _run(script, tmp_path / "run", tmp_path / "run.pt")
    last = tmp_path / "run" / "last.pt"
    deadline = time.time() + 600
    while not last.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    state = load_checkpoint(last)
    assert 1 <= state["epoch"] < 4 and state["step"] == 0
    assert not (tmp_path / "run.pt").exists()
    # the same command again resumes from last.pt and finishes
    resumed = _run(script, tmp_path / "run", tmp_path / "run.pt")
    assert resumed.wait(timeout=600) == 0
    a, b = torch.load(tmp_path / "ref.pt"), torch.load(tmp_path / "run.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    assert len(load_checkpoint(last)["history"]) == 4
