"""Chapter 14's claims about the committed label-efficiency results, asserted on the facts the
prose quotes (tools/facts/ch14.py), seed by seed where the prose says "every seed"."""
from __future__ import annotations

import pytest

from tools.facts import ch14
from vitcourse.experiments.label_efficiency import LABELS, METHODS

pytestmark = pytest.mark.results


@pytest.fixture(scope="module")
def facts():
    return ch14.facts()


@pytest.fixture(scope="module")
def table():
    return ch14.table()


def test_three_seeds_for_every_method_and_number_of_labels(table):
    for method in METHODS:
        for n in LABELS:
            assert len(table[method][n]) == 3, (method, n)


def claims(facts, table) -> None:
    # "Pre-training helps at every number of labels measured ... every pre-trained seed beats
    # every seed from scratch" (at 100; and by a mean gap at every size)
    for n in LABELS:
        assert min(table["mae_finetune"][n]) > max(table["scratch"][n]), n
    # "most with the fewest": the gap shrinks from 100 to 600 to 6,000
    assert facts["gap_100"] > facts["gap_600"] > facts["gap_6000"] > 0
    # "from scratch the ViT even ends below its 6,000-label result" (one pass, fewer steps)
    assert facts["scratch_60000"] < facts["scratch_6000"]
    assert facts["steps_60000"] < facts["steps_6000"]
    # "A linear probe ... with 100 labels and ... with 600, more than fine-tuning in every seed
    # (each seed gives both the same labelled images)"
    for n in (100, 600):
        for probe, tuned in zip(table["linear_probe"][n], table["mae_finetune"][n]):
            assert probe > tuned, n
    # "From 6,000 labels on, fine-tuning wins"
    for n in (6_000, 60_000):
        assert min(table["mae_finetune"][n]) > max(table["linear_probe"][n]), n
    assert facts["mae_6000"] > facts["probe_6000"]
    # "k-NN ... reaches knn_100% from 100 labels, about what fine-tuning reaches ... and far above
    # the ViT trained from scratch"
    assert abs(facts["knn_100"] - facts["mae_100"]) < 2
    assert facts["knn_100"] - facts["scratch_100"] > 10
    # "Fine-tuned, it reaches mae_60000% in that one pass; chapter 06's model ... reaches p4cls_acc%
    # ... one pass comes within a point of eight from scratch"
    assert facts["p4cls_epochs"] == 8
    assert 0 < facts["p4cls_acc"] - facts["mae_60000"] < 1


def test_the_chapters_claims_hold(facts, table):
    claims(facts, table)


def test_a_changed_result_breaks_its_claim(facts, table):
    broken = {**facts, "scratch_60000": facts["scratch_6000"] + 1}
    with pytest.raises(AssertionError):
        claims(broken, table)
    flipped = {m: {n: list(v) for n, v in by_n.items()} for m, by_n in table.items()}
    flipped["linear_probe"][600] = [a - 10 for a in flipped["linear_probe"][600]]
    with pytest.raises(AssertionError):
        claims(facts, flipped)


def test_the_shipped_mae_card_says_how_it_was_made(facts):
    card = ch14.card()
    assert card["command"].startswith("python -m vitcourse pretrain")
    assert card["labels_used"] == 0 and card["train_images"] == 60_000
    assert facts["mae_epochs"] == len(card["history"])
    losses = [h["test_loss"] for h in card["history"]]
    assert losses[-1] < 0.8 * losses[0] and losses[-1] < 0.5  # it learned: predicting zeros scores about 1
