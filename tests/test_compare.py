"""Chapter 10's comparison runner: one row per model with sane values, CSV round trip, clear errors."""
import json

import pytest

from vitcourse.experiments.compare import COLUMNS, MODELS, RESULTS_CSV, compare, read_csv, write_csv
from vitcourse.data import load_data


def test_compare_rows_and_csv_round_trip(tmp_path):
    data = load_data(fast=True, train_size=200, test_size=100)
    rows = compare(data, ("vit_fmnist", "swin_fmnist"), epochs=1)
    assert [r["model"] for r in rows] == ["vit_fmnist", "swin_fmnist"]
    for r in rows:
        assert set(r) == set(COLUMNS)
        assert 0.0 <= r["test_acc"] <= 1.0
        assert r["train_images_per_s"] > 0 and r["infer_images_per_s"] > 0
        assert r["train_size"] == 200 and r["test_size"] == 100
        assert r["fit_images_per_s"] > 0 and r["seed"] == 0 and r["hardware"] and r["commit"]
        assert json.loads(r["train_config"])["epochs"] == 1
    assert rows[1]["macs"] > rows[0]["macs"]  # 196 tokens in Swin's first stage vs ViT's 16
    back = read_csv(write_csv(rows, tmp_path / "c.csv"))
    assert [b["model"] for b in back] == ["vit_fmnist", "swin_fmnist"]
    assert float(back[0]["test_acc"]) == rows[0]["test_acc"]


def test_compare_rejects_bad_arguments():
    data = load_data(fast=True, train_size=50, test_size=50)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        compare(data, epochs=0)
    with pytest.raises(ValueError, match="models must be among"):
        compare(data, ("vgg",))


def test_missing_results_name_the_make_target(tmp_path):
    with pytest.raises(FileNotFoundError, match="make compare"):
        read_csv(tmp_path / "nope.csv")


@pytest.mark.results
def test_committed_results_cover_every_model():
    rows = read_csv(RESULTS_CSV)
    assert [r["model"] for r in rows] == list(MODELS)
    assert all(0.1 < float(r["test_acc"]) <= 1.0 for r in rows)
    for r in rows:  # provenance: what ran, where, from which code
        assert list(r) == list(COLUMNS)
        assert r["hardware"] and r["commit"] and r["seed"] == "0"
        assert int(r["train_size"]) == 60_000 and int(r["test_size"]) == 10_000
        assert json.loads(r["train_config"])["epochs"] == int(r["epochs"])


def test_training_throughput_times_the_loops_own_step():
    from vitcourse.experiments.compare import training_throughput
    data = load_data(fast=True, train_size=64, test_size=10)
    speed = training_throughput("vit_fmnist", data.train_images, data.train_labels, batch_size=32,
                                steps=1, repeats=2)
    assert 0 < speed < 1e6
