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
    # "A linear probe ... with 600 labels, more than fine-tuning in every seed, and with 100,
    # more on average"
    assert min(table["linear_probe"][600]) > max(table["mae_finetune"][600])
    assert facts["probe_100"] > facts["mae_100"]
    # "From 6,000 labels on, fine-tuning wins"
    for n in (6_000, 60_000):
        assert min(table["mae_finetune"][n]) > max(table["linear_probe"][n]), n
    assert facts["mae_6000"] > facts["probe_6000"]
    # "k-NN ... far above the ViT trained from scratch on the same images" (100 labels)
    assert facts["knn_100"] - facts["scratch_100"] > 10
    # "Chapter 05's ViT ... reaches about 90%": the fine-tuned one-pass model is below that
    assert facts["mae_60000"] < 90


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
