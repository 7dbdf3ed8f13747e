"""`python -m vitcourse train`: trains, checkpoints and exports a model with its JSON card; and the
live plot that `fit(live_plot=True)` draws, which does nothing outside a notebook."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

from vitcourse.training.checkpoint import load_model
from vitcourse.training.live_plot import LivePlot, in_notebook

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cli_trains_and_exports_a_card(tmp_path):
    export = tmp_path / "model.pt"
    cmd = [sys.executable, "-m", "vitcourse", "train", "--model", "vit_fmnist", "--epochs", "1",
           "--train-size", "256", "--threads", "1", "--out", str(tmp_path / "run"),
           "--export", str(export), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test accuracy" in done.stdout
    card = json.loads(export.with_suffix(".json").read_text())
    for key in ("command", "seed", "commit", "epochs", "test_accuracy", "wall_time_s", "hardware"):
        assert key in card
    assert card["epochs"] == 1 and card["train_images"] == 256 and card["test_images"] == 10_000
    assert card["command"].startswith("python -m vitcourse train") and "--epochs 1" in card["command"]
    assert card["hardware"]["torch_threads"] == 1
    model = load_model(export)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "history.csv").is_file()


def test_cli_rejects_a_bad_config():
    done = subprocess.run([sys.executable, "-m", "vitcourse", "train", "--epochs", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "epochs must be an int >= 1" in done.stderr


def test_live_plot_is_silent_outside_a_notebook():
    assert not in_notebook()
    plot = LivePlot()
    plot.update([{"epoch": 1, "train_loss": 1.0, "test_loss": 1.0, "train_acc": 0.5, "test_acc": 0.5}])
    assert not plot.enabled and plot.fig is None


class FakeHandle:
    def __init__(self) -> None:
        self.updates = 0

    def update(self, obj) -> None:
        self.updates += 1


def test_live_plot_redraws_when_enabled(monkeypatch):
    import IPython.display

    matplotlib.use("Agg")
    handle = FakeHandle()
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=None: handle)
    plot = LivePlot(enabled=True)
    history = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1.1 / e, "train_acc": 0.5 + e / 10,
                "test_acc": 0.45 + e / 10} for e in (1, 2, 3)]
    plot.update(history[:1])
    plot.update(history)
    loss_ax, acc_ax = plot.axes
    assert loss_ax.get_title() == "Loss" and acc_ax.get_ylabel() == "accuracy (%)"
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3]
    assert handle.updates == 2  # one display slot, updated in place
