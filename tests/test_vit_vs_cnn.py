"""Chapter 12's runner (vitcourse.experiments.vit_vs_cnn) on tiny data: rows and their columns,
clean and strength-0 accuracies against `evaluate`, patch drop of everything, attacks, resumability,
CKA of a model with itself, the readers and plots the chapter calls, the command's errors, and the
chapter generator's code cells."""
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


# ---------------------------------------------------------------- the chapter's generator
def test_chapter_12_generator_imports_and_its_code_cells_compile():
    from tools.chapters import ch12

    sources = [c.source for c in ch12.CELLS if c.cell_type == "code"]
    for source in sources:
        python = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
        compile(python, "<ch12 cell>", "exec")
    text = "\n".join(c.source for c in ch12.CELLS)
    assert "TODO" not in text
    for part in "ABCDE":
        assert ch12.DISCUSSIONS[part] in text
    for ex in ("12.1", "12.2"):
        i = next(i for i, s in enumerate(sources) if s.startswith(f"# check: {ex}"))
        assert "### BEGIN SOLUTION" in sources[i - 1] and "### END SOLUTION" in sources[i - 1]
    assert 'load_pretrained("vit_fmnist")' in text and 'load_pretrained("resnet_fmnist")' in text
    assert re.search(r"explorer = CorruptionExplorer\(vit, cnn, .*\)", text)
    assert "explorer.display()" in text and "explorer.figure()" in text


# ---------------------------------------------------------------- the committed results
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


def test_the_chapters_claims_hold_in_the_committed_results():
    """Chapter 12's discussions (numbers filled in from the CSVs by tools/chapters/ch12.py) state
    these; if a re-run changes them, the text has to change too."""
    rows = vc.read_robustness(vc.ROBUSTNESS_CSV)
    acc = {(r["model"], r["corruption"], float(r["strength"])): r["accuracy"] for r in rows}
    V, R = "vit_fmnist", "resnet_fmnist"

    def gap(name, s):  # ViT minus ResNet
        return acc[(V, name, float(s))] - acc[(R, name, float(s))]

    # (a) "a little more uniform, not much"; "the first ViT block is closest to a middle ResNet layer"
    cka = vc.read_cka(vc.CKA_CSV)
    off = {k: float(m[~torch.eye(*m.shape, dtype=torch.bool)].mean()) for k, m in cka.items() if k[0] == k[1]}
    assert 0 < off[(V, V)] - off[(R, R)] < 0.1
    cross = cka[(V, R)]
    assert 0 < int(cross[0].argmax()) < cross.shape[1] - 1
    # (b) the ResNet is better clean, the ViT under half the patches dropped and under shuffling
    assert gap("clean", 0) < 0
    assert gap("patch_drop_random_7", 0.5) > 0.05 and gap("patch_drop_random_4", 0.5) > 0.05
    assert gap("patch_drop_random_7", 0.1) < 0 and gap("patch_drop_centre_7", 0.25) > 0
    assert gap("patch_shuffle", 4) > 0.2 and acc[(V, "patch_shuffle", 4.0)] < acc[(V, "clean", 0.0)] / 2
    # (c) low-pass favours the ViT, high-pass the ResNet
    assert gap("low_pass", 4) > 0.03 and gap("low_pass", 2) > 0.03
    assert gap("high_pass", 4) < -0.02 and gap("high_pass", 6) < -0.02
    # (d) equal at 1/255 (within 2 standard errors of 1,000 images), the ViT ahead at 8 and 16
    assert abs(gap("fgsm", 1)) < 0.023 and abs(gap("pgd", 1)) < 0.023
    assert gap("pgd", 8) > 0.1 and gap("pgd", 16) > 0.1 and gap("fgsm", 8) > 0
    # (e) noise: little lost by 20 dB, the ViT far ahead at 10 and 5 dB
    assert acc[(V, "gaussian_noise", 20.0)] > 0.89 and acc[(R, "gaussian_noise", 20.0)] > 0.89
    assert gap("gaussian_noise", 10) > 0.15 and gap("gaussian_noise", 5) > 0.15
