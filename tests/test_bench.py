"""The benchmark's plumbing (not its speed): figures, JSON keys, the time-to-accuracy child run."""
from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch

from vitcourse.experiments import bench, budget
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
    assert out["hardware"] == budget.machine()  # the machine, with the precision it trains in on a CPU
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
    assert run["acc_within_budget"] is None and run["epochs_within_budget"] == 0  # > 1 s per epoch
    # this child's own peak (wait4), not the largest child pytest ever had: a small run's
    # process holds torch and the data set, ~0.3-1 GB, far from the 2 GB goal
    assert 100 < run["peak_rss_mb"] < 2048


def test_accuracy_within_the_budget_ignores_an_overshoot():
    history = [{"epoch": e, "seconds": 100.0, "test_acc": a}
               for e, a in enumerate([0.85, 0.89, 0.905, 0.91, 0.93], start=1)]
    got = bench.read_history(history, budget_s=350.0)
    # epochs end at 100, 200, 300, 400, 500 s: the 4th and 5th finish past the budget
    assert got["acc_within_budget"] == 0.905 and got["epochs_within_budget"] == 3
    assert got["time_to_90_s"] == 300.0 and got["train_s"] == 500.0


def test_goals_are_judged_from_the_figures():
    assert bench.goals({"speedup": 3.2, "acc_at_10_min": 0.931, "reference_acc_at_10_min": 0.905,
                        "shipped_acc": 0.9499, "peak_rss_mb": 900.0}) == {
        "speedup >= 3x": True, "93% within 10 min": True, "shipped model >= 95%": False,
        "plain ViT 92% within 10 min": False, "peak RSS < 2 GB": True}
    assert bench.goals({"speedup": 2.0, "acc_at_10_min": None, "peak_rss_mb": None}) == {
        "speedup >= 3x": False, "93% within 10 min": None, "shipped model >= 95%": None,
        "plain ViT 92% within 10 min": None, "peak RSS < 2 GB": None}


def test_part_3_trains_each_recipe_step_with_the_flags_of_its_recipe():
    from vitcourse.experiments import small_data as sd
    from vitcourse.training.cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for variant, (model, _, train_overrides, teacher) in sd.RECIPE.items():
        run = sd.recipe_run("bench", variant, 2, 600.0)
        args = parser.parse_args(bench.train_arguments(run))
        config = config_from_args(args)
        assert args.model == model and (args.teacher or "") == teacher and config.seed == 2
        assert args.compile == "off"  # as train_budgeted trains it
        for key, value in train_overrides.items():
            assert getattr(config, key) == value, (variant, key)
    assert sd.BEST_VARIANT in sd.RECIPE and sd.BEST_VARIANT != "resnet"
    with pytest.raises(ValueError, match="run: .*model overrides"):
        bench.train_arguments(dataclasses.replace(sd.recipe_run("bench", "vit", 0, 60.0), model_overrides=(("depth", 1),)))


def test_the_shipped_card_is_the_long_parts_shipped_step_and_none_while_missing(tmp_path, monkeypatch):
    """The card is found through SHIPPED_VARIANT's model, not the 10-minute BEST_VARIANT's (they may differ)."""
    from vitcourse.experiments import small_data as sd

    monkeypatch.setattr(bench, "PRETRAINED_DIR", tmp_path)
    monkeypatch.setitem(sd.STEPS, sd.SHIPPED_VARIANT, ("some_other_model", {}, {}, ""))
    assert bench.shipped_card() is None
    (tmp_path / "some_other_model.json").write_text(json.dumps({"model": "some_other_model"}))
    (tmp_path / f"{sd.RECIPE[sd.BEST_VARIANT][0]}.json").write_text(json.dumps({"model": "the 10-minute step's"}))
    assert bench.shipped_card() == {"model": "some_other_model"}


@pytest.mark.slow
def test_part_3_times_the_best_recipe_then_the_plain_vit_and_reads_the_shipped_card(tmp_path, monkeypatch, capsys):
    from vitcourse.experiments import small_data as sd

    calls = []

    def fake_run(budget_s, speed_probe, train_size, threads, arguments=(), test_size=10_000):
        calls.append((budget_s, speed_probe, train_size, list(arguments)))
        acc = 0.931 if "vit_fmnist" not in arguments else 0.899
        return {"epochs": 3, "wall_s": 5.0, "train_s": 4.0, "time_to_90_s": 3.0 if acc > 0.9 else None,
                "acc_within_budget": acc, "epochs_within_budget": 3, "final_acc": acc,
                "train_img_per_s": 10.0, "peak_rss_mb": 700.0}

    monkeypatch.setattr(bench, "probe_speed", lambda run, data, device=None: {"vit_fmnist": 100.0}.get(run.model, 50.0))
    monkeypatch.setattr(bench, "time_to_accuracy", fake_run)
    card = {"model": sd.STEPS[sd.SHIPPED_VARIANT][0], "test_accuracy": 0.9512, "test_images": 10_000, "epochs": 40,
            "wall_time_s": 3500.0, "command": "python -m vitcourse smalldata --parts long", "budget_s": 3600.0}
    (tmp_path / f"{card['model']}.json").write_text(json.dumps(card))
    monkeypatch.setattr(bench, "PRETRAINED_DIR", tmp_path)
    resnet = {"experiment": "long", "variant": sd.LONG_REFERENCE, "model": "resnet_fmnist", "budget_s": "3600.0",
              "test_accuracy": "0.9402", "epochs": "120", "fit_wall_s": "3700.0"}
    monkeypatch.setattr(bench, "read_rows", lambda: [{**resnet, "budget_s": "1800.0", "test_accuracy": "0.9"}, resnet])
    path = tmp_path / "bench.json"
    assert bench.main(parse(["--steps", "1", "--batch-size", "4", "--budget-min", "2", "--train-size", "300",
                             "--json", str(path)])) == 0
    best_model = sd.RECIPE[sd.BEST_VARIANT][0]
    assert [(c[0], c[1], c[2], c[3][1]) for c in calls] == [(120.0, 50.0, 300, best_model), (120.0, 100.0, 300, "vit_fmnist")]
    out = json.loads(path.read_text())
    assert (out["model"], out["acc_at_10_min"], out["probe_img_per_s"]) == (best_model, 0.931, 50.0)
    assert (out["reference_model"], out["reference_acc_at_10_min"], out["reference_time_to_90_s"]) == ("vit_fmnist", 0.899, None)
    assert out["shipped_acc"] == 0.9512 and out["peak_rss_mb"] == 700.0
    assert (out["long_reference_acc"], out["long_reference_epochs"], out["long_reference_wall_s"]) == (0.9402, 120, 3700.0)
    assert out["goals"] == {"speedup >= 3x": out["speedup"] >= 3, "93% within 10 min": True,
                            "shipped model >= 95%": True, "plain ViT 92% within 10 min": False, "peak RSS < 2 GB": True}
    printed = capsys.readouterr().out
    assert f"best recipe {sd.BEST_VARIANT}" in printed and "95.12%" in printed
    assert "resnet_fmnist by the same loop" in printed and "94.02% after 120 epochs" in printed
    assert "+1.10 points for the ViT" in printed


def test_the_long_reference_is_the_resnet_row_at_the_shipped_budget(monkeypatch):
    from vitcourse.experiments import small_data as sd

    rows = [{"experiment": "long", "variant": "conv_stem_s", "budget_s": "3600.0"},
            {"experiment": "long", "variant": sd.LONG_REFERENCE, "budget_s": "1800.0"},
            {"experiment": "recipe", "variant": sd.LONG_REFERENCE, "budget_s": "3600.0"},
            {"experiment": "long", "variant": sd.LONG_REFERENCE, "budget_s": "3600.0", "test_accuracy": "0.93"}]
    monkeypatch.setattr(bench, "read_rows", lambda: rows)
    assert bench.long_reference_row(3600.0) is rows[3]
    assert bench.long_reference_row(600.0) is None
