"""`make gpu-check` (vitcourse.experiments.gpu_check) on the CPU: the same code path a lent GPU
runs, bar the device: precision runs, resume bit-exactness, the speed figures and the JSON."""
from __future__ import annotations

import json

import pytest

from test_cli import run_cli
from vitcourse.data import load_data
from vitcourse.experiments import gpu_check as gc


@pytest.fixture(scope="module")
def tiny():
    return load_data(train_size=512, test_size=256)


def test_a_precision_run_is_finite_and_reports_its_speed(tiny):
    r = gc.precision_run(tiny, "fp32", "cpu", compile_=False, epochs=1)
    assert r["finite"] and len(r["train_loss"]) == 1 and 0 <= r["test_acc"] <= 1 and r["images_per_s"] > 0


def test_the_resume_check_finds_bit_exact_weights_and_would_see_a_difference(tiny, tmp_path, monkeypatch):
    r = gc.resume_run(tiny, "fp32", "cpu", tmp_path / "a")
    assert r["interrupted"] and r["bit_exact"] and r["max_abs_weight_diff"] == 0.0
    # a resume that loses the random state would differ: the check must be able to fail
    from vitcourse.training import run_state
    monkeypatch.setattr(run_state, "set_rng_state", lambda *a, **k: None)
    broken = gc.resume_run(tiny, "fp32", "cpu", tmp_path / "b")
    assert not broken["bit_exact"] and broken["max_abs_weight_diff"] > 0


def test_the_command_writes_the_json_with_every_figure(tmp_path):
    out = tmp_path / "gpu.json"
    proc = run_cli("gpucheck", "--device", "cpu", "--train-size", "256", "--steps", "2",
                   "--models", "vit_fmnist", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu" and figures["ok"] is True
    assert [r["precision"] for r in figures["precision_runs"]] == ["fp32", "bf16"]
    assert figures["resume"]["bit_exact"] is True
    assert figures["speed"]["speedup"] > 0 and figures["speed"]["train_img_per_s"]["vit_fmnist"] > 0
    assert "resume bit-exact on cpu: True" in proc.stdout


def test_asking_for_cuda_without_it_is_one_line(monkeypatch):
    import argparse

    import torch

    from vitcourse.cli_args import CommandError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without CUDA
    args = argparse.Namespace(device="cuda", train_size=256, steps=2, compile=False, models=["vit_fmnist"],
                              json="unused.json")
    with pytest.raises(CommandError, match=r"^--device cuda: CUDA is not available"):
        gc.main(args)
