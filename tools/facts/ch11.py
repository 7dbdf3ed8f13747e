"""Chapter 11's measured facts, from the committed results of ``make mixers``:

* ``data/results/token_mixers.csv``: one row per budgeted run, the mixer ablation (experiment
  ``mixers``: five token mixers x 3 seeds) and the norm ablation (``norms``: four norms x 3 seeds);
* ``data/results/token_mixers_cost.csv``: MACs and measured images/s per mixer at 16 to 784 tokens.

Ported from the deleted generator ``tools/chapters/ch11.py`` (its ``discussion()``, section 9).
Percentages are rounded to one decimal, speeds to whole images/s and the cost exponents to two
decimals, as the prose quotes them. ``runs``, ``summaries``, ``column`` and ``cost_rows`` are what
the claims test (tests/test_token_mixers.py) reads for the claims that quote no number.
"""
from __future__ import annotations

from vitcourse.experiments.budget import Summary, summarise
from vitcourse.experiments.results_csv import read_results
from vitcourse.experiments.token_mixers import COST_CSV, RUNS_CSV, growth_exponent

CHAPTER = "11_token_mixers"


def runs() -> list[dict[str, str]]:
    """Every committed run of both ablations, as the CSV's rows."""
    return read_results(RUNS_CSV)


def cost_rows() -> list[dict[str, str]]:
    """The committed cost table: one row per mixer and patch size."""
    return read_results(COST_CSV)


def summaries(rows: list[dict[str, str]] | None = None) -> tuple[dict[str, Summary], dict[str, Summary]]:
    """(mixers, norms): per variant, its seeds' accuracies and epochs, in the CSV's order."""
    rows = runs() if rows is None else rows
    return summarise(rows, "mixers"), summarise(rows, "norms")


def acc_range(s: Summary) -> str:
    """The seeds' range of test accuracy in percent, "83.3-84.3"."""
    return f"{100 * min(s.accuracies):.1f}-{100 * max(s.accuracies):.1f}"


def column(rows: list[dict[str, str]], experiment: str, variant: str, name: str) -> list[float]:
    """The values of column `name` in the runs of `variant` of `experiment`, in the CSV's order."""
    return [float(r[name]) for r in rows if r["experiment"] == experiment and r["variant"] == variant]


def _cost(cost: list[dict[str, str]], mixer: str, patch_size: int, name: str) -> float:
    """Column `name` of the cost table's row for `mixer` at `patch_size` (7: 16 tokens, 1: 784)."""
    return next(float(r[name]) for r in cost if r["mixer"] == mixer and int(r["patch_size"]) == patch_size)


def _macs_exponent(cost: list[dict[str, str]], mixer: str) -> float:
    # over the two largest grids (196 and 784 tokens), where the per-token terms no longer dominate
    pts = sorted((r for r in cost if r["mixer"] == mixer), key=lambda r: int(r["tokens"]))[-2:]
    return growth_exponent([int(r["tokens"]) for r in pts], [float(r["macs"]) for r in pts])


def facts() -> dict[str, str | int | float]:
    """The numbers chapter 11's section 9 quotes, by name."""
    rows, cost = runs(), cost_rows()
    mix, nrm = summaries(rows)
    out: dict[str, str | int | float] = {}
    # the training time every run had; the prose says "120 s", so a whole number
    out["budget_s"] = round(float(rows[0]["budget_s"]))

    # section 9's table, one line per mixer: mean and range over seeds, epochs
    for name, s in mix.items():
        out[f"{name}_acc"] = round(100 * s.mean, 1)
        out[f"{name}_acc_range"] = acc_range(s)
        out[f"{name}_epochs"] = min(s.epochs)
    pct = {name: 100 * s.mean for name, s in mix.items()}
    out["attention_minus_pooling"] = round(pct["attention"] - pct["pooling"], 1)
    out["attention_minus_identity"] = round(pct["attention"] - pct["identity"], 1)

    # the token MLP trained one epoch, not two: its training speed timed on an idle machine
    # (section 7's cost table, 16 tokens) against attention's
    out["mlp_train_images_per_s"] = round(_cost(cost, "mlp", 7, "train_images_per_s"))
    out["attention_train_images_per_s"] = round(_cost(cost, "attention", 7, "train_images_per_s"))

    # the norm ablation
    out["norm_seeds"] = len(next(iter(nrm.values())).accuracies)
    for name, s in nrm.items():
        out[f"{name}_acc"] = round(100 * s.mean, 1)
    for name in ("layernorm", "batchnorm", "batchnorm_noclip", "bn_ffn"):
        # the largest gradient norm before clipping, over all seeds, and the seeds' range of accuracy
        out[f"{name}_max_grad_norm"] = round(max(column(rows, "norms", name, "max_grad_norm")), 1)
        out[f"{name}_acc_range"] = acc_range(nrm[name])
    out["bn_ffn_minus_layernorm"] = round(100 * nrm["bn_ffn"].mean - 100 * nrm["layernorm"].mean, 1)

    # cost against tokens: exponents as strings, because the prose shows two decimals ("1.00")
    for name in ("attention", "pooling", "mlp", "identity"):
        out[f"{name}_macs_exponent"] = f"{_macs_exponent(cost, name):.2f}"
    out["attention_over_pooling_macs_784"] = round(
        _cost(cost, "attention", 1, "macs") / _cost(cost, "pooling", 1, "macs"), 1)
    for name in ("attention", "pooling"):
        out[f"{name}_infer_images_per_s_16"] = round(_cost(cost, name, 7, "infer_images_per_s"))
        out[f"{name}_infer_images_per_s_784"] = round(_cost(cost, name, 1, "infer_images_per_s"))
    return out
