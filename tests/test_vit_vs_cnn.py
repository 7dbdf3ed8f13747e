"""Chapter 12's runner (vitcourse.experiments.vit_vs_cnn) on tiny data: rows and their columns,
clean and strength-0 accuracies against `evaluate`, patch drop of everything, attacks, resumability,
CKA of a model with itself, the readers and plots the chapter calls, the command's errors, the
chapter source's code cells, and the claims its prose makes about the committed results."""
from __future__ import annotations

import math
import re
import time

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import vitcourse.cli as cli
from test_cli import assert_one_line_error, run_cli
from vitcourse.analysis.corruption_suite import ATTACKS, CORRUPTIONS
from vitcourse.data import load_data
from vitcourse.experiments import vit_vs_cnn as vc
from vitcourse.models import create_model
from vitcourse.training.loop import TrainConfig, evaluate, fit, predict

from tools.chapters import ROOT, read_facts, read_source
from tools.facts import ch12

# two strengths per corruption (the clean one first), and patch drop of everything
GRID = {name: (c.strengths[0], c.strengths[3]) for name, c in CORRUPTIONS.items()}
GRID["patch_drop_random_7"] = (0.0, 0.5, 1.0)
COLUMNS = {"key", "model", "card_test_accuracy", "card_commit", "corruption", "strength", "strength_unit",
           "images", "accuracy", "seed", "wall_s", "hardware", "torch", "commit"}


@pytest.fixture(scope="module")
def tiny():
    return load_data(train_size=512, test_size=200)


@pytest.fixture(scope="module")
def models(tiny):
    """A 2-block ViT and the small ResNet, each trained for 32 steps: predictions that vary."""
    out = {}
    for name, model in (("vit", create_model("vit_fmnist", depth=2)), ("cnn", create_model("resnet_fmnist_s"))):
        torch.manual_seed(0)
        config = TrainConfig(epochs=2, batch_size=32, compile=False, precision="fp32", warmup_frac=0.0)
        out[name] = fit(model, tiny, config, device="cpu", progress=False).model.eval()
    return out


@pytest.fixture(scope="module")
def corruption_run(tiny, models, tmp_path_factory):
    path = tmp_path_factory.mktemp("robustness") / "robustness.csv"
    report = vc.run_corruptions(models, tiny.test_images, tiny.test_labels, path, grid=GRID,
                                cards={"vit": {"test_accuracy": 0.9, "commit": "abc"}}, log=lambda _: None)
    return path, report


def by_key(rows):
    return {(r["model"], r["corruption"], r["strength"]): r for r in rows}


def test_rows_have_the_columns_one_per_model_corruption_and_strength(corruption_run):
    path, report = corruption_run
    rows = vc.read_robustness(path)
    assert {k for r in rows for k in r} == COLUMNS
    expected = 2 * (1 + sum(len(s) for s in GRID.values()))  # the clean row, then the grid, per model
    assert len(rows) == len(report.done) == expected
    assert len({r["key"] for r in rows}) == expected
    assert {r["images"] for r in rows} == {200} and {r["seed"] for r in rows} == {vc.SEED}
    vit_row = next(r for r in rows if r["model"] == "vit")
    cnn_row = next(r for r in rows if r["model"] == "cnn")
    assert (vit_row["card_test_accuracy"], vit_row["card_commit"]) == ("0.9", "abc")
    assert (cnn_row["card_test_accuracy"], cnn_row["card_commit"]) == ("", "")
    noise = next(r for r in rows if r["corruption"] == "gaussian_noise")
    assert noise["strength_unit"] == CORRUPTIONS["gaussian_noise"].unit


def test_clean_accuracy_is_evaluates_and_strength_zero_is_clean(tiny, models, corruption_run):
    rows = by_key(vc.read_robustness(corruption_run[0]))
    for name, model in models.items():
        clean = rows[(name, vc.CLEAN, 0.0)]["accuracy"]
        assert clean == pytest.approx(evaluate(model, tiny.test_images, tiny.test_labels)["accuracy"], abs=1e-5)
        for corruption, spec in CORRUPTIONS.items():
            assert rows[(name, corruption, float(spec.clean))]["accuracy"] == clean, corruption
        assert 0.2 < clean < 1.0  # trained a little: the tests below compare predictions that vary


def test_patch_drop_of_everything_gives_the_accuracy_of_a_black_image(tiny, models, corruption_run):
    rows = by_key(vc.read_robustness(corruption_run[0]))
    for name, model in models.items():
        black = int(predict(model, torch.zeros(1, 28, 28, dtype=torch.uint8)).argmax())
        expected = (tiny.test_labels == black).float().mean().item()
        assert rows[(name, "patch_drop_random_7", 1.0)]["accuracy"] == pytest.approx(expected, abs=1e-5)
        half = rows[(name, "patch_drop_random_7", 0.5)]["accuracy"]
        assert half != rows[(name, vc.CLEAN, 0.0)]["accuracy"]  # a real corruption, really evaluated


def test_a_second_call_adds_no_rows(tiny, models, corruption_run):
    path, _ = corruption_run
    before = path.read_text()
    report = vc.run_corruptions(models, tiny.test_images, tiny.test_labels, path, grid=GRID, log=lambda _: None)
    assert report.done == [] and len(report.skipped) == len(vc.read_robustness(path))
    assert path.read_text() == before


def test_a_passed_deadline_starts_nothing_and_says_what_is_left(tiny, models, tmp_path):
    late = vc.Deadline(max_minutes=1e-6, start=time.perf_counter() - 1)
    report = vc.run_corruptions(models, tiny.test_images, tiny.test_labels, tmp_path / "r.csv",
                                grid={"low_pass": (math.inf, 4)}, deadline=late, log=lambda _: None)
    assert report.done == [] and len(report.remaining) == 2 * 3
    assert not (tmp_path / "r.csv").exists()


def test_attacks_at_eps_zero_are_clean_and_pgd_lowers_the_accuracy(tiny, models, tmp_path):
    x, y = tiny.test_images[:40], tiny.test_labels[:40]
    path = tmp_path / "r.csv"
    vc.run_attacks(models, x, y, path, grid={"fgsm": (0, 8), "pgd": (0, 8)}, log=lambda _: None)
    rows = by_key(vc.read_robustness(path))
    assert len(rows) == 2 * 4 and {r["images"] for r in rows.values()} == {40}
    for name, model in models.items():
        clean = evaluate(model, x, y)["accuracy"]
        assert rows[(name, "fgsm", 0.0)]["accuracy"] == pytest.approx(clean, abs=1e-5)
        assert rows[(name, "pgd", 0.0)]["accuracy"] == pytest.approx(clean, abs=1e-5)
        assert rows[(name, "pgd", 8.0)]["accuracy"] < clean
        assert rows[(name, "pgd", 8.0)]["strength_unit"] == ATTACKS["pgd"].unit


def test_cka_of_a_model_with_itself_is_one_on_the_diagonal(tiny, models, tmp_path):
    path = tmp_path / "cka.csv"
    out = vc.run_cka(models, tiny.test_images, path, batch_size=64, log=lambda _: None)
    layers = {"vit": 2, "cnn": 6}  # vit: 2 blocks; resnet_fmnist_s: 3 stages x 2 basic blocks
    assert list(out) == [("vit", "vit"), ("cnn", "cnn"), ("vit", "cnn")]
    for (a, b), matrix in out.items():
        assert matrix.shape == (layers[a], layers[b])
        assert torch.isfinite(matrix).all()
        if a == b:
            torch.testing.assert_close(matrix.diagonal(), torch.ones(layers[a], dtype=torch.float64))
            torch.testing.assert_close(matrix, matrix.T)
    rows = vc.read_results(path)
    assert len(rows) == 2 * 2 + 6 * 6 + 2 * 6
    assert {r["images"] for r in rows} == {"192"} and {r["reduce"] for r in rows} == {"mean"}  # 3 minibatches of 64
    assert {"model_a", "model_b", "layer_a", "layer_b", "cka", "images", "batch_size", "reduce", "hardware",
            "commit"} <= set(rows[0])
    read = vc.read_cka(path)
    for pair, matrix in out.items():
        torch.testing.assert_close(read[pair], matrix, atol=1e-6, rtol=0)
    assert vc.run_cka(models, tiny.test_images, path, batch_size=64, log=lambda _: None) == {}
    assert len(vc.read_results(path)) == len(rows)
    vc.run_cka({"vit": models["vit"]}, tiny.test_images, path, batch_size=64, reduce="flatten", log=lambda _: None)
    with pytest.raises(ValueError, match="several settings"):
        vc.read_cka(path)
    assert vc.read_cka(path, reduce="flatten")[("vit", "vit")].shape == (2, 2)


def test_curves_are_ordered_mildest_first_and_plotted_with_labels(corruption_run):
    rows = vc.read_robustness(corruption_run[0])
    curves = vc.accuracy_curves(rows, "gaussian_noise")
    assert set(curves) == {"vit", "cnn"}
    assert curves["vit"][0] == [math.inf, 20.0]  # SNR: lower is stronger
    assert vc.accuracy_curves(rows, "patch_drop_random_7")["cnn"][0] == [0.0, 0.5, 1.0]
    ax = vc.plot_accuracy_curves(rows, "gaussian_noise")
    assert "Gaussian noise" in ax.get_title() and "200 test images" in ax.get_title()
    assert ax.get_xlabel().startswith(CORRUPTIONS["gaussian_noise"].unit) and "accuracy" in ax.get_ylabel()
    assert ax.xaxis_inverted()
    labels = ax.get_legend_handles_labels()[1]
    assert {"vit", "cnn", "vit, clean", "cnn, clean", "chance (10%)"} <= set(labels)
    ax = vc.plot_cka(torch.eye(3), "ViT vs ViT", labels=("ViT", "ViT"))
    assert ax.get_title() == "ViT vs ViT" and ax.get_xlabel() == "layer of ViT"
    with pytest.raises(ValueError, match="no results"):
        vc.plot_accuracy_curves(rows, "fgsm")


def test_a_bad_checkpoint_name_is_one_line():
    assert_one_line_error(run_cli("robustness", "--models", "vit_fmnist", "resnet"), "vitcourse robustness",
                          "argument --models", "'resnet'", "did you mean 'resnet_fmnist'?")


def test_a_missing_checkpoint_and_a_small_cka_batch_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vc, "PRETRAINED_DIR", tmp_path)
    assert cli.main(["robustness", "--parts", "cka", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vitcourse robustness: error: ")
    assert str(tmp_path / "resnet_fmnist.pt") in err and "`make resnet-checkpoint`" in err
    assert cli.main(["robustness", "--cka-batch-size", "100"]) == 2
    assert "argument --cka-batch-size: expected an int >= 256, got '100'" in capsys.readouterr().err


# ---------------------------------------------------------------- the chapter's source
SOURCE = ROOT / "chapters" / "12_vit_vs_cnn.md"


def test_chapter_12_source_reads_and_its_code_cells_compile():
    cells = read_source(SOURCE).cells
    sources = [c.source for c in cells if c.cell_type == "code"]
    for source in sources:
        python = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
        compile(python, "<ch12 cell>", "exec")
    text = "\n".join(c.source for c in cells)
    assert "TODO" not in text
    # each claim's section ends in its discussion, a markdown cell of its own
    markdown = [c.source for c in cells if c.cell_type == "markdown"]
    for part in "abcde":
        assert sum(s.startswith(f"**Discussion (({part})") for s in markdown) == 1, part
    for ex in ("12.1", "12.2"):
        i = next(i for i, s in enumerate(sources) if s.startswith(f"# check: {ex}"))
        assert "### BEGIN SOLUTION" in sources[i - 1] and "### END SOLUTION" in sources[i - 1]
    assert 'load_pretrained("vit_fmnist")' in text and 'load_pretrained("resnet_fmnist")' in text
    assert re.search(r"explorer = CorruptionExplorer\(vit, cnn, .*\)", text)
    assert "explorer.display()" in text and "explorer.figure()" in text


# ---------------------------------------------------------------- the committed results
@pytest.mark.results
def test_the_committed_results_are_complete():
    rows = vc.read_robustness(vc.ROBUSTNESS_CSV)
    got = {(r["model"], r["corruption"], float(r["strength"])) for r in rows}
    for model in vc.MODELS:
        for name, c in {**CORRUPTIONS, **ATTACKS}.items():
            assert {(model, name, float(s)) for s in c.strengths} <= got, f"run `make robustness` ({model}, {name})"
    assert all(r["images"] == 10_000 for r in rows if r["corruption"] in CORRUPTIONS or r["corruption"] == "clean")
    assert all(r["images"] == vc.ATTACK_IMAGES for r in rows if r["corruption"] in ATTACKS)
    cka = vc.read_cka(vc.CKA_CSV)
    assert set(cka) == set(vc.cka_pairs(vc.MODELS))


def _lead(acc: dict, corruption: str, strength: float) -> float:
    """The ViT's accuracy minus the ResNet's, in points."""
    return acc[(ch12.V, corruption, float(strength))] - acc[(ch12.R, corruption, float(strength))]


def chapter_12_claims(f: dict, acc: dict, cka: dict) -> None:
    """Assert what chapter 12's discussions (a)-(e) (chapters/12_vit_vs_cnn.md) say about the
    committed results: on its facts `f` (data/facts/12_vit_vs_cnn.json) and, for the claims that
    quote no number, on the accuracies `acc` and CKA matrices `cka` the facts are made from
    (tools/facts/ch12.py)."""
    V, R = ch12.V, ch12.R
    uniform = 14.1  # pixels: the mean attention distance of uniform attention on the 4x4 grid (the prose's)

    # (a) "The two self-similarity maps look more alike than Raghu et al.'s ... The ViT is a little
    # more uniform, too little to read much into with one model each"
    assert 0 < float(f["cka_vit_off_diagonal"]) - float(f["cka_resnet_off_diagonal"]) < 0.1
    # (a) "in both the last layer is far from the first (CKA {{ cka_vit_first_last }} and ...)"
    assert float(f["cka_vit_first_last"]) < 0.3 and float(f["cka_resnet_first_last"]) < 0.3
    # (a) "the ResNet's first two layers are almost the same representation"
    assert float(cka[(R, R)][0, 1]) > 0.9
    # (a) "the ViT's first block is closest to a *middle* layer of the ResNet, not to its first"
    cross = cka[(V, R)]
    assert 0 < int(cross[0].argmax()) < cross.shape[1] - 1
    # (a) "the first layer's heads attend at {{ ..head1 }} and {{ ..head2 }} pixels": two heads
    assert sorted(k for k in f if k.startswith("attention_distance_layer1_head")) == [
        "attention_distance_layer1_head1", "attention_distance_layer1_head2"]
    # (a) "the layer means range from {{ attention_distance_layer_min }} ... against 14.1 for
    # uniform attention: every layer looks across the whole grid" (and so does every first-layer
    # head: "global early"; the summary's "looks globally from its first layer")
    assert f["attention_distance_layer_min"] > 0.9 * uniform
    assert min(f["attention_distance_layer1_head1"], f["attention_distance_layer1_head2"]) > 0.9 * uniform

    # (b) "Clean, the ResNet is the better model ({{ resnet_clean }}% against {{ vit_clean }}%)"
    assert f["resnet_clean"] > f["vit_clean"] and f["resnet_minus_vit_clean"] > 0
    # (b) "once patches go missing the ViT keeps more": half of the 7x7 patches, by far more than
    # "a standard error of about 0.5" ("by margins far beyond the test set's noise")
    assert float(f["vit_minus_resnet_patch_drop_random_7_50pct"]) > 5
    # (b) "with 4x4 patches ... the lead is about as large"
    lead_4 = f["vit_patch_drop_random_4_50pct"] - f["resnet_patch_drop_random_4_50pct"]
    assert lead_4 > 5 and abs(lead_4 - float(f["vit_minus_resnet_patch_drop_random_7_50pct"])) < 5
    # (b) "At 10% the ResNet is still ahead" (and the ViT ahead by 25%)
    assert float(f["vit_minus_resnet_patch_drop_random_7_10pct"]) < 0 < _lead(acc, "patch_drop_random_7", 0.25)
    # (b) "Dropping the centre first ... both fall to chance by 50%"
    assert f["vit_patch_drop_centre_7_50pct"] < 15 and f["resnet_patch_drop_centre_7_50pct"] < 15
    # (b) "though at 25% the ViT is {{ vit_minus_resnet_patch_drop_centre_7_25pct }} points ahead"
    assert float(f["vit_minus_resnet_patch_drop_centre_7_25pct"]) > 0
    # (b) "dropping the border removes mostly background, and both hold up longest there"
    for model in (V, R):
        for fraction in CORRUPTIONS["patch_drop_border_7"].strengths[1:]:
            border = acc[(model, "patch_drop_border_7", float(fraction))]
            assert border >= acc[(model, "patch_drop_random_7", float(fraction))], (model, fraction)
            assert border >= acc[(model, "patch_drop_centre_7", float(fraction))], (model, fraction)
    # (b) "**Shuffling** is the clearest difference": a larger lead than any patch drop's
    shuffle_lead = f["vit_patch_shuffle_4x4"] - f["resnet_patch_shuffle_4x4"]
    drops = [_lead(acc, c, s) for (m, c, s) in acc if m == V and c.startswith("patch_drop_")]
    assert shuffle_lead > 20 and shuffle_lead > max(drops)
    # (b) "their ViTs keep most of their accuracy under shuffling, ours loses more than half of it"
    assert f["vit_patch_shuffle_4x4"] < f["vit_clean"] / 2

    # (c) "Keep only the low frequencies and the ViT does better": at radius 4 and 2
    assert float(f["vit_minus_resnet_low_pass_r4"]) > 3
    assert f["vit_low_pass_r2"] - f["resnet_low_pass_r2"] > 3
    # (c) "although it starts {{ resnet_minus_vit_clean }} points lower": asserted in (b)
    # (c) "These gaps are well beyond the test set's noise but small enough that a second seed could
    # shrink them": more than 2 points (about four standard errors on 10,000 images), under 15
    c_gaps = [float(f["vit_minus_resnet_low_pass_r4"]), f["vit_low_pass_r2"] - f["resnet_low_pass_r2"],
              f["resnet_high_pass_r4"] - f["vit_high_pass_r4"], f["resnet_high_pass_r6"] - f["vit_high_pass_r6"]]
    assert all(2 < g < 15 for g in c_gaps), c_gaps
    # (c) "Keep only the high frequencies and the ResNet does better": at radius 4 and 6
    assert f["resnet_high_pass_r4"] - f["vit_high_pass_r4"] > 2
    assert f["resnet_high_pass_r6"] - f["vit_high_pass_r6"] > 2

    # (d) "At small $\epsilon$ the two are equally fragile ... inside the
    # {{ attack_standard_error }}-point standard error of {{ attack_images }} images"
    se = f["attack_standard_error"]
    assert abs(f["vit_fgsm_eps1"] - f["resnet_fgsm_eps1"]) < se
    assert abs(f["vit_pgd_eps1"] - f["resnet_pgd_eps1"]) < se
    # (d) "At larger $\epsilon$ the ResNet falls faster: PGD at 8/255 ..., at 16/255", "this ViT is
    # the *harder* model to attack at large $\epsilon$" (summary: "large ones the ResNet more")
    assert f["vit_pgd_eps8"] - f["resnet_pgd_eps8"] > 10 and f["vit_pgd_eps16"] - f["resnet_pgd_eps16"] > 10
    # (d) "FGSM shows the same order, more mildly"
    assert 0 < f["vit_fgsm_eps8"] - f["resnet_fgsm_eps8"] < f["vit_pgd_eps8"] - f["resnet_pgd_eps8"]

    # (e) "Gaussian noise is where the models differ most": the largest gap of any corruption
    # ("by the largest margins of the chapter")
    gaps = {(c, s): abs(_lead(acc, c, s)) for (m, c, s) in acc if m == V}
    assert max(gaps, key=gaps.get)[0] == "gaussian_noise"
    # (e) "Down to 20 dB neither loses much": under 3 points from clean, at 40, 30 and 20 dB
    for model, short in ((V, "vit"), (R, "resnet")):
        for snr in (40.0, 30.0, 20.0):
            assert f[f"{short}_clean"] - acc[(model, "gaussian_noise", snr)] < 3, (model, snr)
    # (e) "at 10 dB the ViT keeps ... at 5 dB ..., and at 0 dB ...": the ViT ahead at each
    for snr in (10, 5, 0):
        assert f[f"vit_gaussian_noise_{snr}db"] > f[f"resnet_gaussian_noise_{snr}db"], snr
    # (e) "This agrees with the claim": "{{ vit_minus_resnet_gaussian_noise_10_5db_range }} points
    # better at 10 and 5 dB", both far beyond the noise (summary: "far more robust")
    low, high = (float(x) for x in f["vit_minus_resnet_gaussian_noise_10_5db_range"].split("-"))
    assert 15 < low <= high and float(f["vit_minus_resnet_gaussian_noise_10db"]) > 15
    # (e) "the model that is {{ resnet_minus_vit_clean }} points worse on clean images": asserted in (b)


@pytest.mark.results
def test_the_chapters_claims_hold_in_the_committed_results():
    """Chapter 12's discussions quote the committed results by name ({{ name }} from
    data/facts/12_vit_vs_cnn.json); if a re-run no longer supports a sentence, this fails and a
    person rewrites the sentence, then `chapter_12_claims`."""
    chapter_12_claims(read_facts("12_vit_vs_cnn"), ch12.accuracies(), ch12.cka())


@pytest.mark.parametrize("name, value", [
    ("cka_resnet_off_diagonal", "0.65"),       # the ResNet's layers the more uniform
    ("vit_patch_shuffle_4x4", 50.0),           # the ViT keeps more than half of its accuracy shuffled
    ("resnet_fgsm_eps1", 80.0),                # a difference beyond the standard error at 1/255
    ("vit_minus_resnet_gaussian_noise_10_5db_range", "5-31"),  # no longer strongly ahead
])
def test_the_claims_fail_when_a_fact_no_longer_supports_its_sentence(name, value):
    facts = dict(read_facts("12_vit_vs_cnn"))
    facts[name] = value
    with pytest.raises(AssertionError):
        chapter_12_claims(facts, ch12.accuracies(), ch12.cka())
