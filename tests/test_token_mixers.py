"""Chapter 11's runner (vitcourse.experiments.token_mixers): the budget plan, resumable ablations
with per-step curves, gradient norms before clipping, the cost table, and the committed results
the chapter reads."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from vitcourse.data import load_data
from vitcourse.experiments import token_mixers as tm
from vitcourse.experiments.budget import BudgetedRun, GradNorms, append_curves, plan_epochs, summarise
from vitcourse.experiments.sweep import read_results
from vitcourse.models import create_model


@pytest.fixture(scope="module")
def tiny():
    return load_data(train_size=200, test_size=100)


def test_plan_epochs_fits_the_budget_counting_the_test_pass():
    # 60,000 training + 10,000 / 3 test-image equivalents per epoch at 3,000 img/s: 21.1 s
    assert plan_epochs(120, 3_000, 60_000, 10_000) == 5
    assert plan_epochs(1, 10, 60_000, 10_000) == 1  # never zero
    with pytest.raises(ValueError, match="budget_s"):
        plan_epochs(0, 3_000, 60_000, 10_000)


def test_planned_runs_are_unique_seed_major_and_one_argument_apart():
    runs = tm.planned_runs(seeds=(0, 1), norm_seeds=(0,))
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys)) == 2 * len(tm.MIXER_MODELS) + len(tm.NORM_VARIANTS)
    mixers = [r for r in runs if r.experiment == "mixers"]
    assert [r.seed for r in mixers] == [0] * 5 + [1] * 5
    configs = {r.variant: create_model(r.model).config for r in mixers[:5]}
    base = configs["attention"]
    for variant, cfg in configs.items():  # only the mixer and the MLP width that matches parameters differ
        differ = {k for k in vars(base) if getattr(cfg, k) != getattr(base, k)}
        assert differ <= {"mixer", "mlp_ratio"}, (variant, differ)
    norms = {r.variant: dict(r.model_overrides) for r in runs if r.experiment == "norms"}
    assert norms["bn_ffn"] == {"norm": "bn_ffn"} and norms["layernorm"] == {"norm": "layernorm"}
    noclip = next(r for r in runs if r.variant == "batchnorm_noclip")
    assert dict(noclip.train_overrides) == {"grad_clip": 0.0}


def test_growth_exponent_reads_linear_and_quadratic_costs():
    n = [16, 49, 196, 784]
    assert tm.growth_exponent(n, [3 * v for v in n]) == pytest.approx(1.0)
    assert tm.growth_exponent(n, [v * v + 0.0 for v in n]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same length"):
        tm.growth_exponent([1, 2], [1.0])


def test_grad_norms_are_read_before_clipping():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 3))
    norms = GradNorms(model)
    loss = 100 * model(torch.randn(4, 8)).pow(2).sum()
    loss.backward()
    total = nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # returns the norm before clipping
    assert norms.pop() == pytest.approx(float(total), rel=1e-5)
    assert norms.pop() == 0.0  # popped: the next step starts from zero
    norms.remove()
    model(torch.randn(4, 8)).sum().backward()
    assert norms.pop() == 0.0  # hooks removed


def test_ablations_write_rows_and_curves_and_resume(tiny, tmp_path):
    runs = [BudgetedRun("mixers", "pooling", tm.MIXER_MODELS["pooling"], 0, 0.5),
            BudgetedRun("norms", "batchnorm", tm.MIXER_MODELS["attention"], 0, 0.5, (("norm", "batchnorm"),))]
    runs_csv, curves_csv = tmp_path / "runs.csv", tmp_path / "curves.csv"
    report = tm.run_ablations(runs, tiny, runs_csv, curves_csv, log=lambda s: None)
    assert report.done == [r.key for r in runs]
    rows = read_results(runs_csv)
    assert [r["key"] for r in rows] == report.done
    for r in rows:
        assert int(r["epochs"]) >= 1 and 0.0 <= float(r["test_accuracy"]) <= 1.0
        assert r["hardware"] and r["commit"] is not None and float(r["probe_images_per_s"]) > 0
    assert rows[1]["model_overrides"] == '{"norm": "batchnorm"}'
    curves = read_results(curves_csv)
    steps_per_epoch = math.ceil(200 / 256)
    assert {c["key"] for c in curves} == {runs[1].key}  # only the norm ablation records steps
    assert [int(c["step"]) for c in curves] == list(range(1, int(rows[1]["epochs"]) * steps_per_epoch + 1))
    assert all(float(c["grad_norm"]) > 0 for c in curves)
    assert float(rows[1]["max_grad_norm"]) == pytest.approx(max(float(c["grad_norm"]) for c in curves), abs=1e-3)
    # a second call trains nothing; an orphan curve (a run killed before its row landed) is dropped
    append_curves(curves_csv, [{**curves[0], "key": "norms/killed/seed=9/budget=1s"}])
    again = tm.run_ablations(runs, tiny, runs_csv, curves_csv, log=lambda s: None)
    assert again.done == [] and again.skipped == report.done
    assert {c["key"] for c in read_results(curves_csv)} == {runs[1].key}


def test_cost_rows_grow_with_tokens_attention_fastest(tiny):
    rows = tm.measure_cost(("attention", "pooling"), patch_sizes=(7, 4), images=tiny.train_images[:64],
                           labels=tiny.train_labels[:64])
    assert [(r["mixer"], r["tokens"]) for r in rows] == [("attention", 16), ("attention", 49),
                                                          ("pooling", 16), ("pooling", 49)]
    slope = {m: tm.growth_exponent([16, 49], [r["macs"] for r in rows if r["mixer"] == m])
             for m in ("attention", "pooling")}
    assert slope["attention"] > slope["pooling"]
    assert all(r["infer_images_per_s"] > 0 for r in rows)
    assert rows[0]["train_images_per_s"] > 0 and rows[1]["train_images_per_s"] == ""


def test_summarise_gives_mean_and_spread_and_skips_diverged_runs():
    rows = [{"experiment": "mixers", "variant": "pooling", "params": "10", "macs": "20",
             "test_accuracy": str(a), "epochs": "3"} for a in (0.80, 0.84, float("nan"))]
    s = summarise(rows)["pooling"]
    assert s.accuracies == [0.80, 0.84] and s.mean == pytest.approx(0.82) and s.spread == pytest.approx(0.04)


def test_the_committed_results_are_complete():
    runs = read_results(tm.RUNS_CSV)
    planned = {r.key for r in tm.planned_runs()}
    assert planned <= {r["key"] for r in runs}, "run `make mixers` to complete data/results/token_mixers.csv"
    for r in runs:
        assert int(r["train_size"]) == 60_000 and int(r["test_size"]) == 10_000
        assert r["hardware"] and r["commit"] and r["train_config"]
    summary = summarise(runs)
    assert all(len(s.accuracies) == 3 for s in summary.values())
    cost = read_results(tm.COST_CSV)
    assert {(r["mixer"], int(r["patch_size"])) for r in cost} == {
        (m, p) for m in tm.MIXER_MODELS for p in tm.PATCH_SIZES}
    curves = read_results(tm.CURVES_CSV)
    assert {c["key"] for c in curves} == {r["key"] for r in runs if r["experiment"] == "norms"}


def test_the_chapters_claims_hold_in_the_committed_results():
    """Chapter 11's section 9 states these about the committed runs (its numbers are read from the
    CSVs when the chapter is generated, tools/chapters/ch11.py); if a re-run changes them, the text
    has to change too."""
    runs = read_results(tm.RUNS_CSV)
    mix, norms = summarise(runs, "mixers"), summarise(runs, "norms")
    att, pool, ident, hyb, mlp = (mix[k] for k in ("attention", "pooling", "identity", "hybrid", "mlp"))
    # "pooling is as good as attention, within the noise": the seeds' ranges overlap
    assert min(att.accuracies) <= max(pool.accuracies) and min(pool.accuracies) <= max(att.accuracies)
    # "no mixing at all costs" a point or two: identity is below every mixer that had the same epochs
    assert ident.mean < min(att.mean, pool.mean, hyb.mean) and att.mean - ident.mean < 0.02
    # "the hybrid did not help"
    assert hyb.mean <= max(att.mean, pool.mean)
    # "the token MLP's row is not a fair verdict": it trained fewer epochs than attention
    assert max(mlp.epochs) < min(att.epochs)
    # "no blow-up": no norm run diverged, BatchNorm's largest gradient norm is not above LayerNorm's
    rows = [r for r in runs if r["experiment"] == "norms"]
    assert all(not r["diverged_step"] for r in rows)
    grad = {k: max(float(r["max_grad_norm"]) for r in rows if r["variant"] == k) for k in norms}
    assert grad["batchnorm"] <= grad["layernorm"]
    # "BatchNorm inside the MLP was the best model of the chapter", every seed above every LayerNorm seed
    assert norms["bn_ffn"].mean == max(s.mean for s in [*mix.values(), *norms.values()])
    assert min(norms["bn_ffn"].accuracies) > max(norms["layernorm"].accuracies)
    assert len(norms["bn_ffn"].accuracies) == len(norms["layernorm"].accuracies) == 3
