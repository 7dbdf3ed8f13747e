"""Generates notebooks/13_small_data.ipynb (run from the repo root: python tools/chapters/ch13.py).

The .ipynb is what students open and what is committed; this script is how it was written, kept so
that a change to the chapter is a reviewable diff of Python strings. The chapter reads the committed
results of `make smalldata` (data/results/small_data.csv) as they are when it runs: whatever rows
are there, with a line that names the planned runs not yet in the file. Section 8, the discussion
of those results, is written here from the same CSV when the notebook is generated (`measured()`,
`discussion()`): every number in it is read from the file, and tests/test_small_data.py asserts
the claims its sentences make, so a re-run (a new seed, a new step) that changes one fails until
the text is rewritten and the notebook regenerated.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.nbbuild import code, md, write_chapter  # noqa: E402

TEACHES = """
What you will learn: why a plain Vision Transformer loses to a CNN when the data is small (chapter
07's data-size sweep, and the ViT paper's own explanation: little inductive bias), and the remedies
of 2021 that put some of a CNN's prior back or regularise the training, each built from the
package and explained with what its paper shows: the ViT paper's hybrid and the convolutional stem
of Xiao et al.; the Compact Convolutional Transformer's convolutional tokenizer and sequence pooling
(you write sequence pooling); shifted patch tokenization and locality self-attention (you write the
image shifts); augmentation (TrivialAugment, random erasing, mixup, CutMix); and DeiT's distillation
token with the course's ResNet as teacher. Then the ablation that trains each step of the recipe
for the same wall-clock budget on Fashion-MNIST, read from its committed CSV, and a small live
re-run.
"""

GOAL_10_MIN = 0.93  # issue 17: >= 93.0% within 10 minutes on 2 cores


def measured() -> dict:
    """What section 8 quotes, from data/results/small_data.csv: per recipe step the mean, range and
    seed count of the test accuracy, the epochs, parameters and MACs, the mean training accuracy
    of the last epoch (a running mean over its augmented batches), the long runs, and the shipped
    teacher's card."""
    import json

    from vitcourse.experiments.small_data import BEST_VARIANT, read_rows, recipe_summary
    from vitcourse.training.checkpoint import PRETRAINED_DIR

    rows = read_rows()
    steps = {}
    for variant, summary in recipe_summary(rows).items():
        runs = [r for r in rows if r["experiment"] == "recipe" and r["variant"] == variant]
        histories = [json.loads(r["history"]) for r in runs]
        last = [h[-1] for h in histories]
        # test accuracy gained over the last two epochs (the cosine schedule's tail), in points
        tail = [100 * (h[-1]["test_acc"] - h[max(0, len(h) - 3)]["test_acc"]) for h in histories]
        steps[variant] = {
            "mean": 100 * summary.mean, "min": 100 * min(summary.accuracies), "max": 100 * max(summary.accuracies),
            "seeds": len(summary.accuracies), "epochs": summary.epochs[0], "params": summary.params,
            "mmacs": summary.macs / 1e6, "train_acc": 100 * sum(h["train_acc"] for h in last) / len(last),
            "tail_gain": sum(tail) / len(tail),
            "hardware": sorted({r["hardware"] for r in runs})}
    long = long_runs(rows)
    teacher = json.loads((PRETRAINED_DIR / "resnet_fmnist.json").read_text())
    return {"steps": steps, "long": long, "best": BEST_VARIANT, "teacher_acc": 100 * teacher["test_accuracy"],
            "teacher_epochs": teacher["epochs"]}


def _acc(step: dict) -> str:
    """"90.98%" for one seed, "90.98% (90.70-91.20, 3 seeds)" for more."""
    if step["seeds"] == 1:
        return f"{step['mean']:.2f}% (one seed)"
    return f"{step['mean']:.2f}% ({step['min']:.2f}-{step['max']:.2f}, {step['seeds']} seeds)"


def more_time_text(m: dict) -> str:
    """Section 8's last sentences: what the best step gains when its budget is 30 and 60 minutes
    (the long part, small_data_long.csv), from `measured()`."""
    from vitcourse.experiments.small_data import LONG_BUDGETS_S

    best, long = m["steps"][m["best"]], m["long"]
    half_s, hour_s = LONG_BUDGETS_S  # 30 and 60 minutes: the prose below names them
    half, hour = long.get((m["best"], half_s)), long.get((m["best"], hour_s))
    if half is None or hour is None:
        return ("**What more time buys.** The long runs are not all in the file yet: what 30 and 60 minutes buy is the next "
                "measurement, and the shipped model's card will carry it.")
    delta = hour["accuracy"] - half["accuracy"]
    train = (f"its training accuracy reaches {hour['train_acc']:.1f}% against the half hour's "
             f"{half['train_acc']:.1f}%")
    if delta >= SEED_NOISE:
        second = "the second half hour still pays"
    elif delta <= -SEED_NOISE:
        second = f"the longer schedule costs points, and {train}"
    elif hour["train_acc"] > half["train_acc"]:
        second = f"{train}, so the second half hour is spent learning the training set"
    else:
        second = "the second half hour buys nothing"
    moved = "the half hour's accuracy again" if round(delta, 2) == 0 else f"{delta:+.2f} points from the half hour"
    # 30 minutes plan three times the epochs of the 10-minute steps (BUDGET_S = 600 s)
    short = 100 * GOAL_10_MIN - half["accuracy"]
    goal = (f"still {short:.2f} points short of the goal. More epochs pay, but a CPU three times as fast, "
            f"which would buy these {half['epochs']} epochs in ten minutes, would still miss it"
            if short > 0 else "over the goal: a CPU three times as fast would meet it in ten minutes")
    return f"""**What more time buys.** Planned for 30 minutes, the same step trains {half['epochs']} epochs and
reaches {half['accuracy']:.2f}%, {half['accuracy'] - best['mean']:+.2f} points over its ten minutes and {goal}.
Planned for 60 minutes it trains {hour['epochs']} epochs and ends at {hour['accuracy']:.2f}%, {moved}:
{second}. Section 9 shows what the hour buys once it is regularised."""


def discussion() -> str:
    """Section 8, its numbers from `measured()`; tests/test_small_data.py asserts its claims."""
    m = measured()
    st = m["steps"]
    vit, stem, stem_s, spt, cct, aug, dist, res = (st[k] for k in (
        "vit", "conv_stem", "conv_stem_s", "spt_lsa", "cct", "augment", "distill", "resnet"))
    best = st[m["best"]]
    vits = {k: v for k, v in st.items() if k != "resnet"}
    ranking = sorted(vits, key=lambda k: -vits[k]["mean"])
    seeds = sorted({v["seeds"] for v in st.values()})
    seed_line = (f"every step has {seeds[0]} seed{'s' if seeds[0] > 1 else ''}" if len(seeds) == 1 else
                 f"the steps have {seeds[0]} to {seeds[-1]} seeds so far, as the table in section 7 shows")
    one_seed = ", so with one seed a difference under a point is not yet a finding" if seeds[0] == 1 else ""
    return f"""## 8. What the data shows

Read from `small_data.csv` as this notebook was written ({seed_line}; a step's spread is the range
over its seeds{one_seed}).

**The ranking at ten minutes.** Of the ViTs, {", ".join(f"`{k}` {vits[k]['mean']:.2f}%" for k in ranking)}.
The plain ViT, `vit`, reaches {_acc(vit)} in its {vit['epochs']} epochs. The best step, `{m['best']}`,
reaches {_acc(best)}, {best['mean'] - vit['mean']:+.2f} points over it. The ResNet, trained by the same
loop for the same ten minutes, reaches {_acc(res)}: it is still ahead of every ViT, by
{res['mean'] - best['mean']:.2f} points over the best.

**At a fixed budget, speed is accuracy.** Xiao et al. compare a convolutional stem with a patch
embedding at matched FLOPs, and the stem wins. Here the budget is wall-clock time, and a stem is not
free. `conv_stem`, Xiao et al.'s stem in front of the plain ViT's six blocks, costs
{stem['mmacs']:.0f} MMACs per image against the plain ViT's {vit['mmacs']:.0f}: it has 49 tokens where
the ViT has 16, and it trains {stem['epochs']} epochs where the ViT trains {vit['epochs']}. It ends at
{_acc(stem)}, {stem['mean'] - vit['mean']:+.2f} points from the plain ViT. The cheaper stem,
`conv_stem_s` (three convolutions, four blocks, {stem_s['mmacs']:.0f} MMACs), buys {stem_s['epochs']}
epochs and ends at {_acc(stem_s)}. The inductive bias helps only when the budget can pay for it.

**Locality without a stem.** `spt_lsa` cuts 4x4 patches (49 tokens, where the plain ViT's 7x7
patches give 16), each carrying the image and its four half-patch shifts as channels, and its
attention masks the diagonal and learns its temperature. The longer sequence costs
{spt['mmacs']:.0f} MMACs per image; it trains {spt['epochs']} epochs and ends at {_acc(spt)},
{spt['mean'] - vit['mean']:+.2f} points from the plain ViT. Lee et al. measure their gains in full
training runs from scratch, tens of times longer; at {spt['epochs']} epochs the extra cost per image
is not repaid.

**Sequence pooling.** CCT (a convolutional tokenizer with pooling down to 49 tokens, six blocks,
sequence pooling) trains {cct['epochs']} epochs and reaches {_acc(cct)}: {cct['mean'] - vit['mean']:+.2f}
points from the plain ViT, in {cct['epochs']} epochs against {vit['epochs']}, and
{cct['mean'] - stem_s['mean']:+.2f} from `conv_stem_s`.

**The regularisers cost points at this budget.** TrivialAugment with random erasing on top of CCT
(`augment`) gives {_acc(aug)}, {aug['mean'] - cct['mean']:+.2f} points from plain CCT. Adding
hard distillation from the ResNet (`distill`, {dist['epochs']} epochs: the teacher's forward pass costs
time) gives {_acc(dist)}, {dist['mean'] - aug['mean']:+.2f} from `augment`. The reason is in the last
epoch's training accuracy, a running mean over its batches. CCT ends at {cct['train_acc']:.1f}% on
its training batches against {cct['mean']:.1f}% on the test set, and `augment` at
{aug['train_acc']:.1f}% against {aug['mean']:.1f}%. A {cct['epochs']}-epoch CCT is not over-fitting,
so a remedy for over-fitting has nothing to cure: it only makes the training task harder. The
plain ViT is the one that over-fits, at {vit['train_acc']:.1f}% against {vit['mean']:.1f}% after its
{vit['epochs']} epochs. DeiT and CCT train for 300 epochs, where the same recipes are what keeps a
ViT from memorising its data. The result here disagrees with the papers in its budget, not in its
mechanism.

**The student and its teacher.** DeiT's students beat their convnet teachers on ImageNet. Here the
student (`distill`, {dist['mean']:.2f}%) stays {m['teacher_acc'] - dist['mean']:.2f} points below its
teacher, the shipped ResNet ({m['teacher_acc']:.2f}%, trained {m['teacher_epochs']} epochs). DeiT's
students beat their teachers after 300 epochs and more; ten minutes buy this one {dist['epochs']}.

**The goal.** Issue 17 asks for {100 * GOAL_10_MIN:.0f}% within ten minutes on two CPU cores. The
best ViT step here reaches {best['mean']:.2f}%, which misses it by {100 * GOAL_10_MIN - best['mean']:.2f}
points. The curves above say what limits it. The best step still gains
{best['tail_gain']:.2f} points of test accuracy in its last two epochs, while its learning rate falls
to zero; the plain ViT gains {vit['tail_gain']:.2f} and the ResNet {res['tail_gain']:.2f}, because
both have flattened. The best step's training accuracy ({best['train_acc']:.1f}%) is
{best['train_acc'] - best['mean']:.1f} points above its test accuracy, the ResNet's
{res['train_acc'] - res['mean']:.1f} points. So ten minutes limit the best ViT by the epochs they buy,
not by the data.

{more_time_text(m)}
"""

GOAL_SHIPPED = 0.95  # issue 17: the shipped model >= 95.0% (ResNet-18 in the data set's benchmark: 94.9%)
SHIPPED = "vit_convstem_s_fmnist"  # the long part's shipped 60-minute run (small_data.SHIPPED_VARIANT)
PLAIN = "conv_stem_s"  # the best step's hour as it is (small_data.LONG_VARIANT)
REGULARISED = "conv_stem_s_reg"  # the same hour with augmentation and stochastic depth (small_data.REGULARISED)
CHAPTER_05 = "vit_fmnist"
# two hours closer than this (points) are within seed noise: three 10-minute seeds of conv_stem_s
# span 0.08 points, of the other steps up to 0.8
SEED_NOISE = 0.3


def long_runs(rows: list[dict]) -> dict[tuple[str, float], dict]:
    """The long part's runs of `rows` (read_rows()), (variant, budget in s) -> _hour(row): what
    sections 8 and 9 both quote."""
    return {(r["variant"], float(r["budget_s"])): _hour(r) for r in rows if r["experiment"] == "long"}


def _hour(row: dict) -> dict:
    """One long run's figures from its CSV row: test accuracy, epochs, minutes, the last epoch's
    training accuracy, the best epoch, the test accuracy moved over the last five epochs."""
    import json
    steps = json.loads(row["history"])
    peak = max(steps, key=lambda h: h["test_acc"])
    return {"accuracy": 100 * float(row["test_accuracy"]), "epochs": int(row["epochs"]),
            "minutes": float(row["fit_wall_s"]) / 60, "train_acc": 100 * steps[-1]["train_acc"],
            "best_epoch": peak["epoch"], "best_acc": 100 * peak["test_acc"],
            # test accuracy gained over the last five epochs, in points: is the curve still rising?
            "tail_gain": 100 * (steps[-1]["test_acc"] - steps[max(0, len(steps) - 6)]["test_acc"]),
            "overrides": json.loads(row["model_overrides"] or "{}"),
            "options": json.loads(row["train_overrides"] or "{}")}


def shipped() -> dict | None:
    """What section 9 quotes: the shipped model's card, the long part's 60-minute runs (the plain
    hour, the regularised one, the ResNet's; None for one not in the file yet), and both shipped
    ViTs' per-class accuracy on the full test set (None while the model is not shipped)."""
    import json

    from vitcourse.analysis.confusion import per_class_accuracy
    from vitcourse.data import load_fashion_mnist
    from vitcourse.experiments.small_data import LONG_REFERENCE, read_rows
    from vitcourse.training.checkpoint import PRETRAINED_DIR, load_pretrained
    from vitcourse.training.loop import predict

    card_path = PRETRAINED_DIR / f"{SHIPPED}.json"
    if not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    images, labels = load_fashion_mnist("test")
    per_class, accuracy = {}, {}
    for name in (CHAPTER_05, SHIPPED):
        pred = predict(load_pretrained(name), images).argmax(-1)
        per_class[name] = [100 * a for a in per_class_accuracy(pred, labels).tolist()]
        accuracy[name] = 100 * (pred == labels).float().mean().item()
    long = long_runs(read_rows())
    hours = {v: long.get((v, float(card["budget_s"]))) for v in (PLAIN, REGULARISED, LONG_REFERENCE)}
    return {"card": card, "variant": card["experiment_key"].split("/")[1], "accuracy": accuracy,
            "per_class": per_class, "minutes": card["wall_time_s"] / 60, "epochs": card["epochs"],
            "plain": hours[PLAIN], "regularised": hours[REGULARISED],
            "resnet_long": hours[LONG_REFERENCE]["accuracy"] if hours[LONG_REFERENCE] else None}


def _curve(hour: dict) -> str:
    if hour["tail_gain"] >= 0.3:
        return f"still gained {hour['tail_gain']:.2f} points over its last five epochs"
    return (f"moved {hour['tail_gain']:+.2f} points over its last five epochs (its best epoch, {hour['best_epoch']}, "
            f"had {hour['best_acc']:.2f}%): it had flattened")


def regularised_text(s: dict) -> str:
    """Section 9's paragraph on the regularised hour (`REGULARISED`) against the plain one, from `shipped()`."""
    reg, plain = s["regularised"], s["plain"]
    if reg is None or plain is None:
        return ("Whether the regularisers buy the missing points at 60 minutes is the long part's next run "
                f"(`{REGULARISED}`); it is not in the file yet.")
    delta = reg["accuracy"] - plain["accuracy"]
    gap, plain_gap = reg["train_acc"] - reg["accuracy"], plain["train_acc"] - plain["accuracy"]
    if delta > SEED_NOISE:
        verdict = ("After an hour the regularisers pay, where at ten minutes they cost points: the two results "
                   "disagree in budget, not in mechanism, as section 8 said. This rests on one seed per hour; "
                   "the ten-minute seeds of this step span less than a tenth of a point, but a second seed of "
                   "each hour is what would settle it.")
    elif delta < -SEED_NOISE:
        verdict = ("Even after an hour the regularisers cost points here: at this model's size, "
                   f"{reg['epochs']} epochs are still too few for the harder task they set, although the "
                   "plain hour over-fits.")
    else:
        verdict = (f"That is within seed noise (one seed each; under {SEED_NOISE} points): at 60 minutes the "
                   "regularisers trade the over-fitting for a harder task and neither wins.")
    return f"""**The same hour, regularised.** `{REGULARISED}` trains the same model for the same budget with
TrivialAugment and random erasing (p = {reg['options']['random_erasing']}, section 5's `augment`)
and stochastic depth {reg['overrides']['drop_path_rate']}: {reg['epochs']} epochs in {reg['minutes']:.0f} minutes.
It reaches **{reg['accuracy']:.2f}%**, {delta:+.2f} points from the plain hour. Its test curve {_curve(reg)}.
Its last epoch's training accuracy, on augmented batches, is {reg['train_acc']:.1f}%: the gap to the
test set {'shrinks' if gap < plain_gap else 'grows'} from {plain_gap:.1f} to {gap:.1f} points. {verdict}"""


def shipped_text() -> str:
    """Section 9, its numbers from `shipped()` and `measured()`; tests/test_small_data.py asserts its claims."""
    from vitcourse.data import CLASS_NAMES
    s = shipped()
    if s is None:
        return """## 9. The shipped model, and chapter 05's

The 60-minute run of the long part (`make best-checkpoint`) is not shipped yet; when it is, this
section compares it with chapter 05's `vit_fmnist`, class by class."""
    m = measured()
    best, res = m["steps"][m["best"]], m["steps"]["resnet"]
    card, plain = s["card"], s["plain"]
    acc, mine, base = s["accuracy"][SHIPPED], s["per_class"][SHIPPED], s["per_class"][CHAPTER_05]
    gains = sorted(range(len(CLASS_NAMES)), key=lambda i: -(mine[i] - base[i]))
    hardest = min(range(len(CLASS_NAMES)), key=lambda i: mine[i])
    goal = 100 * GOAL_SHIPPED
    verdict = (f"which meets the goal by {acc - goal:.2f} points" if acc >= goal else
               f"which misses it by {goal - acc:.2f} points")
    resnet = ("The ResNet trained by the same loop for the same 60 minutes, the issue's yardstick, is the "
              "long part's next run and is not in the file yet."
              if s["resnet_long"] is None else
              f"The ResNet trained by the same loop for the same 60 minutes reaches {s['resnet_long']:.2f}%, "
              f"{abs(s['resnet_long'] - acc):.2f} points {'above' if s['resnet_long'] > acc else 'below'} the shipped ViT.")
    which = {REGULARISED: "The regularised hour, the better of the two,", PLAIN: "The plain hour"}[s["variant"]]
    took = (f"{s['minutes']:.0f} minutes on two CPU cores rather than 60" if s["minutes"] > 61 else
            f"{s['minutes']:.0f} minutes on two CPU cores, as planned")
    over = "" if plain is None else f"""

**The plain hour over-fits.** Without the regularisers the same model trains {plain['epochs']} epochs and
ends at {plain['accuracy']:.2f}%. Its test curve {_curve(plain)}. Its last epoch's training accuracy is
{plain['train_acc']:.1f}% against {plain['accuracy']:.1f}% on the test set, a gap of
{plain['train_acc'] - plain['accuracy']:.1f} points; at ten minutes the same step's gap was
{best['train_acc'] - best['mean']:.1f}. At ten minutes the regularisers of section 5 were tried on
CCT, which had nothing to over-fit, and they cost points (section 8); after an hour this model
over-fits, which is where DeiT and CCT use them."""
    return f"""## 9. The shipped model, and chapter 05's

The best step, `{PLAIN}`, was trained twice more, each time with a budget of 60 minutes (the long
part): as it is (`{PLAIN}`), and with regularisers (`{REGULARISED}`). {which} ships as `{SHIPPED}`
in `data/checkpoints/` (`make best-checkpoint` repeats it), with its JSON card: command, commit,
hardware and every epoch. The speed probe planned {s['epochs']} epochs at
{card['probe_images_per_s']:.0f} training images/s; the run averaged {card['images_per_s']:.0f}, so it took
{took}. It reaches **{acc:.2f}%** on the 10,000 test images. Issue 17 asks for {goal:.1f}% (ResNet-18
in the data set's own benchmark: 94.9%), {verdict}. Chapter 05's `vit_fmnist` reaches
{s['accuracy'][CHAPTER_05]:.2f}%: the convolutional stem, the hour and the regularisers are worth
{acc - s['accuracy'][CHAPTER_05]:+.2f} points together. The course's ResNet reaches {res['mean']:.2f}% in ten
minutes (section 8): {abs(res['mean'] - acc):.2f} points {'above' if res['mean'] > acc else 'below'} the
hour-long ViT. {resnet}{over}

{regularised_text(s)}

Where the points come from, class by class (the cell below draws both confusion matrices): the
largest gains over `vit_fmnist` are in {", ".join(f"{CLASS_NAMES[i]} ({mine[i] - base[i]:+.1f} points)" for i in gains[:3])}.
The hardest class is still {CLASS_NAMES[hardest]} ({mine[hardest]:.1f}%, against {base[hardest]:.1f}% for
`vit_fmnist`)."""


CELLS = [
    md(r"""
## 0. The problem: a ViT needs more data than a CNN

Dosovitskiy et al. ("An Image is Worth 16x16 Words", ICLR 2021) pre-trained ViTs and ResNets on
growing subsets of JFT-300M (9M, 30M, 90M and all 300M images, their Figure 4) and found that ViT
overfits more than ResNets with comparable computational cost on smaller datasets: ViT-B/32,
slightly faster than a ResNet-50, does much worse on the 9M subset and better from 90M images on.
On ImageNet-1k alone (1.3M images) their large ViTs did worse than the base ones despite
regularisation. A ViT can win, but it needs the data to get there.

Chapter 07 measured the same curve at Fashion-MNIST scale: the course's ViT (`vit_fmnist`) and
ResNet (`resnet_fmnist`), each trained by the same loop on 1,000 to 60,000 images, with more than
one seed per size (`data/results/scaling.csv`; the legend says how many). Here is that curve again, read from the file; the printout
gives each size's numbers and the gap between the two models.
"""),
    code(r"""
import json
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from vitcourse import CLASS_NAMES, create_model, fast_or, fit, load_data, load_pretrained, seed_everything
from vitcourse.checks import ch13_small_data as check
from vitcourse.data import normalize
from vitcourse.experiments.scaling_plots import data_curve, load_results, plot_data_scaling
from vitcourse.experiments.sweep import DEFAULT_CSV, read_results
from vitcourse.flops import count_flops, count_parameters
from vitcourse.training import TrainConfig

seed_everything(0)
data = load_data()  # real Fashion-MNIST; in fast mode a stratified 2,000 / 1,000 subset
print(f"{len(data.train_labels):,} training and {len(data.test_labels):,} test images")

# chapter 07's sweep: read_results gives the CSV's strings, load_results the same rows with numbers parsed
print(f"{DEFAULT_CSV.name}: {len(read_results(DEFAULT_CSV))} rows")
scaling = load_results(DEFAULT_CSV)
fig, ax = plt.subplots(figsize=(7, 4.5))
plot_data_scaling(scaling, ax=ax)
ax.set_title("Chapter 07: test accuracy vs training-set size, ViT vs CNN")
plt.show()
vit_curve, cnn_curve = data_curve(scaling, "vit"), data_curve(scaling, "cnn")
for n, v, c in zip(vit_curve["sizes"], vit_curve["mean"], cnn_curve["mean"]):
    print(f"{n:>6,} images: ViT {100 * v:5.2f}%   CNN {100 * c:5.2f}%   CNN - ViT {100 * (c - v):+5.2f} points")
"""),
    md(r"""
## 1. Inductive bias: what a CNN knows before it sees any data

The ViT paper's own explanation (its §3.1, "Inductive bias"): a CNN builds locality, the
two-dimensional neighbourhood structure and translation equivariance into every layer; in a ViT
only the MLPs are local and translation-equivariant, self-attention is global, and the 2D
structure is used only twice, when the image is cut into patches and when position embeddings are
resized for another resolution. Everything else about space, which patch is next to which, has
to be learned from the data. With 300M images there is enough data to learn it; with 60,000 there
may not be.

Translation equivariance is easy to see. Move an image a few pixels to the right: a convolution's
output moves by the same amount and is otherwise unchanged, at *every* shift. ViT's patchify is a
convolution too, but with stride $P$: its token grid moves cleanly only when the shift is a
multiple of $P$; at any other shift every patch holds different pixels and every token changes.
Below, an untrained 3x3 convolution and an untrained 7x7 patchify (the layer, not what it learned,
is what is measured) on a real test image: the relative difference between "shift, then embed" and
"embed, then shift" (by the nearest whole number of tokens for patchify).
"""),
    code(r"""
from vitcourse.layers.patches import PatchEmbed


def shift_right(images: torch.Tensor, s: int) -> torch.Tensor:
    # uint8 (B, H, W): the picture moves s pixels right, black background comes in on the left
    return F.pad(images, (s, 0))[..., : images.shape[-1]]


torch.manual_seed(0)
conv = torch.nn.Conv2d(1, 16, 3, padding=1, bias=False)  # one 3x3 convolution, untrained
patchify = PatchEmbed(28, 7, 1, 16)  # ViT's patch embedding at patch 7, untrained
image = data.test_images[:1]  # (1, 28, 28) uint8
shifts = list(range(0, 15))
conv_err, patch_err = [], []
with torch.no_grad():
    base_conv = conv(normalize(image))  # (1, 16, 28, 28)
    base_tokens = patchify(normalize(image)).reshape(1, 4, 4, 16)  # (1, gh, gw, D)
    for s in shifts:
        moved = normalize(shift_right(image, s))
        a, b = conv(moved)[..., s + 1:-1], base_conv[..., 1:27 - s]  # same pixels, away from the borders
        conv_err.append(float((a - b).norm() / b.norm()))
        t = round(s / 7)  # the nearest whole number of tokens
        tok = patchify(moved).reshape(1, 4, 4, 16)[:, :, t:]
        ref = base_tokens[:, :, : 4 - t]
        patch_err.append(float((tok - ref).norm() / ref.norm()))
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.plot(shifts, conv_err, "o-", label="3x3 convolution (stride 1)")
ax.plot(shifts, patch_err, "s-", label="ViT patchify (7x7, stride 7)")
ax.set_xlabel("shift to the right (pixels)")
ax.set_ylabel("relative difference, shift-then-embed\nvs embed-then-shift")
ax.set_title("Translation equivariance on a real test image")
ax.set_xticks(shifts)
ax.set_ylim(-0.05, 1.35)
ax.grid(alpha=0.3)
ax.legend(loc="upper left")
plt.show()
"""),
    md(r"""
Every remedy in this chapter puts some of that prior back, or makes up for the missing data in
another way:

| remedy | paper | what it changes | the prior or the help it adds |
|---|---|---|---|
| hybrid | Dosovitskiy et al. 2021, §3.1 | tokens from a ResNet's feature map | a CNN's locality and equivariance before the first block |
| convolutional stem | Xiao et al. 2021 | a few 3x3 convolutions instead of patchify | overlapping, local tokens; easier optimisation |
| CCT | Hassani et al. 2021 | convolutional tokenizer, sequence pooling, a small model | locality in the tokens, no class token to learn |
| SPT + LSA | Lee, Lee & Song 2021 | each token sees its neighbours' pixels; sharper attention | locality in the tokens and in the attention |
| augmentation | Müller & Hutter 2021; Zhong et al. 2020; Zhang et al. 2018; Yun et al. 2019 | the training images | more (and harder) data from the same images |
| distillation | Touvron et al. 2021 (DeiT) | a second target: a CNN teacher's predictions | the teacher's inductive bias, passed on through its labels |

In the package they are switches on one model, `vitcourse.models.small_data_vit.SmallDataViT`
(with presets `vit_convstem_fmnist`, `vit_hybrid_fmnist`, `vit_spt_lsa_fmnist`,
`deit_convstem_fmnist`), plus `vitcourse.models.cct.CCT` (`cct_fmnist`). All of them turn the
28x28 image into a 7x7 grid of 49 tokens of width 128 and have 6 blocks, so they differ in the
remedy and not in the sequence length.

## 2. A convolutional stem and the hybrid

**Hybrid (ViT §3.1).** Instead of raw patches, the input sequence can be formed from the feature
map of a CNN; with "patches" of size 1x1 every position of the feature map is one token. In their
scaling study (§4.4, Figure 5) hybrids slightly outperform ViT at small computational budgets,
and the difference vanishes for larger models. Here the CNN is the course's own ResNet
(`vitcourse.models.cnn.ResNet`, its stem and two stages: 28 -> 14 -> 7), then a 1x1 convolution to
$D$.

**Convolutional stem (Xiao et al., "Early Convolutions Help Transformers See Better", NeurIPS
2021).** ViT's patchify is one convolution with a large kernel and an equally large stride, unlike
any convolution a CNN designer would choose. Xiao et al. replace it by a few stacked stride-2 3x3
convolutions (with BatchNorm and ReLU) and a 1x1 convolution, keeping the FLOPs and runtime about
the same. The rest of the ViT is unchanged, yet training becomes much less sensitive to the
optimiser (AdamW vs SGD), its hyper-parameters and the schedule length, and peak accuracy rises by
about 1-2 points of ImageNet-1k top-1, across models of 1 to 36 GFLOPs and on ImageNet-1k and
-21k. `vit_convstem_fmnist` uses two such convolutions (64 and 128 channels, each stride 2).

The four tokenizers side by side: `vit_fmnist` (chapter 05's ViT, patch 7, 16 tokens),
`vit_fmnist_p4` (patch 4: the same 49 tokens as the others), the conv stem and the hybrid:
"""),
    code(r"""
names = ["vit_fmnist", "vit_fmnist_p4", "vit_convstem_fmnist", "vit_hybrid_fmnist"]
models = {name: create_model(name).eval() for name in names}
print(f"{'model':22s} {'tokenizer':26s} {'grid':>5s} {'params':>9s} {'of which stem':>14s} {'MMACs':>7s}")
for name, model in models.items():
    stem = model.patch_embed
    gh, gw = model.grid_size
    print(f"{name:22s} {type(stem).__name__:26s} {gh}x{gw:<3d} {count_parameters(model):9,d} "
          f"{count_parameters(stem):14,d} {count_flops(model) / 2e6:7.1f}")
print()
print(models["vit_convstem_fmnist"].patch_embed.convs)
"""),
    md(r"""
What does one token see? Its **receptive field**: the pixels that can change it. The gradient of
the centre token with respect to the input answers that, once every path through the tokenizer
counts alike: below, each tokenizer's convolutions are replaced by averaging filters (BatchNorm
as the identity) and the gradient is taken at an all-white input, so no ReLU is switched off; the
result is drawn over a real test image with the token grid. A patch token sees exactly its own
square; the stride-2 3x3 convolutions of the conv stem see an overlapping window, the pixels near
its centre counting most (the "effective receptive field" of Luo et al., NeurIPS 2016); the
hybrid's ResNet stages see further still. This is what the architecture allows, before any
learning.
"""),
    code(r"""
import copy


def receptive_field(stem: torch.nn.Module, token: int) -> torch.Tensor:
    # (28, 28): d(sum of the token's D values) / d(pixel), with every path weighted alike
    stem = copy.deepcopy(stem).eval()
    with torch.no_grad():
        for m in stem.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())  # each output channel: the mean of its window
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.reset_parameters()  # scale 1, shift 0
                m.reset_running_stats()  # mean 0, variance 1: the identity in eval mode
    x = torch.ones(1, 1, 28, 28, requires_grad=True)  # all white: every ReLU passes its input
    stem(x)[0, token].sum().backward()
    return x.grad[0, 0]


fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models), 3.9), layout="constrained")
for ax, (name, model) in zip(axes, models.items()):
    gh, gw = model.grid_size
    token = (gh // 2) * gw + gw // 2  # the centre token, row-major
    reach = receptive_field(model.patch_embed, token).abs()
    ax.imshow(data.test_images[0], cmap="gray")
    shown = torch.where(reach > 0, reach / reach.max(), torch.tensor(float("nan")))  # NaN: not drawn
    ax.imshow(shown.numpy(), cmap="autumn_r", alpha=0.75, vmin=0, vmax=1)
    for k in range(1, gh):  # the token grid
        ax.axhline(k * 28 / gh - 0.5, color="cyan", lw=0.5)
        ax.axvline(k * 28 / gw - 0.5, color="cyan", lw=0.5)
    ax.set_title(f"{name}\n{gh}x{gw} tokens; the centre one sees {int((reach > 0).sum())} px", fontsize=9)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
fig.suptitle("Receptive field of the centre token (red: weighs most, yellow: least), token grid in cyan")
plt.show()
"""),
    md(r"""
## 3. CCT: a convolutional tokenizer and sequence pooling

Hassani et al. ("Escaping the Big Data Paradigm with Compact Transformers", 2021) take three
steps away from ViT, all aimed at small datasets. The **tokenizer** is a few layers of
convolution -> ReLU -> 3x3 max-pool (stride 2), so the tokens overlap and carry a CNN's locality;
the model is **small** (width 128 to 384, 2 to 14 blocks) with stochastic depth; and **sequence
pooling** replaces the class token. Their CCT-7/3x1 (3.76M parameters) reaches 94.72% on CIFAR-10
trained from scratch for 300 epochs, and the later versions of the paper report up to 98% for
their best CIFAR-10 model, in the range of ResNets many times its size.

`cct_fmnist` is CCT-6/3x2 at this course's size: two 3x3 conv-pool layers take the 28x28 image to
14x14 and then to 7x7, so again 49 tokens of width 128, and 6 blocks.
"""),
    code(r"""
cct = create_model("cct_fmnist")
print(cct.tokenizer.conv_layers)
with torch.no_grad():
    h = normalize(data.test_images[:1])  # (1, 1, 28, 28)
    print("image:", tuple(h.shape[1:]))
    for i, layer in enumerate(cct.tokenizer.conv_layers):
        h = layer(h)  # conv 3x3 (stride 1) -> ReLU -> max-pool 3x3 (stride 2): the side halves
        print(f"after conv-pool layer {i + 1}:", tuple(h.shape[1:]))
print("token grid:", cct.grid_size, "| tokens:", cct.config.num_tokens, "| width:", cct.config.dim)
print(f"parameters: {count_parameters(cct):,} (tokenizer {count_parameters(cct.tokenizer):,}, "
      f"sequence pooling {count_parameters(cct.pool):,}), {count_flops(cct) / 2e6:.1f} MMACs")
"""),
    md(r"""
**Sequence pooling.** A ViT classifies from a class token: one extra token that has to learn,
through attention, to collect everything the head needs. Mean pooling weighs every token $1/N$.
Sequence pooling (CCT, §3) is between the two: a learned linear map $g$ gives each output token
one score, a softmax over the tokens turns the scores into weights, and the pooled vector is the
weighted average:

$$
w = \mathrm{softmax}_n\big(g(x_L)\big) \in \mathbb{R}^{B \times N}, \qquad
z = \sum_{n=1}^{N} w_n\, x_{L,n} \in \mathbb{R}^{B \times D}, \qquad g = \mathrm{Linear}(D, 1).
$$

It costs $D + 1$ parameters, needs no extra token in the encoder, and the weights depend on the
image: the model can learn to look at the tokens that matter. In the paper's tables CVT (ViT-Lite
with sequence pooling in place of the class token) does better than ViT-Lite on CIFAR-10 and
CIFAR-100.

### Exercise 13.1: sequence pooling

Given the encoder's output tokens $x$ (B, N, D) and the weight (1, D) and bias (1,) of $g$, return
the pooled features (B, D). The softmax runs over the **tokens**: each image's $N$ weights
sum to 1. (Then a question to think about: does the bias change the result?)
"""),
    code(r"""
def my_seq_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    # x (B, N, D) tokens; weight (1, D) and bias (1,) of g = Linear(D, 1) -> (B, D)
    ### BEGIN SOLUTION
    scores = x @ weight.T + bias  # (B, N, 1): one score per token
    weights = torch.softmax(scores, dim=1)  # over the N tokens: each image's weights sum to 1
    return (weights * x).sum(dim=1)  # (B, D), the weighted average of the tokens
    ### END SOLUTION
"""),
    code(r"""
# check: 13.1
check.seq_pool(my_seq_pool)
"""),
    md(r"""
(The bias adds the same number to every token's score, and a softmax does not change when all its
inputs move together: $g$'s bias has no effect on sequence pooling. It is there because $g$ is an
ordinary `nn.Linear`.)

Where does a CCT pool from? `model.pool.weights(tokens)` gives the (B, N) weights. Untrained,
they are nearly uniform (every weight close to $1/49$). Below, the same CCT is trained here for a
short while (fast mode: one epoch on 1,000 images, a few seconds; otherwise three epochs on 10,000)
and the weights are shown again, averaged over test images and for three single images. The unit
is $N \cdot w$, so 1 is the uniform weight of mean pooling.
"""),
    code(r"""
from vitcourse.layers import sequence_pool


@torch.no_grad()
def pooling_weights(model, images: torch.Tensor) -> torch.Tensor:
    # uint8 (B, 28, 28) -> (B, gh, gw): the sequence-pooling weight of every token
    model.eval()
    tokens = model.forward_features(normalize(images))  # (B, N, D)
    scores = model.pool.attention_pool(tokens)  # (B, N, 1)
    assert torch.allclose(sequence_pool(tokens, scores), model.pool(tokens), atol=1e-6)
    return model.pool.weights(tokens).reshape(-1, *model.grid_size)


seed_everything(0)
probe = data.test_images[:256]
before = pooling_weights(cct, probe)
small = load_data(train_size=fast_or(1_000, 10_000), test_size=fast_or(500, 2_000))
trained = fit(cct, small, TrainConfig(epochs=fast_or(1, 3), compile=False), progress=False)
print(f"trained {trained.history[-1]['epoch']} epoch(s) on {len(small.train_labels):,} images in "
      f"{trained.wall_time_s:.0f} s: test accuracy {100 * trained.test_accuracy:.1f}% on {len(small.test_labels):,}")
after = pooling_weights(trained.model, probe)

n = before.shape[-1] * before.shape[-2]
fig, axes = plt.subplots(1, 5, figsize=(17, 3.9), layout="constrained")
vmax = float(max(before.mean(0).max(), after.mean(0).max(), after[:3].max()) * n)
for ax, w, title in ((axes[0], before.mean(0), "untrained\n(mean of 256 test images)"),
                     (axes[1], after.mean(0), "trained here\n(mean of 256 test images)")):
    im = ax.imshow(n * w, cmap="magma", vmin=0, vmax=vmax)
    ax.set_title(title, fontsize=9)
for ax, i in zip(axes[2:], range(3)):
    ax.imshow(probe[i], cmap="gray", extent=(-0.5, 6.5, 6.5, -0.5))
    ax.imshow(n * after[i], cmap="magma", alpha=0.55, vmin=0, vmax=vmax)
    ax.set_title(f"trained here, one image\n({CLASS_NAMES[int(data.test_labels[i])]})", fontsize=9)
for ax in axes:
    ax.set_xlabel("token column")
    ax.set_ylabel("token row")
fig.colorbar(im, ax=axes, shrink=0.8, label="N x weight (1 = uniform)")
fig.suptitle("CCT's sequence-pooling weights over the 7x7 token grid")
plt.show()
"""),
    md(r"""
## 4. Shifted patch tokenization and locality self-attention

Lee, Lee & Song ("Vision Transformer for Small-Size Datasets", 2021) trace the data hunger to two
places and fix each with an add-on that fits any ViT:

**Shifted patch tokenization (SPT).** A patch token is a linear map of its own $P \times P$ pixels,
so relations between neighbouring patches must be learned by attention. SPT widens what a token
sees for free: concatenate the image with four copies of itself moved diagonally by half a patch,
then patchify, LayerNorm each flattened patch and project to $D$:

$$
S(x) = [\,x,\ x_{\nwarrow},\ x_{\nearrow},\ x_{\swarrow},\ x_{\searrow}\,] \in \mathbb{R}^{B \times 5C \times H \times W},
\qquad \text{tokens} = \mathrm{Linear}(\mathrm{LN}(\mathrm{patchify}(S(x), P))).
$$

**Locality self-attention (LSA).** With little data, attention stays close to uniform: the softmax
of $q k^\top / \sqrt{d}$ is too smooth to single out the few tokens that matter, and each token's
score with itself takes a large share. LSA changes two things: a **learnable temperature** $\tau$
(one per head, started at $\sqrt{d}$, so LSA starts as standard attention) replaces the fixed
$\sqrt{d}$, and **diagonal masking** sets each token's logit with itself to $-\infty$, so every token
attends only to the others (its own value still reaches it through the residual):

$$
\mathrm{LSA}(x) = \mathrm{softmax}\big(q k^\top / \tau + M\big)\, v, \qquad M_{ij} = -\infty \text{ if } i = j, \text{ else } 0.
$$

With both applied, their ViTs trained from scratch gained 2.96 points of top-1 on Tiny-ImageNet
on average, and Swin 4.08. `vit_spt_lsa_fmnist` is the course's ViT at patch 4 (49 tokens) with
both. The five images SPT stacks for a real test image, with shift $s = P / 2 = 2$ and the
patch grid; the yellow square is one patch, and what it holds in each copy is what its token sees:
"""),
    code(r"""
from vitcourse.layers.spt import shifted_images

spt_model = create_model("vit_spt_lsa_fmnist").eval()
p = spt_model.config.patch_size
pixels = data.test_images[:1].float()[:, None]  # (1, 1, 28, 28), 0..255 (0 = the black background)
stacked = shifted_images(pixels, p // 2)  # (1, 5, 28, 28)
names = ["x", "left-up", "right-up", "left-down", "right-down"]
fig, axes = plt.subplots(1, 5, figsize=(15, 3.6), layout="constrained")
for ax, k, name in zip(axes, range(5), names):
    ax.imshow(stacked[0, k], cmap="gray", vmin=0, vmax=255)
    for j in range(1, 28 // p):
        ax.axhline(j * p - 0.5, color="cyan", lw=0.4)
        ax.axvline(j * p - 0.5, color="cyan", lw=0.4)
    ax.add_patch(plt.Rectangle((3 * p - 0.5, 3 * p - 0.5), p, p, fill=False, edgecolor="yellow", lw=2))
    ax.set_title(f"{name}" + ("" if k == 0 else f" (moved by {p // 2} px)"), fontsize=9)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
fig.suptitle(f"Shifted patch tokenization: the image and its four diagonal shifts, patch {p} (grid in cyan)")
plt.show()
stem = spt_model.patch_embed
print(f"a plain patch token is made from {p * p} values; an SPT token from 5 x {p}x{p} = {stem.norm.normalized_shape[0]}")
"""),
    md(r"""
### Exercise 13.2: the image shifts of SPT

Write `shifted_images` yourself: given images $x$ (B, C, H, W) and a shift $s$, return (B, 5C, H, W):
the image, then the four copies moved **left-up, right-up, left-down, right-down** (in that order)
by $s$ pixels along both axes, with zeros coming in at the edges. "Left-up" names where the picture
moves: $\text{out}[i, j] = x[i + s, j + s]$. One way: pad with $s$ zeros on every side, then
take four $H \times W$ windows of the padded image.
"""),
    code(r"""
def my_shift_images(x: torch.Tensor, s: int) -> torch.Tensor:
    # x (B, C, H, W), s > 0 -> (B, 5C, H, W): [x, left-up, right-up, left-down, right-down]
    ### BEGIN SOLUTION
    h, w = x.shape[-2:]
    padded = F.pad(x, (s, s, s, s))  # (B, C, H + 2s, W + 2s), zeros around
    left_up = padded[..., 2 * s:, 2 * s:]  # the window moves right-down: the picture moves left-up
    right_up = padded[..., 2 * s:, :w]
    left_down = padded[..., :h, 2 * s:]
    right_down = padded[..., :h, :w]
    return torch.cat([x, left_up, right_up, left_down, right_down], dim=1)  # (B, 5C, H, W)
    ### END SOLUTION
"""),
    code(r"""
# check: 13.2
check.shift_images(my_shift_images)
"""),
    md(r"""
Now LSA, on the tokens of the same test image through the (untrained) first block of
`vit_spt_lsa_fmnist`. Left: the diagonal mask for 7x7 = 49 tokens. Then one head's attention of the
centre token over the 7x7 grid, three ways: standard attention ($\tau = \sqrt{d}$, itself
included), LSA as it starts ($\tau = \sqrt{d}$, itself masked: its square is exactly 0), and LSA
with a lower temperature, as training can learn. Right: how the temperature sets the sharpness,
as the mean entropy of all 49 rows (uniform attention over 48 other tokens is $\ln 48 \approx 3.87$
nats). Untrained weights give small logits and near-uniform rows; the temperature is the knob
LSA adds for sharpening them.
"""),
    code(r"""
from vitcourse.layers.lsa import diagonal_mask, locality_attention_weights

block = spt_model.blocks[0]
with torch.no_grad():
    tokens = spt_model.patch_embed(normalize(data.test_images[:1])) + spt_model.pos_embed  # (1, 49, D)
    qkv = block.attn.qkv(block.norm1(tokens))  # (1, 49, 3D)
    q, k, _ = qkv.reshape(1, 49, 3, block.attn.heads, -1).permute(2, 0, 3, 1, 4)  # each (1, h, N, d)
    q, k = q[0, 0], k[0, 0]  # head 0: (N, d)
d = q.shape[-1]
tau0 = float(block.attn.temperature[0].detach())  # head 0's learnable temperature
centre = 24  # token (3, 3) of the 7x7 grid
standard = torch.softmax(q @ k.T / math.sqrt(d), dim=-1)
variants = {f"standard, tau = sqrt(d) = {math.sqrt(d):.1f}": standard,
            f"LSA at init, tau = {tau0:.1f}": locality_attention_weights(q, k, tau0),
            f"LSA, tau = {tau0 / 8:.1f} (sharper)": locality_attention_weights(q, k, tau0 / 8)}
fig, axes = plt.subplots(1, 5, figsize=(19, 3.9), layout="constrained")
axes[0].imshow(diagonal_mask(49).float(), cmap="gray")
axes[0].set_title("diagonal mask (white: may attend)", fontsize=9)
axes[0].set_xlabel("key token")
axes[0].set_ylabel("query token")
for ax, (title, weights) in zip(axes[1:4], variants.items()):
    im = ax.imshow(weights[centre].reshape(7, 7), cmap="viridis", vmin=0)
    ax.plot(3, 3, "r+", markersize=12)
    ax.set_title(f"{title}\nweight on itself: {float(weights[centre, centre]):.3f}", fontsize=9)
    ax.set_xlabel("token column")
    ax.set_ylabel("token row")
    fig.colorbar(im, ax=ax, shrink=0.8)
taus = [tau0 / 2 ** i for i in range(0, 9)]
entropy = [float(-(w * w.clamp_min(1e-12).log()).sum(-1).mean())
           for w in (locality_attention_weights(q, k, t) for t in taus)]
axes[4].plot(taus, entropy, "o-")
axes[4].axhline(math.log(48), color="gray", ls="--", label="uniform over 48 tokens")
axes[4].set_xscale("log")
axes[4].set_xlabel("temperature tau (log)")
axes[4].set_ylabel("mean row entropy (nats)")
axes[4].set_title("LSA: lower temperature, sharper attention", fontsize=9)
axes[4].legend(fontsize=8)
fig.suptitle("Locality self-attention on a real image's tokens (untrained first block, head 0; red +: the query)")
plt.show()
print(f"LSA adds {count_parameters(spt_model) - count_parameters(create_model('vit_spt_lsa_fmnist', lsa=False))} "
      f"parameters to the whole model: one temperature per head and block")
"""),
    md(r"""
## 5. Augmentation: more data from the same images

When data is short, make more of it. Four augmentations that the small-data ViT recipes use:

* **TrivialAugment** (Müller & Hutter, ICCV 2021): for every image, pick *one* operation
  (rotation, shear, translation, contrast, solarise, ...) uniformly at random and a strength
  uniformly at random. No search over policies and no hyper-parameters, yet it matched or beat
  AutoAugment and RandAugment in most of their experiments.
* **Random erasing** (Zhong et al., AAAI 2020): blank out a random rectangle, so the model cannot
  rely on any single part of the object.
* **Mixup** (Zhang et al., ICLR 2018): train on convex combinations of two images and of their
  labels, $\lambda x_i + (1 - \lambda) x_j$ with $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$.
* **CutMix** (Yun et al., ICCV 2019): paste a rectangle of one image into another; the label is
  mixed by the rectangle's share of the area.

DeiT (section 6) trains its ViTs on ImageNet-1k alone with RandAugment, mixup (0.8), CutMix (1.0),
random erasing (0.25), stochastic depth and repeated augmentation for 300 epochs; its ablation
(Table 8) finds almost every augmentation it tried useful, dropout being the exception.

Below, on real training images, with the functions the training loop itself calls
(`vitcourse.augment`): batched on the device, every random draw from the loader's own generator,
so a run resumed from a checkpoint repeats its augmentations exactly. Their TrivialAugment keeps
the ops that mean something for a 28x28 grey image, with strengths scaled to it (torchvision's
`TrivialAugmentWide` translates by up to 32 pixels, more than the whole image here).
"""),
    code(r"""
from vitcourse import augment
from vitcourse.data import MEAN, STD

generator = torch.Generator().manual_seed(13)  # the loader's own generator does this in training
picks = [int((data.train_labels == c).nonzero()[0]) for c in (0, 1, 5, 7, 8, 9)]  # one image of six classes
labels = data.train_labels[picks]
x = normalize(data.train_images[picks])  # (6, 1, 28, 28), standardised as the loader gives them
trivial = augment.trivial_augment(x, generator, mean=MEAN, std=STD)
erased = augment.random_erasing(x, 1.0, generator)  # p = 1: every image, to show it
mixed, mix_labels = augment.mix_batch(x, labels, 10, generator, mixup_alpha=0.8)
cut, cut_labels = augment.mix_batch(x, labels, 10, generator, cutmix_alpha=1.0)
as_float, trivial, erased, mixed, cut = (t * STD + MEAN for t in (x, trivial, erased, mixed, cut))  # back to [0, 1]


def two_labels(soft: torch.Tensor) -> str:
    top = soft.topk(2)
    return " + ".join(f"{float(w):.2f} {CLASS_NAMES[int(i)].split('/')[0]}" for w, i in zip(*top) if w > 0.005)


panels = [("original", as_float, [CLASS_NAMES[int(y)].split("/")[0] for y in labels]),
        ("TrivialAugment", trivial, [""] * 6), ("random erasing", erased, [""] * 6),
        ("mixup (alpha 0.8)", mixed, [two_labels(s) for s in mix_labels]),
        ("CutMix (alpha 1.0)", cut, [two_labels(s) for s in cut_labels])]
fig, axes = plt.subplots(len(panels), 6, figsize=(13, 11.5), layout="constrained")
for row_axes, (name, images, titles) in zip(axes, panels):
    for ax, img, title in zip(row_axes, images, titles):
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=8)
    row_axes[0].set_ylabel(name, fontsize=10)
fig.suptitle("Augmentations on real training images (each row: one augmentation; titles: the training label)")
plt.show()
"""),
    md(r"""
In training they are options of `TrainConfig`, all off by default: `trivial_augment`,
`random_erasing` (a probability), `mixup_alpha` and `cutmix_alpha` (with both on, each batch takes
one of the two, as DeiT does), and `ema_decay` (evaluate a moving average of the weights). With
mixup or CutMix on, the loader hands `fit` labels as probabilities, (B, 10) instead of (B,), and
the cross-entropy takes them as they are. Stochastic depth is a model option (`drop_path_rate`).
A ten-minute run on a laptop CPU is a handful of epochs, far from over-fitting, so the recipe's
augmentation step is mild: TrivialAugment and random erasing at DeiT's rate, 0.25. The cell
prints the recipe's steps with what each asks of the loop.
"""),
    code(r"""
from vitcourse.experiments.small_data import RECIPE

known = TrainConfig.__dataclass_fields__
for variant, (model_name, _, train_overrides, *teacher) in RECIPE.items():
    missing = [k for k in train_overrides if k not in known]
    asks = json.dumps(train_overrides) if train_overrides else "the loop's defaults"
    status = "" if not missing else "; not TrainConfig fields: " + ", ".join(missing)
    print(f"recipe step {variant:15s} {model_name:22s} trains with {asks}"
          + (f", teacher {teacher[0]}" if teacher and teacher[0] else "") + status)
options = [f for f in known if any(w in f for w in ("augment", "erasing", "mixup", "cutmix", "ema"))]
print("the recipe's options of TrainConfig:", ", ".join(options), "| fit(..., teacher=...) for distillation")
"""),
    md(r"""
## 6. Distillation through attention: DeiT

Touvron et al. ("Training data-efficient image transformers & distillation through attention",
ICML 2021) trained ViTs on ImageNet-1k alone, on a single 8-GPU machine in under three days: DeiT-B
reaches 81.8% top-1 with their recipe, against the ViT paper's 77.9% for ViT-B/16 trained on
ImageNet-1k. Then they add a teacher. Next to the class token, the **distillation token** enters
the encoder, attends and is attended to like any other token, and has its own linear head. The
class head learns the labels, the distillation head learns the teacher's predictions. With
**hard-label distillation** the teacher's target is its arg-max:

$$
\mathcal{L} = \tfrac12\, \mathrm{CE}\big(\psi(Z_{\text{cls}}), y\big) + \tfrac12\, \mathrm{CE}\big(\psi(Z_{\text{dist}}), y_t\big),
\qquad y_t = \arg\max_c Z_t(c).
$$

At test time the two heads are fused (DeiT adds their softmax outputs; `SmallDataViT` averages
their logits). What the paper shows: hard-label distillation beat the usual soft (KL-divergence)
distillation in their experiments; a **convnet teacher** (RegNetY-16GF, 82.9%) gave a better
student than a transformer teacher, which they read as the student inheriting the CNN's inductive
bias through its labels; and the student surpassed its teacher (DeiT-B with the distillation token:
83.4% at 300 epochs, up to 85.2% with longer training at 384x384). The learned class and
distillation tokens differ at the input (average cosine similarity 0.06) and grow alike through the
network (0.93 at the last layer), not identical, as their targets are similar but not the same.

Here the teacher is the course's ResNet (`resnet_fmnist`, chapter 12) and the student
`deit_convstem_fmnist`: the conv-stem ViT with a class and a distillation token. In train mode it
returns both heads' logits, in eval mode their mean:
"""),
    code(r"""
deit = create_model("deit_convstem_fmnist")
teacher = load_pretrained("resnet_fmnist").eval()
x = normalize(data.train_images[:512])  # (512, 1, 28, 28)
y = data.train_labels[:512]
print(f"deit_convstem_fmnist: {count_parameters(deit):,} parameters; prefix tokens: class, distillation "
      f"({deit.num_prefix_tokens}), then {deit.config.num_patches} patch tokens")
print("heads:", deit.head, "(class)", deit.head_dist, "(distillation)")
with torch.no_grad():
    deit.train()
    cls_logits, dist_logits = deit(x[:8])  # train mode: a tuple, one (B, classes) per head
    deit.eval()
    fused = deit(x[:8])  # eval mode: one tensor, the mean of the two heads
    features = deit.forward_features(x[:8])  # (8, 2 + 49, D): class token, distillation token, patches
    same = torch.allclose(fused, (deit.head(features[:, 0]) + deit.head_dist(features[:, 1])) / 2, atol=1e-5)
print(f"train mode: {tuple(cls_logits.shape)} and {tuple(dist_logits.shape)}; eval mode: {tuple(fused.shape)}, "
      f"the mean of the two heads: {same}")


def hard_distillation_loss(cls_logits: torch.Tensor, dist_logits: torch.Tensor, labels: torch.Tensor,
                           teacher_logits: torch.Tensor) -> torch.Tensor:
    # DeiT's hard-label objective: half cross-entropy with the labels, half with the teacher's arg-max
    return 0.5 * F.cross_entropy(cls_logits, labels) + 0.5 * F.cross_entropy(dist_logits, teacher_logits.argmax(-1))


with torch.no_grad():
    teacher_logits = teacher(x)  # (512, 10)
print(f"hard-distillation loss of the untrained student on 8 images: "
      f"{float(hard_distillation_loss(cls_logits, dist_logits, y[:8], teacher_logits[:8])):.3f} "
      f"(ln 10 = {math.log(10):.3f} for a uniform guess)")
"""),
    md(r"""
The distillation head learns something other than the labels only where the teacher disagrees
with them. On the training images, that is where the teacher is wrong, or where the label is
arguably wrong: Fashion-MNIST's shirts, T-shirts, pullovers and coats are easy to confuse. The
teacher's predictions on 512 training images, and some of the images it labels differently:
"""),
    code(r"""
teacher_labels = teacher_logits.argmax(-1)
disagree = (teacher_labels != y).nonzero().flatten()
print(f"the teacher agrees with the label on {int((teacher_labels == y).sum())} of {len(y)} training images")
shown = disagree[:6].tolist()
if shown:
    fig, axes = plt.subplots(1, len(shown), figsize=(2.3 * len(shown), 3.1), squeeze=False, layout="constrained")
    for ax, i in zip(axes[0], shown):
        ax.imshow(data.train_images[i], cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"label: {CLASS_NAMES[int(y[i])]}\nteacher: {CLASS_NAMES[int(teacher_labels[i])]}", fontsize=8)
    fig.suptitle("Training images where the ResNet teacher's hard label differs from the dataset's")
    plt.show()
"""),
    md(r"""
## 7. The ablation: each step of the recipe, the same budget

`make smalldata` (`python -m vitcourse smalldata`, `vitcourse.experiments.small_data`) trains every
step of the recipe with chapter 05's loop for the **same wall-clock budget**, 10 minutes, on all
60,000 training images, tested on all 10,000, three seeds each: the number of epochs of a run is
the budget times its model's measured training speed (speed probes taken back to back before
any training, so under the same machine load, into `small_data_probes.csv`). The steps are those
of `small_data.RECIPE`: the plain ViT (`vit`), + a convolutional stem (`conv_stem`, Xiao et al.'s
stem in front of the plain ViT's blocks), the same idea made cheaper (`conv_stem_s`: three convolutions, four
blocks, no stochastic depth, so that ten minutes buy more epochs), SPT + LSA (`spt_lsa`), CCT
(`cct`), the CCT with augmentation (`augment`, section 5), then DeiT's hard distillation from the
ResNet on top (`distill`: CCT has no class token to put a distillation token beside, so both
halves of DeiT's loss go to its one sequence-pooled head, DeiT's own "usual distillation" with
hard labels), and the ResNet itself with the same loop and budget (`resnet`). A `long` part then
trains the best ten-minute step (`small_data.BEST_VARIANT`) for 30 and 60 minutes, the same
step for 60 minutes with regularisers (`small_data.REGULARISED`), and the ResNet for 60 beside
them; the better 60-minute ViT is shipped with its card (section 9), and every long run
checkpoints after every epoch, so a stopped run resumes where it was.

The seeds were not all trained on one day or one machine. A budget is a number of epochs, and
the epochs are fixed by the first round of probes an ablation records: a step added later (or a
later seed on a faster or slower machine) is probed again and its speed is scaled to that first
round, by the same model's recorded probe or, for a new model, by the median ratio of the round's
models measured again. So every row of a step trains the same number of epochs, whichever
machine trained it; what moves with the machine is the wall time in the last column.
Each run is one row of `data/results/small_data.csv`, with its seed, hardware, commit,
configuration and per-epoch history.

The table and the curves below show the rows the file holds when this notebook runs; the first
line says which planned runs are not in it yet.
"""),
    code(r"""
from vitcourse.experiments.budget import train_budgeted
from vitcourse.experiments.compare import training_throughput
from vitcourse.experiments.small_data import LONG_CSV, RESULTS_CSV, planned_runs, read_rows, recipe_summary

rows = read_rows()  # every finished run, with its history, of small_data.csv and small_data_long.csv
planned = planned_runs()
print("recipe steps planned:", ", ".join(RECIPE), "| long runs:",
      ", ".join(f"{run.variant} {run.budget_s / 60:.0f} min" for run in planned if run.experiment == "long"))
have = {r["key"] for r in rows}
missing = [run for run in planned if run.key not in have]
print(f"{RESULTS_CSV.name} + {LONG_CSV.name}: {len(rows)} rows; {len(planned) - len(missing)} of the "
      f"{len(planned)} planned runs are in them")
if missing:
    todo: dict[str, list[str]] = {}
    for run in missing:
        label = run.variant if run.experiment == "recipe" else f"{run.experiment} {run.variant}"
        todo.setdefault(label, []).append(f"seed {run.seed}" if run.experiment == "recipe" else f"{run.budget_s / 60:.0f} min")
    print("not yet in the file: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in todo.items()))
if rows:
    first = rows[0]
    print(f"budget {float(first['budget_s']):.0f} s per run, {first['train_size']} training / {first['test_size']} test "
          f"images; {first['hardware']}; torch {first['torch']}; commit {first['commit']}")
"""),
    code(r"""
summary = recipe_summary(rows)
print(f"{'variant':15s} {'model':22s} {'params':>8s} {'MMACs':>6s} {'epochs':>7s} {'seeds':>5s} "
      f"{'test accuracy (%), mean ± half-range':>37s} {'seeds min-max':>14s} {'fit wall time':>14s}")
variants = list(dict.fromkeys([*RECIPE, *(r["variant"] for r in rows)]))  # the recipe's order, then any other
for variant in [v for v in variants if v in summary]:
    s = summary[variant]
    runs = [r for r in rows if r["experiment"] == "recipe" and r["variant"] == variant]
    walls = [float(r["fit_wall_s"]) for r in runs]
    epochs = f"{min(s.epochs)}-{max(s.epochs)}" if s.epochs else "-"
    if len(s.accuracies) == 1:
        accuracy, spread = f"{100 * s.mean:.2f} (one seed)", "-"
    elif s.accuracies:
        accuracy = f"{100 * s.mean:.2f} ± {100 * s.spread / 2:.2f}"
        spread = f"{100 * min(s.accuracies):.2f}-{100 * max(s.accuracies):.2f}"
    else:
        accuracy, spread = "diverged", "-"
    diverged = sum(1 for r in runs if r["diverged_step"])
    wall = f"{min(walls):.0f} s" if len(walls) == 1 else f"{min(walls):.0f}-{max(walls):.0f} s"
    print(f"{variant:15s} {runs[0]['model']:22s} {s.params:8,d} {s.macs / 1e6:6.1f} {epochs:>7s} {len(runs):>5d} "
          f"{accuracy:>37s} {spread:>14s} {wall:>14s}"
          + (f"  ({diverged} diverged)" if diverged else ""))
for r in sorted((r for r in rows if r["experiment"] == "long"), key=lambda r: (r["variant"], float(r["budget_s"]))):
    print(f"long: {r['variant']} for {float(r['budget_s']) / 60:.0f} min, seed {r['seed']}: {r['epochs']} epochs, "
          f"test accuracy {100 * float(r['test_accuracy']):.2f}%")
"""),
    code(r"""
colors = {variant: f"C{i}" for i, variant in enumerate(variants)}
styles = {0: "-", 1: "--", 2: ":"}
if rows:
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6), sharey=True)
    for r in rows:
        history = json.loads(r["history"])
        epochs = [h["epoch"] for h in history]
        accuracy = [100 * h["test_acc"] for h in history]
        seconds = [sum(h["seconds"] for h in history[: i + 1]) / 60 for i in range(len(history))]
        kw = dict(color=colors.get(r["variant"], "k"), ls=styles.get(int(r["seed"]), "-."),
                  marker="o" if r["experiment"] == "long" else None, markersize=3)
        axes[0].plot(epochs, accuracy, **kw)
        axes[1].plot(seconds, accuracy, **kw)
    present = list(dict.fromkeys(r["variant"] for r in rows))
    handles = [plt.Line2D([], [], color=colors.get(v, "k"), label=v) for v in present]
    handles += [plt.Line2D([], [], color="black", ls=ls, label=f"seed {seed}")
                for seed, ls in styles.items() if any(int(r["seed"]) == seed for r in rows)]
    axes[0].set_xlabel("epoch")
    axes[0].set_title("Test accuracy after every epoch, every run")
    axes[1].set_xlabel("wall-clock minutes (each epoch's training and test pass)")
    axes[1].set_title("The same runs against wall-clock time")
    for ax in axes:
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[1].legend(handles=handles, fontsize=8, loc="lower right")
    firsts = [100 * h[0]["test_acc"] for h in (json.loads(r["history"]) for r in rows) if h]
    if firsts:  # start the axis just below the first epochs, so the later ones can be told apart
        axes[0].set_ylim(max(min(firsts) - 2, 0), None)
    plt.tight_layout()
    plt.show()
else:
    print(f"no runs in {RESULTS_CSV} yet: run `make smalldata`")
"""),
    md(r"""
### A small live re-run

The function that wrote those rows (`train_budgeted`, shared with chapter 11), here and now, for two
steps of the recipe, the plain ViT and the CCT, one seed. In fast mode each trains for a few seconds
on 1,000 images (it shows the pipeline, not the ranking); in a full run, 60 s each on 10,000 images.
The runner probes each model's speed with `probe_speed` (25 training steps); here a shorter probe
with the same function underneath (`training_throughput`) keeps fast mode fast.
"""),
    code(r"""
live_data = load_data(train_size=fast_or(1_000, 10_000), test_size=fast_or(500, 10_000))
for run in planned_runs(parts=("recipe",), seeds=(0,), variants=("vit", "cct"), budget_s=fast_or(3.0, 60.0)):
    speed = training_throughput(run.model, live_data.train_images, live_data.train_labels,
                                steps=fast_or(2, 8), repeats=fast_or(1, 3))
    row = train_budgeted(run, live_data, speed)
    committed = summary.get(run.variant)
    reference = (f"committed mean {100 * committed.mean:.1f}% over {len(committed.accuracies)} seed(s), full data, "
                 f"{float(rows[0]['budget_s']):.0f} s" if committed and committed.accuracies else "no committed row yet")
    print(f"{run.variant:4s} ({run.model}): {speed:6.0f} training images/s -> {row['epochs']} epoch(s) in "
          f"{row['fit_wall_s']} s, test accuracy {100 * row['test_accuracy']:.1f}% on {row['test_size']:,} images "
          f"| {reference}")
"""),
    md(discussion()),
    md(shipped_text()),
    code(r"""
from vitcourse.analysis.confusion import confusion_matrix, per_class_accuracy, plot_confusion_matrix
from vitcourse.data import load_fashion_mnist
from vitcourse.training.checkpoint import PRETRAINED_DIR
from vitcourse.training.loop import predict

test_images, test_labels = load_fashion_mnist("test")  # the full 10,000 test images, also in fast mode
predictions = {}
for name in ("vit_fmnist", "vit_convstem_s_fmnist"):  # chapter 05's model, and this chapter's
    try:
        predictions[name] = predict(load_pretrained(name), test_images).argmax(-1)
    except FileNotFoundError as missing:
        print(missing)
if "vit_convstem_s_fmnist" in predictions:
    card = json.loads((PRETRAINED_DIR / "vit_convstem_s_fmnist.json").read_text())
    print(f"vit_convstem_s_fmnist: {card['epochs']} epochs, {card['wall_time_s'] / 60:.0f} min on "
          f"{card['hardware']['cpu']} ({card['hardware']['cpu_count']} cores); card: {100 * card['test_accuracy']:.2f}%\n"
          f"command: {card['command']}")
if predictions:
    fig, axes = plt.subplots(1, len(predictions), figsize=(7 * len(predictions), 6), squeeze=False)
    for ax, (name, pred) in zip(axes[0], predictions.items()):
        accuracy = (pred == test_labels).float().mean().item()
        plot_confusion_matrix(confusion_matrix(pred, test_labels), ax=ax,
                              title=f"{name}: {accuracy:.2%} of {len(test_labels):,} (row %)")
    plt.tight_layout()
    plt.show()
    per_class = {name: per_class_accuracy(pred, test_labels) for name, pred in predictions.items()}
    print(f"{'class':12s} " + " ".join(f"{name:>22s}" for name in per_class) + "   change")
    for i, cls in enumerate(CLASS_NAMES):
        values = [100 * float(a[i]) for a in per_class.values()]
        print(f"{cls:12s} " + " ".join(f"{v:21.1f}%" for v in values)
              + (f"   {values[-1] - values[0]:+5.1f}" if len(values) == 2 else ""))
"""),
    md(r"""
## Exercises for after the chapter

1. Sequence pooling in a ViT: build `create_model("vit_convstem_fmnist", pool="seq")` and train it
   with the recipe's budget against `vit_convstem_fmnist` (mean pooling):
   `python -m vitcourse smalldata --parts recipe --variants conv_stem --seeds 0 --budget-s 120 --out /tmp/ch13`
   gives the baseline; for the other, write a `BudgetedRun` with `model_overrides=(("pool", "seq"),)`
   and pass it to `vitcourse.experiments.budget.run_budgeted`. Where do its pooling weights go?
2. Take SPT and LSA apart: `vit_spt_lsa_fmnist` with `lsa=False`, and with `spt=False`, each as a
   `BudgetedRun` like exercise 1. Which half carries the effect at this scale, if either?
3. The hybrid is not in the ablation. Add it (`vit_hybrid_fmnist`) and compare its accuracy, its
   MMACs and its measured speed with the conv stem's. ViT §4.4 expects a hybrid to help most at
   small budgets: is a ten-minute run a small budget?
4. After training, LSA's temperatures are parameters like any other:
   `[block.attn.temperature for block in model.blocks]`. Train `vit_spt_lsa_fmnist` for a few
   epochs (`fit`) and plot the temperature of each head by depth. Did training sharpen the
   attention (lower $\tau$) or smooth it, and in which blocks?
"""),
]

if __name__ == "__main__":
    out = write_chapter("notebooks/13_small_data.ipynb", "13 · A Vision Transformer that wins on small data",
                        TEACHES, CELLS)
    print("wrote", out)
