"""The benchmark's plumbing (not its speed): figures, JSON keys, the time-to-accuracy child run."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from vitcourse import bench
from vitcourse.models import create_model


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.slow
def test_quick_bench_writes_every_key(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert bench.main(parse(["--quick", "--steps", "1", "--batch-size", "4", "--json", str(path)])) == 0
    out = json.loads(path.read_text())
    assert set(bench.KEYS) <= set(out)
    assert out["time_to_90_s"] is None and out["acc_at_10_min"] is None  # part 3 not run
    assert out["d2l_img_per_s"] > 0 and out["vitcourse_img_per_s"] > 0
    assert out["speedup"] == pytest.approx(out["vitcourse_img_per_s"] / out["d2l_img_per_s"])
    assert out["mfu"] == pytest.approx(out["achieved_gflops"] / out["peak_gflops"])
    assert 0 < out["mfu"] < 1.5
    assert "speed-up" in capsys.readouterr().out


def test_train_flops_are_three_times_forward_matmul_flops():
    model = create_model("vit_fmnist", depth=1)
    flops = bench.train_flops_per_image(model, 28)
    linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    # forward: 2 FLOPs per multiply-add for every token through every Linear; backward: twice that
    assert flops >= 3 * 2 * 16 * (linear - 128 * 10)
    assert all(p.grad is None for p in model.parameters())


def test_matmul_peak_is_positive_and_finite():
    peak = bench.matmul_peak("fp32", torch.device("cpu"), n=128, repeats=2)
    assert 0 < peak < 1e15


@pytest.mark.slow
def test_time_to_accuracy_reports_history_and_peak_memory():
    run = bench.time_to_accuracy(budget_s=1.0, speed_probe=1000.0, train_size=256, threads=1)
    assert run["epochs"] == 1
    assert run["time_to_90_s"] is None  # one epoch on 256 images cannot reach 90%
    assert 0.0 <= run["final_acc"] < 0.9
    assert 50 < run["peak_rss_mb"] < 2048
