"""Chapter 13's runner (vitcourse.experiments.small_data): the recipe's rows, their plan, and a
resumable run of its models on tiny data."""
from __future__ import annotations

import dataclasses
import json

from vitcourse.data import load_data
from vitcourse.experiments import small_data as sd
from vitcourse.experiments.budget import BudgetedRun, run_budgeted
from vitcourse.experiments.sweep import read_results
from vitcourse.models import create_model
from vitcourse.training.loop import TrainConfig


def test_every_recipe_step_builds_and_its_options_are_training_options():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for variant, (model, model_overrides, train_overrides) in sd.RECIPE.items():
        create_model(model, **model_overrides)
        assert set(train_overrides) <= fields, (variant, set(train_overrides) - fields)
        TrainConfig(**train_overrides)  # valid values, checked by TrainConfig itself
    assert list(sd.RECIPE)[0] == "vit" and sd.RECIPE["vit"][0] == "vit_fmnist"  # the plain ViT first


def test_planned_runs_are_unique_seed_major_with_the_long_runs_last():
    runs = sd.planned_runs(seeds=(0, 1))
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys)) == 2 * len(sd.RECIPE) + len(sd.LONG_BUDGETS_S)
    recipe = [r for r in runs if r.experiment == "recipe"]
    assert [r.seed for r in recipe] == [0] * len(sd.RECIPE) + [1] * len(sd.RECIPE)
    assert {r.budget_s for r in recipe} == {sd.BUDGET_S}
    assert [r.budget_s for r in runs[-len(sd.LONG_BUDGETS_S):]] == list(sd.LONG_BUDGETS_S)
    assert all(r.variant == sd.LONG_VARIANT for r in runs if r.experiment == "long")
    assert sd.LONG_VARIANT in sd.RECIPE


def test_a_recipe_run_trains_records_its_history_and_resumes(tmp_path):
    data = load_data(train_size=200, test_size=100)
    runs = [dataclasses.replace(sd._run("recipe", v, 0, 0.5), model_overrides=(("depth", 1),))
            for v in ("conv_stem", "cct")]  # one block: the same code path, fast
    csv_path = tmp_path / "small.csv"
    report = run_budgeted(runs, data, csv_path, log=lambda s: None)
    assert report.done == [r.key for r in runs]
    rows = {r["variant"]: r for r in read_results(csv_path)}
    for r in rows.values():
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0 and int(r["epochs"]) >= 1
        history = json.loads(r["history"])
        assert [h["epoch"] for h in history] == list(range(1, int(r["epochs"]) + 1))
        assert max(h["test_acc"] for h in history) == float(r["best_epoch_test_acc"])
        assert json.loads(r["model_config"])["depth"] == 1
    again = run_budgeted(runs, data, csv_path, log=lambda s: None)
    assert again.done == [] and again.skipped == [r.key for r in runs]


def test_the_probe_key_separates_options_that_cost_time():
    plain = BudgetedRun("recipe", "a", "cct_fmnist", 0, 60.0)
    clip = dataclasses.replace(plain, train_overrides=(("grad_clip", 0.0),))
    flips = dataclasses.replace(plain, train_overrides=(("crop_padding", 2),))
    assert plain.probe_key == clip.probe_key != flips.probe_key
