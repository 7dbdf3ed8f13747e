"""Where a result came from (vitcourse.training.provenance): the commit and hardware that model cards and
results CSVs record, each in the spelling its committed files already have."""
from __future__ import annotations

import re
import subprocess

import pytest
import torch

from vitcourse.training.provenance import git_commit, hardware_info, hardware_label, provenance_columns


def test_a_card_has_the_full_commit_and_a_csv_row_the_short_one():
    full, short = git_commit(), git_commit(short=True)
    if full == "unknown":
        pytest.skip("not a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", full), full
    assert re.fullmatch(r"[0-9a-f]{7,}(\+dirty)?", short), short
    assert full.startswith(short.removesuffix("+dirty"))
    assert full.endswith("-dirty") == short.endswith("+dirty")


def test_without_git_the_commit_says_so(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    monkeypatch.setattr(subprocess, "run", no_git)
    assert git_commit() == "unknown" and git_commit(short=True) == ""


def test_the_hardware_label_is_made_from_the_cards_facts(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on the CPU machines
    info = hardware_info("cpu")
    assert {"device", "platform", "cpu", "cpu_count", "torch_threads", "torch", "python"} <= set(info)
    assert info["device"] == "cpu" and "gpu" not in info
    assert hardware_label() == f"{info['cpu']}, {info['cpu_count']} cores, {info['torch_threads']} torch threads"
    assert provenance_columns() == {"hardware": hardware_label(), "torch": torch.__version__,
                                    "commit": git_commit(short=True)}
    assert list(provenance_columns()) == ["hardware", "torch", "commit"]  # the committed CSVs' order
