"""Chapter 14's label-efficiency runner: the probes on frozen features, the budgets, and a resumable
run that writes one row per (labels, method, seed)."""
from __future__ import annotations

import torch

from vitcourse.data import FashionMNISTData
from vitcourse.experiments import label_efficiency as le
from vitcourse.experiments.results_csv import read_results
from vitcourse.models.mae import MAE, MAEConfig


def blobs(n_per_class: int, classes: int = 4, dim: int = 8, spread: float = 0.3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(42)) * 3
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


def test_the_probes_separate_separable_features_and_guess_on_noise():
    xtr, ytr = blobs(20)
    xte, yte = blobs(50, seed=1)
    assert le.linear_probe(xtr, ytr, xte, yte) > 0.95
    assert le.knn_accuracy(xtr, ytr, xte, yte) > 0.95
    noise = torch.randn(80, 8, generator=torch.Generator().manual_seed(3))
    noise_test = torch.randn(400, 8, generator=torch.Generator().manual_seed(4))
    for probe in (le.linear_probe, le.knn_accuracy):
        assert probe(noise, ytr, noise_test, torch.arange(4).repeat(100)) < 0.45  # chance is 0.25


def test_knn_votes_with_the_nearest_neighbours_by_cosine():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    test = torch.tensor([[10.0, 0.5], [0.1, 3.0]])  # the scale does not matter, the direction does
    assert le.knn_accuracy(train, labels, test, torch.tensor([0, 1]), k=1) == 1.0


def test_every_size_gets_a_few_hundred_steps_and_one_recipe_for_both_starts():
    for n, (epochs, batch) in le.BUDGETS.items():
        steps = epochs * -(-n // min(batch, n))
        assert 100 <= steps <= 600, (n, steps)
    assert le.finetune_config(600, 1) == le.finetune_config(600, 1)
    assert le.finetune_config(100, 0).batch_size <= 100


def tiny_data() -> FashionMNISTData:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (200, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(10).repeat(20)
    return FashionMNISTData(images, labels, images[:50].clone(), labels[:50].clone())


def test_a_run_writes_one_row_per_key_and_a_second_call_skips_them(tmp_path, monkeypatch):
    monkeypatch.setattr(le, "MONITOR_IMAGES", 20)
    torch.manual_seed(0)
    mae = MAE(MAEConfig(dim=16, depth=1, heads=2, mlp_dim=32, decoder_dim=16, decoder_depth=1, decoder_mlp_dim=16))
    csv = tmp_path / "le.csv"
    report = le.run(mae, tiny_data(), labels=[20], seeds=[0], csv_path=csv, fast=True, device="cpu")
    rows = read_results(csv)
    assert sorted(r["method"] for r in rows) == sorted(le.METHODS) and len(report.done) == 4
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 and r["test_images"] == "50" for r in rows)
    again = le.run(mae, tiny_data(), labels=[20], seeds=[0], csv_path=csv, fast=True, device="cpu")
    assert again.done == [] and len(again.skipped) == 4 and len(read_results(csv)) == 4
    table = le.read_label_efficiency(csv)
    assert set(table) == set(le.METHODS) and table["knn"][20] == [float(rows[-1]["test_accuracy"])]


def test_finetuning_starts_from_the_encoder_and_from_scratch_does_not(monkeypatch):
    torch.manual_seed(0)
    config = MAEConfig(dim=16, depth=1, heads=2, mlp_dim=32, decoder_dim=16, decoder_depth=1, decoder_mlp_dim=16)
    mae = MAE(config)
    started = {}
    real_fit = le.fit

    def spy(model, data, cfg, **kw):
        started["pos_embed"] = model.pos_embed.detach().clone()
        return real_fit(model, data, cfg, **kw)

    monkeypatch.setattr(le, "fit", spy)
    monkeypatch.setattr(le, "MONITOR_IMAGES", 20)
    data = tiny_data()
    le.finetune(mae.encoder_state_dict(), data.train_images[:20], data.train_labels[:20], data,
                le.finetune_config(20, 0, fast=True), "cpu", config)
    assert torch.equal(started["pos_embed"], mae.encoder.pos_embed.detach())
    le.finetune(None, data.train_images[:20], data.train_labels[:20], data, le.finetune_config(20, 0, fast=True),
                "cpu", config)
    assert not torch.equal(started["pos_embed"], mae.encoder.pos_embed.detach())


def test_the_command_says_how_to_make_a_missing_encoder(tmp_path, capsys):
    from vitcourse.cli import main
    assert main(["labels", "--mae", str(tmp_path / "none.pt")]) == 2
    assert "make pretrain" in capsys.readouterr().err
