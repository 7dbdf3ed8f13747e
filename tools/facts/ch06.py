"""Chapter 06's measured facts, from the cards of the shipped models:
``data/checkpoints/vit_fmnist_p4_cls.json`` (the model the chapter looks inside, made by
``make attention-checkpoint``) and ``data/checkpoints/vit_fmnist.json`` (chapter 05's model, which
the chapter's first section names).

Accuracies are whole percents ("about 90%"). The card's wall time is not quoted: the run shared
its 2 cores with other work, so its minutes say more about the machine than about the model. The attention
figures the chapter describes (rollout and attention shares on the garment, position-embedding
similarity, attention distances in px) are measured live by the notebook on the test images, not
read from committed results; the slow test
``tests/test_analysis.py::test_chapter_06s_descriptions_hold_for_the_shipped_model`` checks them.
"""
from __future__ import annotations

from tools.facts.ch05 import card

CHAPTER = "06_looking_inside"
VIT = "vit_fmnist"              # chapter 05's model: patch 7, mean pooling
MODEL = "vit_fmnist_p4_cls"     # the chapter's model: patch 4 (7 x 7 tokens) and a class token


def facts() -> dict[str, str | int | float]:
    """The numbers chapter 06 quotes from the cards, by name."""
    vit, model = card(VIT), card(MODEL)
    return {
        "vit_acc": round(100 * float(vit["test_accuracy"])),
        "p4cls_acc": round(100 * float(model["test_accuracy"])),
        "p4cls_epochs": int(model["epochs"]),
    }
