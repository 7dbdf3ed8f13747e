"""Generates notebooks/11_token_mixers.ipynb (run from the repo root: python tools/chapters/ch11.py).

The .ipynb is what students open and what is committed; this script is how it was written, kept so
that a change to the chapter is a reviewable diff of Python strings. The discussion cells quote the
committed results (data/results/token_mixers*.csv); tests/test_token_mixers.py checks that the
numbers it quotes are the files' numbers.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.nbbuild import code, md, write_chapter  # noqa: E402

TEACHES = """
What you will learn: the MetaFormer view of a Transformer block (a token mixer plus an MLP, each
behind a norm and a residual); four token mixers written out (attention, PoolFormer's pooling,
MLP-Mixer's token MLP, and none at all) and what each lets a token see; LayerNorm against
BatchNorm over tokens, and BatchNorm inside the MLP; the real PoolFormer and MLP-Mixer presets
checked against timm; and measured answers, at Fashion-MNIST scale, to two questions the ViT
lecture leaves open: *is attention the essential part?* and *why LayerNorm and not BatchNorm?*
"""



def discussion() -> str:
    """Section 9, its numbers read from the committed CSVs when the chapter is generated (the
    claims the prose makes about them are asserted in tests/test_token_mixers.py)."""
    from vitcourse.experiments.sweep import read_results
    from vitcourse.experiments.budget import summarise
    from vitcourse.experiments.token_mixers import COST_CSV, RUNS_CSV, growth_exponent

    runs = read_results(RUNS_CSV)
    mix, nrm = summarise(runs, "mixers"), summarise(runs, "norms")
    pct = {k: 100 * v.mean for k, v in mix.items()}
    rng = {k: f"{100 * min(v.accuracies):.1f}-{100 * max(v.accuracies):.1f}" for k, v in mix.items()}
    n_pct = {k: 100 * v.mean for k, v in nrm.items()}
    n_seeds = len(next(iter(nrm.values())).accuracies)
    walls = {k: [float(r["fit_wall_s"]) for r in runs if r["experiment"] == "mixers" and r["variant"] == k]
             for k in mix}
    probe = {r["variant"]: float(r["probe_images_per_s"]) for r in runs if r["experiment"] == "mixers"}
    grad = {k: max(float(r["max_grad_norm"]) for r in runs if r["experiment"] == "norms" and r["variant"] == k)
            for k in nrm}
    n_rng = {k: f"{100 * min(v.accuracies):.1f}-{100 * max(v.accuracies):.1f}" for k, v in nrm.items()}
    budget = float(runs[0]["budget_s"])
    # what one epoch costs in images trained, as plan_epochs counts it (a test pass is ~1/3 of a step)
    epoch_images = int(runs[0]["train_size"]) + int(runs[0]["test_size"]) / 3
    total_min = sum(float(r["point_wall_s"]) for r in runs) / 60
    cost = read_results(COST_CSV)

    def slope(mixer: str, column: str) -> float:
        pts = sorted((r for r in cost if r["mixer"] == mixer), key=lambda r: int(r["tokens"]))[-2:]
        return growth_exponent([int(r["tokens"]) for r in pts], [float(r[column]) for r in pts])

    speed = {r["mixer"]: float(r["infer_images_per_s"]) for r in cost if r["patch_size"] == "7"}
    train_speed = {r["mixer"]: float(r["train_images_per_s"]) for r in cost if r["patch_size"] == "7"}
    speed784 = {r["mixer"]: float(r["infer_images_per_s"]) for r in cost if r["patch_size"] == "1"}
    table = "\n".join(f"| {k} | {pct[k]:.1f} | {rng[k]} | {min(v.epochs)} | "
                      f"{min(walls[k]):.0f}-{max(walls[k]):.0f} s |" for k, v in mix.items())
    return f"""
## 9. What the data shows, and what it does not

**Is attention needed?** Every model had {budget:.0f} s of training on 2 CPU cores, which bought
two epochs of the 60,000 images: this is the very start of training, not its end ({total_min:.0f}
minutes for all runs). Test accuracy over 3 seeds:

| mixer | mean (%) | seeds' range (%) | epochs | time used |
|---|---|---|---|---|
{table}

* **Pooling is as good as attention, within the noise.** Attention's mean is
  {pct['attention'] - pct['pooling']:.1f} points above pooling's, but the seeds' ranges overlap
  ({rng['attention']} against {rng['pooling']}): three seeds cannot tell them apart. A mixer with no
  parameters that does not look at the image does what attention does here. That is the MetaFormer
  paper's claim in its weak form ("the block matters more than the mixer"); its strong form,
  pooling *beating* attention (PoolFormer-S24 80.3% against DeiT-S 79.8% on ImageNet after 300
  epochs), is not what this run shows.
* **No mixing at all costs {pct['attention'] - pct['identity']:.1f} points.** The identity model is a
  bag of 16 patches tied together only by the final average, and it reaches {pct['identity']:.1f}%.
  On 28x28 clothing images most of the class is in the patches themselves; the mixer adds the
  last point or two. That floor is what to compare every mixer with, and it is high: at this
  scale the experiment can only separate mixers by a point or two.
* **Pooling first, attention last (hybrid) did not help**: {pct['hybrid']:.1f}%, no better than
  either of its parts. The PoolFormer paper's finding that late blocks want attention is about ImageNet
  models with four stages; 16 tokens in 6 blocks do not show it.
* **The token MLP is last, but its row is not a fair verdict on the mixer.** Its speed probe read
  {probe['mlp']:.0f} images/s (attention {probe['attention']:.0f}), so {budget:.0f} s bought
  {budget * probe['mlp'] / epoch_images:.1f} epochs, and the runner plans whole epochs: it trained one, in {min(walls['mlp']):.0f}-{max(walls['mlp']):.0f} s
  of its {budget:.0f}. Timed again later on an idle machine (the cost table of section 7), it trained at
  {train_speed['mlp']:.0f} images/s against attention's {train_speed['attention']:.0f}: the probe's gap was partly
  the machine's load at that moment. What the row shows is the cost of a slower step, or of a
  slow probe, under a fixed clock, and why a budgeted comparison records its probes. From
  scratch on ImageNet-1k, Mixer-B/16 (76.4%) also trails attention models of its size; there the
  reason is data, here it is the clock.

**Why LayerNorm and not BatchNorm?** The attention model with four norms ({n_seeds} seed{"s" if n_seeds > 1 else ""},
same budget): LayerNorm {n_pct['layernorm']:.1f}%, BatchNorm over (batch, tokens) {n_pct['batchnorm']:.1f}%,
BatchNorm without gradient clipping {n_pct['batchnorm_noclip']:.1f}%, BatchNorm plus one inside the MLP
{n_pct['bn_ffn']:.1f}% (means; the seeds' ranges are in the table of section 6).

* **No blow-up.** Yao et al. report that a ViT with BatchNorm in place of LayerNorm trains
  unstably; here no run diverged, with or without clipping, and the largest gradient norm before
  clipping, over all seeds, was {grad['batchnorm']:.1f} with BatchNorm ({grad['batchnorm_noclip']:.1f} unclipped)
  against {grad['layernorm']:.1f} with LayerNorm. Six blocks of width 128, a batch of 256 and two epochs are far
  from the deep, long ImageNet runs where they saw it: the claim is not contradicted, it is out of
  this chapter's reach. What the curves do show is why a batch statistic is awkward in a
  Transformer: BatchNorm's output for one image depends on the others in its batch (section 3),
  which is harmless here and a problem with small or uneven batches.
* **BatchNorm inside the MLP was the best model of the chapter**, {n_pct['bn_ffn'] - n_pct['layernorm']:.1f}
  points above LayerNorm in the same two epochs (its training loss fell fastest too), and its
  {n_seeds} seeds ({n_rng['bn_ffn']}%) all lie above all of LayerNorm's ({n_rng['layernorm']}%). That agrees
  with the direction of Yao et al.'s fix. It is a result about the first two epochs: whether the
  lead survives a long run is not measured here (exercise 4).

**Cost.** Over the largest grids (196 to 784 tokens) attention's MACs grow as $N^{{{slope('attention', 'macs'):.2f}}}$
and pooling's, the token MLP's and identity's as $N^{{{slope('pooling', 'macs'):.2f}}}$,
$N^{{{slope('mlp', 'macs'):.2f}}}$, $N^{{{slope('identity', 'macs'):.2f}}}$: attention's $N^2 D$ term is
still catching up with its $N D^2$ projections at 784 tokens, where it already does
{int(next(r['macs'] for r in cost if r['mixer'] == 'attention' and r['patch_size'] == '1')) / int(next(r['macs'] for r in cost if r['mixer'] == 'pooling' and r['patch_size'] == '1')):.1f}x
pooling's work. At Fashion-MNIST's 16 tokens the mixers cost about the same MACs and the measured
speed is set by everything else ({speed['attention']:.0f} images/s inference for attention,
{speed['pooling']:.0f} for pooling); at 784 tokens attention runs at {speed784['attention']:.0f} images/s
against pooling's {speed784['pooling']:.0f}.

**What this says about the lecture's questions.** At this scale attention is not the essential
part: the block around it (patch embedding, MLPs, residuals, norms, the final pooling) carries
almost all of the accuracy, and a free mixer matches attention within the noise. LayerNorm is not
needed for stability here; BatchNorm trains as well, and a BatchNorm in the MLP trains faster.
What this chapter cannot show is how these rankings move with more data and longer training,
which is where the papers measured them.

## Exercises for after the chapter

1. Re-run one point with another budget: `python -m vitcourse mixers --parts mixers --mixers
   attention pooling --seeds 0 --budget-s 300 --out-dir /tmp/mixers`. Does pooling stay within the
   noise of attention with five epochs?
2. The token MLP's weights are tied to the 4x4 grid. Build `create_model("metaformer_fmnist_mlp",
   patch_size=4)` and count its parameters against `metaformer_fmnist_pooling` at patch 4. Where do
   the extra parameters sit?
3. Put BatchNorm inside the MLP of the *pooling* model (`norm="bn_ffn"`): does the gain carry over?
4. Does BatchNorm-in-the-MLP keep its lead in a longer run? `python -m vitcourse mixers --parts norms
   --norm-seeds 0 --budget-s 600 --out-dir /tmp/norms` trains the four norms for ten epochs each.
"""


CELLS = [
    md(r"""
## 1. The block, with a hole where attention was

Chapter 03's encoder block is two residual sub-layers:

$$
\mathbf{z}' = \mathbf{z} + \mathrm{MSA}(\mathrm{LN}(\mathbf{z})), \qquad
\mathbf{z}'' = \mathbf{z}' + \mathrm{MLP}(\mathrm{LN}(\mathbf{z}')).
$$

Only the first sub-layer lets tokens talk to each other: the MLP works on each token alone. Yu et
al. ("MetaFormer Is Actually What You Need for Vision", CVPR 2022) call that first sub-layer the
**token mixer** and write the block with a slot for it:

$$
\mathbf{z}' = \mathbf{z} + \mathrm{TokenMixer}(\mathrm{Norm}(\mathbf{z})), \qquad
\mathbf{z}'' = \mathbf{z}' + \mathrm{MLP}(\mathrm{Norm}(\mathbf{z}')).
$$

Their Figure 1 puts the ViT, MLP-Mixer and their own PoolFormer into that slot, and the paper's
claim is in its title: the general shape of the block (the "MetaFormer") matters more than which
mixer fills it. With plain 3x3 average pooling, which has no parameters and does not depend on the
image, PoolFormer-S24 (21M parameters) reaches 80.3% top-1 on ImageNet-1k, above DeiT-S (22M,
attention, 79.8%). MLP-Mixer (Tolstikhin et al., NeurIPS 2021) fills the slot with an MLP across
the token axis; from scratch on ImageNet-1k, Mixer-B/16 reaches 76.4%.

| mixer | what token $i$ sees in one block | parameters | depends on the image? | cost in $N$ tokens |
|---|---|---|---|---|
| attention (ViT) | every token, weighted by $\mathrm{softmax}(q_i k_j^\top/\sqrt{d})$ | $4D^2$ | yes | $N^2 D$ (plus $4ND^2$) |
| pooling (PoolFormer) | its 3x3 neighbourhood on the grid, averaged, minus itself | 0 | no | $9ND$ |
| token MLP (Mixer) | every token, with weights learned per position pair | $2Nh$ | no | $2N h D$ |
| identity | itself only | 0 | no | 0 |

In the package the block is `vitcourse.layers.metaformer.MetaFormerBlock`, and the model
`vitcourse.models.metaformer.MetaFormer` takes the mixer and the norm as arguments, so
`metaformer_fmnist_attention` (which *is* chapter 05's `vit_fmnist`, parameter for parameter),
`metaformer_fmnist_pooling`, `..._mlp`, `..._identity` and `..._hybrid` differ in one argument.
"""),
    code(r"""
import matplotlib.pyplot as plt
import matplotlib.ticker
import torch
import torch.nn.functional as F
from einops import rearrange

from vitcourse import create_model, fast_or, load_data, seed_everything
from vitcourse.checks import ch11_mixers as check
from vitcourse.flops import count_flops, count_parameters

seed_everything(0)


def draw_block(ax, x, mixer, color):
    # one MetaFormer block as boxes, bottom to top: Norm -> mixer -> (+) -> Norm -> MLP -> (+)
    boxes = [("Norm", "#dddddd"), (mixer, color), ("Norm", "#dddddd"), ("MLP", "#c6dbef")]
    ys = [0.8, 2.0, 3.6, 4.8]
    for (label, face), y in zip(boxes, ys):
        ax.add_patch(plt.Rectangle((x - 0.75, y), 1.5, 0.7, facecolor=face, edgecolor="black"))
        ax.text(x, y + 0.35, label, ha="center", va="center", fontsize=9)
    for y0, y1 in [(0.2, 0.8), (1.5, 2.0), (2.7, 3.2), (3.4, 3.6), (4.3, 4.8), (5.5, 5.95), (6.1, 6.6)]:
        ax.annotate("", (x, y1), (x, y0), arrowprops=dict(arrowstyle="->", lw=1))
    for y in (3.05, 6.05):
        ax.add_patch(plt.Circle((x, y), 0.15, fill=False))
        ax.text(x, y, "+", ha="center", va="center", fontsize=9)
    # the residual paths skip each sub-layer
    for y0, y1 in [(0.5, 3.05), (3.3, 6.05)]:
        ax.plot([x - 0.95, x - 0.95, x - 0.15], [y0, y1, y1], color="gray", lw=1)


fig, ax = plt.subplots(figsize=(11, 4.2))
for i, (name, color) in enumerate([("Token mixer", "#fdd0a2"), ("Attention", "#fc9272"),
                                   ("Pooling - x", "#a1d99b"), ("Token MLP", "#9ecae1"), ("Identity", "#f0f0f0")]):
    draw_block(ax, 2.2 * i + 1, name, color)
    ax.text(2.2 * i + 1, -0.3, ["MetaFormer", "ViT", "PoolFormer", "MLP-Mixer", "IdentityFormer"][i],
            ha="center", fontsize=10, weight="bold")
ax.set_xlim(-0.2, 11)
ax.set_ylim(-0.7, 7)
ax.axis("off")
ax.set_title("One block, five token mixers (after Yu et al. 2022, Figure 1)")
plt.show()
"""),
    md(r"""
## 2. Four mixers, written out

All four take tokens $x$ of shape $(B, N, D)$ that came from an $(H, W)$ grid of patches
($N = H W$, row by row) and return the same shape.

**Attention** is chapter 02's multi-head self-attention: every token's output is a weighted
average of all tokens' values, with weights computed from the image itself. Written out for one
head, without the projections:
"""),
    code(r"""
def attention_mixer(x: torch.Tensor) -> torch.Tensor:
    # (B, N, D) -> (B, N, D): one head, q = k = v = x, to show the mixing alone
    weights = torch.softmax(x @ x.transpose(1, 2) / x.shape[-1] ** 0.5, dim=-1)  # (B, N, N)
    return weights @ x  # (B, N, D)


x = torch.randn(2, 16, 8)
print("attention mixer:", tuple(attention_mixer(x).shape), "| every row of the weights sums to 1")
"""),
    md(r"""
### Exercise 11.1: PoolFormer's pooling mixer

PoolFormer's token mixer (Yu et al., Algorithm 1) is

$$\mathrm{TokenMixer}(x) = \mathrm{AvgPool}_{3\times 3}(x) - x,$$

average pooling with stride 1 and padding 1 on the $(H, W)$ grid, so the grid keeps its size. Two
details matter:

* **`- x`**: the block adds $x$ back through its residual, so without the subtraction a token would
  count itself twice. With it, the sub-layer's output is "the neighbourhood's average minus me".
* **`count_include_pad=False`**: at the border a 3x3 window hangs over the edge. PyTorch's default
  divides by 9 anyway, i.e. averages in zeros and pulls border tokens towards 0; PoolFormer divides
  by the number of real neighbours (4 at a corner, 6 on an edge).

Write it: move the channels first to get a $(B, D, H, W)$ map (not a plain `reshape`: that would
scramble the tokens), pool, subtract, and go back to $(B, N, D)$.
"""),
    code(r"""
def my_pooling_mixer(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    ### BEGIN SOLUTION
    h, w = grid
    maps = rearrange(x, "b (h w) d -> b d h w", h=h, w=w)  # (B, D, H, W)
    pooled = F.avg_pool2d(maps, kernel_size=3, stride=1, padding=1, count_include_pad=False)
    return rearrange(pooled - maps, "b d h w -> b (h w) d")  # (B, N, D)
    ### END SOLUTION
"""),
    code(r"""
# check: 11.1
check.pooling_mixer(my_pooling_mixer)
"""),
    md(r"""
### Exercise 11.2: MLP-Mixer's token-mixing MLP

MLP-Mixer's token mixer (Tolstikhin et al., Eq. 1) is an MLP that runs along the **token** axis:
for each channel $c$, the column $x_{:, c} \in \mathbb{R}^N$ goes through
$\mathrm{fc}_2(\mathrm{GELU}(\mathrm{fc}_1(\cdot)))$ with $\mathrm{fc}_1: N \to h$ and
$\mathrm{fc}_2: h \to N$, the same weights for every channel. An `nn.Linear` works on the *last*
axis, so the whole exercise is one transpose in the right place, and one back.
"""),
    code(r"""
def my_token_mixing_mlp(x: torch.Tensor, fc1: torch.nn.Linear, fc2: torch.nn.Linear) -> torch.Tensor:
    ### BEGIN SOLUTION
    columns = x.transpose(1, 2)  # (B, D, N): each channel's N values on the last axis
    return fc2(F.gelu(fc1(columns))).transpose(1, 2)  # (B, D, N) -> (B, N, D)
    ### END SOLUTION
"""),
    code(r"""
# check: 11.2
check.token_mixing_mlp(my_token_mixing_mlp)
"""),
    md(r"""
**Identity** is the floor: no mixing at all. The model still has the patch embedding, the MLPs,
the position embedding and the final average over tokens, so it is a bag of patches whose only
link is that last average. Whatever it reaches measures everything *but* the mixer.

Now the package's versions (`vitcourse.layers.mixers`), used from here on. What does token 5 (row
1, column 1 of the 4x4 grid) see after one mixer? The gradient of its output with respect to every
input token answers that, for a fresh, untrained mixer of each kind:
"""),
    code(r"""
from vitcourse.layers.mixers import IdentityMixer, PoolingMixer, TokenMLP, make_mixer

grid, dim = (4, 4), 32
x = torch.randn(1, 16, dim, requires_grad=True)
mixers = {"attention": make_mixer("attention", dim, grid, heads=2, fused=False),
          "pooling": PoolingMixer(grid), "token MLP": TokenMLP(grid, hidden=16), "identity": IdentityMixer(grid)}
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, (name, mixer) in zip(axes, mixers.items()):
    x.grad = None
    out = x + mixer(x)  # the block's residual: token 5 always sees itself
    out[0, 5].sum().backward()
    reach = x.grad[0].norm(dim=-1).reshape(grid)  # (4, 4): how much each input token moves token 5
    ax.imshow(reach / reach.max(), cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"{name}: {int((reach > 1e-6).sum())} of 16 tokens")
    ax.set_xticks(range(4))
    ax.set_yticks(range(4))
    ax.plot(1, 1, "r+", markersize=12)
fig.suptitle("Which input tokens reach token 5 (red +) after one mixer + residual (|gradient|, scaled)")
plt.tight_layout()
plt.show()
"""),
    md(r"""
Attention and the token MLP are global from the first block; pooling reaches the 3x3
neighbourhood, so after $L$ blocks a $(2L+1)\times(2L+1)$ window (7x7 after 3 blocks: all of our
4x4 grid); identity never leaves the token. Attention's weights are computed from the image; the
token MLP's are fixed after training and tied to the grid: change the image size and its
`fc1` no longer fits, which is why Mixer cannot take other resolutions without re-training.

## 3. Where the norm averages

A norm subtracts a mean and divides by a standard deviation; the question is *over which axes* of
the $(B, N, D)$ tokens:

| norm | statistics over | how many | at test time |
|---|---|---|---|
| LayerNorm (ViT, Mixer) | one token's $D$ channels | $2BN$ | the same computation |
| GroupNorm, 1 group (PoolFormer) | one image's $N \times D$ values | $2B$ | the same computation |
| BatchNorm over tokens | one channel over the batch and all tokens, $(B, N)$ | $2D$ | running averages from training |

BatchNorm is what CNNs use, and it has a known advantage: at test time it is a fixed affine map that
folds into the previous layer, so it costs nothing. Yao et al. ("Leveraging Batch Normalization for
Vision Transformers", ICCV workshops 2021) report that simply swapping every LayerNorm of a ViT for
BatchNorm makes training unstable, and trace it to the MLP: its activations are not normalised
anywhere. Adding one more BatchNorm *between the MLP's two linear layers* ("BN in the FFN") made
their BatchNorm ViT train as well as the LayerNorm one.

### Exercise 11.3: BatchNorm over (batch, tokens)

Normalise each channel of $x \in \mathbb{R}^{B \times N \times D}$ with the mean and the biased
variance of that channel over the batch and token axes, $(x - \mu_c) / \sqrt{\sigma_c^2 + \epsilon}$
(training mode, no learned scale and shift).
"""),
    code(r"""
def my_token_batch_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    mean = x.mean(dim=(0, 1))  # (D,): one per channel
    var = x.var(dim=(0, 1), unbiased=False)  # biased, as BatchNorm normalises
    return (x - mean) / torch.sqrt(var + eps)
    ### END SOLUTION
"""),
    code(r"""
# check: 11.3
check.token_batch_norm(my_token_batch_norm)
"""),
    code(r"""
from vitcourse.layers.norms import TokenBatchNorm, make_norm

tokens = torch.randn(8, 16, 4) * torch.tensor([1.0, 2.0, 5.0, 10.0]) + torch.tensor([0.0, 1.0, -3.0, 8.0])
for name in ("layernorm", "batchnorm"):
    out = make_norm(name, 4).train()(tokens)
    print(f"{name:9s}: per-token mean over channels {out.mean(-1).abs().max():.1e} | "
          f"per-channel mean over (batch, tokens) {out.mean((0, 1)).abs().max():.1e}")
bn = TokenBatchNorm(4).eval()
print("BatchNorm in eval mode uses running statistics: an image's output does not depend on its batch:",
      torch.allclose(bn(tokens)[:1], bn(tokens[:1])))
"""),
    md(r"""
## 4. The real models, checked against timm

The same `MetaFormer` class builds the papers' ImageNet models. Their parameter counts agree
with timm's and the papers' tables, and with mapped weights their logits equal timm's
(`tests/test_metaformer.py`: max difference under $10^{-4}$ for `poolformer_s12` and
`mixer_s16_224`). Here: the counts, and one of the equality checks, run live.
"""),
    code(r"""
import timm

from vitcourse.models.metaformer_weights import metaformer_from_timm

rows = [("poolformer_s12", "poolformer_s12", 11.9), ("poolformer_s24", "poolformer_s24", 21.4),
        ("poolformer_s36", "poolformer_s36", 30.9), ("mixer_s16", "mixer_s16_224", 18.5),
        ("mixer_b16", "mixer_b16_224", 59.9)]
print(f"{'preset':16s} {'ours':>12s} {'timm':>12s} {'paper (M)':>10s}  GMACs at 224x224")
for ours_name, timm_name, paper in rows:
    ours = create_model(ours_name)
    theirs = timm.create_model(timm_name, pretrained=False)
    print(f"{ours_name:16s} {count_parameters(ours):12,d} {count_parameters(theirs):12,d} {paper:10.1f}"
          f"  {count_flops(ours) / 2e9:.2f}")

theirs = timm.create_model("poolformer_s12", pretrained=False).eval()
ours = metaformer_from_timm(theirs).eval()
images = torch.randn(2, 3, 224, 224)
with torch.no_grad():
    diff = (ours(images) - theirs(images)).abs().max().item()
print(f"\npoolformer_s12, timm's random weights mapped into ours: max |logit difference| = {diff:.1e}")
"""),
    md(r"""
For Fashion-MNIST the course uses small, isotropic versions at chapter 05's size: `vit_fmnist`'s
stem (patch 7, a 4x4 grid of 16 tokens), width 128, 6 blocks, mean pooling. Attention has $4D^2$
parameters per block and pooling none, so the parameter-free mixers get the difference back in a
wider MLP (512 hidden units instead of 256) and every model has about 0.8M parameters:
"""),
    code(r"""
from vitcourse.experiments.token_mixers import MIXER_MODELS

vit = create_model("vit_fmnist")
print(f"{'vit_fmnist':28s} {count_parameters(vit):9,d} parameters  {count_flops(vit) / 2e6:6.1f} MMACs")
for mixer, name in MIXER_MODELS.items():
    model = create_model(name)
    print(f"{name:28s} {count_parameters(model):9,d} parameters  {count_flops(model) / 2e6:6.1f} MMACs")
"""),
    md(r"""
## 5. Is attention needed? The committed runs

`make mixers` (`python -m vitcourse mixers`) trained each of the five models with chapter 05's
loop and recipe (`fit`'s defaults: AdamW, warm-up and cosine, label smoothing, flips) for the
**same wall-clock budget**: the number of epochs is the budget times each model's measured training
speed (all probed back to back before training, so under the same load), on all 60,000 training
images, tested on all 10,000, with **3 seeds** each. The file holds one row per run with its seed,
hardware, commit and configuration.
"""),
    code(r"""
from vitcourse.experiments.budget import summarise
from vitcourse.experiments.token_mixers import COST_CSV, CURVES_CSV, RUNS_CSV, growth_exponent
from vitcourse.experiments.sweep import read_results

runs = read_results(RUNS_CSV)
mixers = summarise(runs, "mixers")
first = next(r for r in runs if r["experiment"] == "mixers")
print(f"budget {float(first['budget_s']):.0f} s per run, {first['train_size']} training / {first['test_size']} "
      f"test images; {first['hardware']}; torch {first['torch']}; commit {first['commit']}")
print(f"all {len(runs)} runs together: {sum(float(r['point_wall_s']) for r in runs) / 60:.0f} minutes\n")
print(f"{'mixer':10s} {'params':>8s} {'MMACs':>6s} {'epochs':>7s} {'test accuracy, mean ± spread (min-max)':>40s}  per seed")
for s in mixers.values():
    per_seed = " ".join(f"{100 * a:.2f}" for a in s.accuracies)
    print(f"{s.variant:10s} {s.params:8,d} {s.macs / 1e6:6.1f} {min(s.epochs):>3d}-{max(s.epochs):<3d} "
          f"{100 * s.mean:>27.2f} ± {100 * s.spread / 2:.2f}           {per_seed}")
"""),
    code(r"""
cost = read_results(COST_CSV)
# the speed each run's epochs were planned from (probed back to back, under the same load)
speed = {r["variant"]: float(r["probe_images_per_s"]) for r in runs if r["experiment"] == "mixers"}
colors = {"attention": "C3", "pooling": "C2", "mlp": "C0", "identity": "C7", "hybrid": "C1"}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
for i, s in enumerate(mixers.values()):
    accs = [100 * a for a in s.accuracies]
    axes[0].scatter([i] * len(accs), accs, color=colors[s.variant], zorder=3)
    axes[0].hlines(100 * s.mean, i - 0.25, i + 0.25, color=colors[s.variant])
    for ax, xval in ((axes[1], s.macs / 1e6), (axes[2], speed[s.variant])):
        ax.errorbar(xval, 100 * s.mean, yerr=[[100 * (s.mean - min(s.accuracies))], [100 * (max(s.accuracies) - s.mean)]],
                    fmt="o", color=colors[s.variant], capsize=3, label=s.variant)
axes[0].set_xticks(range(len(mixers)), list(mixers))
axes[0].set_title("Test accuracy per seed (line: mean)")
axes[1].set_xlabel("MMACs per image")
axes[1].set_title("Accuracy vs compute per image")
axes[2].set_xscale("log")
axes[2].set_xlabel("probed training images / s (log)")
axes[2].set_title("Accuracy vs training speed")
axes[2].legend(fontsize=8)
for ax in axes:
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()
"""),
    md(r"""
## 6. Why LayerNorm? The norm ablation

The attention model (that is, `vit_fmnist`) with four norms, same budget, 3 seeds: LayerNorm;
BatchNorm over (batch, tokens) in place of every LayerNorm; BatchNorm plus one more inside the MLP
("BN in the FFN", Yao et al.); and plain BatchNorm again *without* the loop's gradient clipping
(at norm 1), the setting in which a blow-up has nothing to stop it. The runner recorded every
step's loss and the gradient norm *before* clipping.
"""),
    code(r"""
curves = read_results(CURVES_CSV)
norms = summarise(runs, "norms")
norm_rows = [r for r in runs if r["experiment"] == "norms"]
print(f"{'norm':18s} {'seed':>4s} {'params':>8s} {'epochs':>6s} {'test acc':>8s} {'largest grad norm':>18s} "
      f"{'diverged at step':>17s}")
for r in sorted(norm_rows, key=lambda r: (list(norms).index(r["variant"]), r["seed"])):
    acc = float(r["test_accuracy"])
    print(f"{r['variant']:18s} {r['seed']:>4s} {int(r['params']):8,d} {r['epochs']:>6s} {100 * acc:8.2f} "
          f"{float(r['max_grad_norm']):18.2f} {r['diverged_step'] or '-':>17s}")
print()
for s in norms.values():
    print(f"{s.variant:18s} mean {100 * s.mean:.2f}%, seeds' range {100 * min(s.accuracies):.2f}-{100 * max(s.accuracies):.2f}")


def smooth(values, k=25):
    t = torch.tensor(values, dtype=torch.float64)
    return F.avg_pool1d(t[None, None], k, 1, k // 2, count_include_pad=False)[0, 0].tolist()


fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for variant in dict.fromkeys(c["variant"] for c in curves):
    pts = [c for c in curves if c["variant"] == variant and c["seed"] == "0"]  # one seed: readable lines
    steps = [int(c["step"]) for c in pts]
    axes[0].plot(steps, smooth([float(c["loss"]) for c in pts]), label=variant)
    axes[1].plot(steps, smooth([float(c["grad_norm"]) for c in pts]), label=variant)
axes[0].set_title("Training loss per step, seed 0 (moving average of 25)")
axes[0].set_ylabel("label-smoothed cross-entropy")
axes[1].set_title("Gradient norm before clipping, seed 0 (moving average of 25)")
axes[1].set_yscale("log")
axes[1].set_ylabel("global L2 norm (log)")
for ax in axes:
    ax.set_xlabel("optimiser step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()
"""),
    md(r"""
## 7. What each mixer costs as the grid grows

Attention compares every token with every other: its cost grows as $N^2$. Pooling, the token MLP
on a fixed grid and identity grow linearly in $N$ (the token MLP's weights grow with the grid too,
$2Nh$ parameters). On Fashion-MNIST's 16 tokens this hardly shows; shrinking the patch from 7 to 1
pixel takes the same models to 49, 196 and 784 tokens. The MACs come from the package's FLOP
counter (`torch.utils.flop_counter`), the images per second from timed inference on this kind of
machine (committed in `token_mixers_cost.csv`, with its hardware).
"""),
    code(r"""
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
for mixer in dict.fromkeys(r["mixer"] for r in cost):
    pts = sorted((r for r in cost if r["mixer"] == mixer), key=lambda r: int(r["tokens"]))
    n = [int(r["tokens"]) for r in pts]
    macs = [int(r["macs"]) / 1e6 for r in pts]
    ips = [float(r["infer_images_per_s"]) for r in pts]
    # the exponent over the largest grids, where the per-token terms no longer dominate
    slope = growth_exponent(n[-2:], macs[-2:])
    axes[0].plot(n, macs, "o-", color=colors[mixer], label=f"{mixer} (slope {slope:.2f} at 196-784)")
    axes[1].plot(n, ips, "o-", color=colors[mixer], label=mixer)
for ax in axes:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([16, 49, 196, 784], ["16", "49", "196", "784"])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # no overlapping minor labels
    ax.set_xlabel("tokens N (28x28 image, patch 7 / 4 / 2 / 1)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
axes[0].set_ylabel("MMACs per image (log)")
axes[0].set_title("Compute vs number of tokens")
axes[1].set_ylabel("inference images / s (log)")
axes[1].set_title("Measured inference speed vs number of tokens")
plt.tight_layout()
plt.show()
"""),
    md(r"""
## 8. A small live re-run

The same function that wrote the file (`train_budgeted`, shared with chapter 13's ablation), on
this machine, now: attention against pooling for a short budget, one seed. In fast mode it trains for a few seconds on 1,000 images (it shows
the pipeline, not the ranking); in a full run, 60 s each on 10,000 images.
"""),
    code(r"""
from vitcourse.experiments.budget import BudgetedRun, train_budgeted
from vitcourse.experiments.compare import training_throughput

live_data = load_data(train_size=fast_or(1_000, 10_000), test_size=fast_or(500, 10_000))
for mixer in ("attention", "pooling"):
    probe = training_throughput(MIXER_MODELS[mixer], live_data.train_images, live_data.train_labels)
    run = BudgetedRun("mixers", mixer, MIXER_MODELS[mixer], seed=0, budget_s=fast_or(3.0, 60.0))
    row = train_budgeted(run, live_data, probe)
    print(f"{mixer:9s}: {probe:6.0f} training images/s -> {row['epochs']} epochs in the budget, "
          f"test accuracy {100 * row['test_accuracy']:.1f}% ({row['fit_wall_s']} s)")
"""),
    md(discussion()),
]

if __name__ == "__main__":
    out = write_chapter("notebooks/11_token_mixers.ipynb", "11 · What does a ViT need? Token mixers and norms",
                        TEACHES, CELLS)
    print("wrote", out)
