"""Chapter 06's measured facts, from the cards of the two shipped models it looks inside:
``data/checkpoints/vit_fmnist.json`` (chapter 05's run) and
``data/checkpoints/vit_convstem_s_fmnist.json`` (chapter 13's shipped ViT, section 7).

Accuracies are whole percents ("a 16-token ViT at about 90%"), the training time whole minutes.
The attention figures sections 5-7 quote (rollout shares, attention distances in px) are measured
live by the notebook on the test images, not read from committed results; the slow test
``tests/test_analysis.py::test_chapter_06_section_7s_claims_hold_for_the_shipped_models`` checks them.
"""
from __future__ import annotations

from tools.facts.ch05 import card

CHAPTER = "06_looking_inside"
VIT = "vit_fmnist"
BEST = "vit_convstem_s_fmnist"  # chapter 13's shipped ViT: section 7's "better model"


def facts() -> dict[str, str | int | float]:
    """The numbers chapter 06 quotes from the cards, by name."""
    vit, best = card(VIT), card(BEST)
    return {
        "vit_acc": round(100 * float(vit["test_accuracy"])),
        "best_vit_acc": round(100 * float(best["test_accuracy"])),
        "best_vit_minutes": round(float(best["wall_time_s"]) / 60),
    }
