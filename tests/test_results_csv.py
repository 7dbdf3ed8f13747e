"""The experiments' results CSVs (vitcourse.experiments.results_csv): atomic appends that keep older
rows readable, and configs as JSON-ready dicts."""
from __future__ import annotations

import json

import pytest

from vitcourse.experiments.results_csv import append_row, config_dict, read_results
from vitcourse.training.config import TrainConfig


def test_append_row_is_atomic_and_widens_the_header(tmp_path):
    path = tmp_path / "r" / "s.csv"
    append_row(path, {"key": "a", "x": 1})
    append_row(path, {"key": "b", "x": 2, "y": "new"})
    rows = read_results(path)
    assert [r["key"] for r in rows] == ["a", "b"]
    assert rows[0]["y"] == "" and rows[1]["y"] == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.csv"]  # no temporary file left
    assert path.read_bytes().count(b"\r") == 0  # "\n" line ends, as the committed CSVs have
    with pytest.raises(ValueError, match="key"):
        append_row(path, {"x": 3})


def test_a_missing_results_file_reads_as_no_rows(tmp_path):
    assert read_results(tmp_path / "none.csv") == []


def test_config_dict_turns_tuples_into_lists_and_anything_else_into_nothing():
    d = config_dict(TrainConfig(epochs=2))
    assert d["epochs"] == 2 and d["betas"] == [0.9, 0.99]
    assert json.loads(json.dumps(d)) == d
    assert config_dict(object()) == {} and config_dict(None) == {}
