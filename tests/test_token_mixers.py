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
from vitcourse.experiments.results_csv import read_results
from vitcourse.models import create_model

from tools.chapters import read_facts
from tools.facts import ch11


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


@pytest.mark.results
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


def _range(text: str) -> tuple[float, float]:
    """A fact written "83.3-84.3" as (83.3, 84.3)."""
    lo, hi = text.split("-")
    return float(lo), float(hi)


@pytest.mark.results
def test_the_chapters_claims_hold_in_the_committed_results():
    """What chapter 11's prose (chapters/11_token_mixers.md, sections 5, 7 and 9) says about the
    committed runs, asserted on its facts (data/facts/11_token_mixers.json) and, for the claims
    that quote no number, on the same analysis (tools/facts/ch11.py). A re-run that no longer
    supports a sentence fails here: a person rewrites the sentence, then this test."""
    f = read_facts("11_token_mixers")
    mix, norms = ch11.summaries()
    rows, cost = ch11.runs(), ch11.cost_rows()
    mixers = ("attention", "pooling", "mlp", "identity", "hybrid")

    # section 5: "for the **same two minutes** on 2 CPU cores ... with **3 seeds** each"
    assert f["budget_s"] == 120 and all("2 cores" in r["hardware"] for r in rows)
    assert [len(mix[m].accuracies) for m in mixers] == [3] * 5
    # "Two minutes is about two epochs", section 9: "two epochs of the 60,000 images" (all but the
    # token MLP, whose bullet says why)
    assert [f[f"{m}_epochs"] for m in ("attention", "pooling", "identity", "hybrid")] == [2, 2, 2, 2]

    # "Pooling against attention: no difference here. Attention's mean is
    # {{ attention_minus_pooling }} points higher, but the seeds' ranges overlap"
    assert f["attention_minus_pooling"] > 0
    (att_lo, att_hi), (pool_lo, pool_hi) = _range(f["attention_acc_range"]), _range(f["pooling_acc_range"])
    assert att_lo <= pool_hi and pool_lo <= att_hi
    # "not a test of its strong one, pooling *beating* attention"
    assert f["pooling_acc"] <= f["attention_acc"]

    # "No mixing at all costs {{ attention_minus_identity }} points early in training, and all three
    # identity seeds ({{ identity_acc_range }}) lie below all of attention's"
    assert f["attention_minus_identity"] > 0
    assert len(mix["identity"].accuracies) == 3 and _range(f["identity_acc_range"])[1] < att_lo
    # "this experiment can separate mixers by a point or two at most"
    assert f["attention_minus_identity"] <= 2.0

    # "Pooling first, attention last (hybrid) reached {{ hybrid_acc }}%, no better than either of its parts"
    assert f["hybrid_acc"] <= min(f["attention_acc"], f["pooling_acc"])

    # "The token MLP's row ... It trained one epoch, not two: the speed measured just before
    # training, which set each model's epochs, came out low for it, while on an idle machine it
    # trains at {{ mlp_train_images_per_s }} images/s, like attention's {{ attention_train_images_per_s }}"
    assert f["mlp_epochs"] == 1 and set(mix["mlp"].epochs) == {1}
    probe = {m: ch11.column(rows, "mixers", m, "probe_images_per_s")[-1] for m in ("mlp", "attention")}
    assert probe["mlp"] < f["mlp_train_images_per_s"]
    assert probe["mlp"] / probe["attention"] < f["mlp_train_images_per_s"] / f["attention_train_images_per_s"]
    assert 0.9 < f["mlp_train_images_per_s"] / f["attention_train_images_per_s"] < 1.1

    # "The attention model with four norms ({{ norm_seeds }} seeds each, the same two epochs)"
    assert f["norm_seeds"] > 1
    assert {len(s.accuracies) for s in norms.values()} == {f["norm_seeds"]}
    assert {e for s in norms.values() for e in s.epochs} == {2}
    # "Early in training, BatchNorm does about as well here: {{ batchnorm_acc }}% against
    # LayerNorm's {{ layernorm_acc }}%, with overlapping seeds' ranges, with or without gradient clipping"
    assert abs(f["batchnorm_acc"] - f["layernorm_acc"]) < 1 and abs(f["batchnorm_noclip_acc"] - f["layernorm_acc"]) < 1
    ln_lo, ln_hi = _range(f["layernorm_acc_range"])
    for name in ("batchnorm", "batchnorm_noclip"):
        lo, hi = _range(f[f"{name}_acc_range"])
        assert lo <= ln_hi and ln_lo <= hi, name
    # "no run diverged"
    assert all(not r["diverged_step"] for r in rows if r["experiment"] == "norms")
    # "the largest gradient norm before clipping (over all seeds) stayed below LayerNorm's"
    assert f["batchnorm_max_grad_norm"] < f["layernorm_max_grad_norm"]
    assert f["batchnorm_noclip_max_grad_norm"] < f["layernorm_max_grad_norm"]

    # "BatchNorm inside the MLP was ahead by {{ bn_ffn_minus_layernorm }} points, every seed above
    # every LayerNorm seed"
    assert f["bn_ffn_minus_layernorm"] > 0
    assert _range(f["bn_ffn_acc_range"])[0] > ln_hi
    # "and its training loss fell fastest": the lowest final training loss of the four norms
    loss = {k: sum(ch11.column(rows, "norms", k, "train_loss")) / len(norms[k].accuracies) for k in norms}
    assert min(loss, key=loss.get) == "bn_ffn"

    # section 7: "The other three mixers grow linearly in $N$", section 9: "pooling's, the token
    # MLP's and identity's as $N^{1.00}$"
    for m in ("pooling", "mlp", "identity"):
        assert abs(float(f[f"{m}_macs_exponent"]) - 1) < 0.05, m
    # "attention's $N^2 D$ term is still catching up with its $N D^2$ projections"
    assert 1.05 < float(f["attention_macs_exponent"]) < 2
    # "yet at 784 tokens it already does {{ attention_over_pooling_macs_784 }}x pooling's work and
    # runs at {{ attention_infer_images_per_s_784 }} images/s against {{ pooling_infer_images_per_s_784 }}"
    assert f["attention_over_pooling_macs_784"] > 1
    assert f["attention_infer_images_per_s_784"] < f["pooling_infer_images_per_s_784"]
    # "At Fashion-MNIST's 16 tokens all mixers cost about the same": MACs, and the two speeds quoted
    macs16 = [int(r["macs"]) for r in cost if int(r["tokens"]) == 16]
    assert len(macs16) == len(mixers) and max(macs16) / min(macs16) < 1.2
    assert 0.8 < f["attention_infer_images_per_s_16"] / f["pooling_infer_images_per_s_16"] < 1.25

    # "Summary. ... a model with no mixer at all comes within {{ attention_minus_identity }} points
    # of attention ... free pooling is no different from attention here. LayerNorm is not needed for
    # stability in these runs": asserted above
