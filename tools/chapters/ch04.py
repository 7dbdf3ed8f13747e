"""Generates notebooks/04_vision_transformer.ipynb (run from the repo root: python tools/chapters/ch04.py).

The .ipynb is what students open and what is committed; this script is how it was written, kept so
that a change to the chapter is a reviewable diff of Python strings.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.nbbuild import code, md, write_chapter  # noqa: E402

TEACHES = """
What you will learn: how the pieces of chapters 01–03 assemble into the Vision Transformer; a
configuration that checks itself and the paper's presets; one real image followed through the model;
parameter counts side by side with the paper's Table 1 and two independent implementations; FLOPs
per image; loading timm's and torchvision's weights and getting their logits; and D2L's chapter-11.8
model as one more preset.
"""

CELLS = [
    md(r"""
## 1. The model, assembled

Chapters 01–03 built every part. The paper (§3.1) puts them together in four equations:

$$
\begin{aligned}
\mathbf{z}_0 &= [\mathbf{x}_\text{class};\, \mathbf{x}_p^1\mathbf{E};\, \dots;\, \mathbf{x}_p^N\mathbf{E}] + \mathbf{E}_{pos},
  & \mathbf{E} \in \mathbb{R}^{(P^2 C) \times D},\ \mathbf{E}_{pos} \in \mathbb{R}^{(N+1) \times D} && (1)\\
\mathbf{z}'_\ell &= \mathrm{MSA}(\mathrm{LN}(\mathbf{z}_{\ell-1})) + \mathbf{z}_{\ell-1}, & \ell = 1 \dots L && (2)\\
\mathbf{z}_\ell &= \mathrm{MLP}(\mathrm{LN}(\mathbf{z}'_\ell)) + \mathbf{z}'_\ell, & \ell = 1 \dots L && (3)\\
\mathbf{y} &= \mathrm{LN}(\mathbf{z}_L^0) && && (4)
\end{aligned}
$$

| step | equation | module in `vitcourse.models.vit.ViT` | shape | chapter |
|---|---|---|---|---|
| cut into patches, project | (1) | `patch_embed` (a strided convolution) | $(B, C, H, W) \to (B, N, D)$ | 01 |
| prepend the class token | (1) | `cls_token` | $(B, N, D) \to (B, 1 + N, D)$ | 03 |
| add position embeddings | (1) | `pos_embed`, then `pos_drop` | $(B, 1 + N, D)$ | 03 |
| $L$ encoder blocks | (2)–(3) | `blocks[0]` … `blocks[L-1]` | $(B, 1 + N, D)$ | 02, 03 |
| final LayerNorm | (4) | `norm` | $(B, 1 + N, D)$ | 03 |
| read the class token, classify | (4) | `head` (a Linear $D \to K$) | $(B, D) \to (B, K)$ | here |

The paper's Figure 1 draws the same pipeline. The head is a single linear layer when fine-tuning
(the paper pre-trains with one hidden layer and drops it for fine-tuning; §3.1). With
`pool="mean"` the class token is left out and the head reads the average of the patch tokens, the
"global average pooling" the paper's Appendix D.3 finds as good with a suitable learning rate.
"""),
    code(r"""
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from vitcourse import CLASS_NAMES, create_model, from_timm, from_torchvision, list_models, load_data, seed_everything
from vitcourse.training.checkpoint import load_pretrained
from vitcourse.checks import ch04_vit as check
from vitcourse.data import normalize
from vitcourse.flops import count_parameters, flop_counts
from vitcourse.models.vit import PRESETS, ViT, ViTConfig

seed_everything(0)
data = load_data()  # real Fashion-MNIST; a stratified subset when VITCOURSE_FAST=1
print("test images:", tuple(data.test_images.shape), data.test_images.dtype)
"""),
    md(r"""
## 2. A configuration that checks itself

Every hyper-parameter lives in one typed dataclass, `ViTConfig`; the model is built from it and
nothing else. Its defaults are ViT-B/16 on $224 \times 224$ ImageNet. The field names follow the
paper's Table 1: `dim` is the hidden size $D$, `depth` the number of layers $L$, `mlp_dim` the
MLP size, `heads` the number of heads.
"""),
    code(r"""
config = ViTConfig()  # ViT-B/16
print(config)
print(f"grid {config.grid_size}, N = {config.num_patches} patches, D/heads = {config.dim // config.heads} channels per head")
assert config.num_patches == (224 // 16) ** 2 == 196
"""),
    md(r"""
The paper's models and a few more are **presets**: named builders that fill in the config.
`create_model(name, **overrides)` builds any of them, and every field can be overridden, e.g. the
number of classes. The ViT family:
"""),
    code(r"""
for name, build in PRESETS.items():
    print(f"{name:14s} {build.__doc__.splitlines()[0]}")
print("\nall families (chapters 07-10 add a CNN, T2T-ViT and Swin):", ", ".join(list_models()))
model = create_model("vit_ti_16", num_classes=10)
print("\nvit_ti_16 with 10 classes:", model.config.num_classes, "classes,", f"{count_parameters(model):,} parameters")
"""),
    md(r"""
A configuration that cannot work is refused when it is made, with a message that names the argument
and the value, instead of a shape error from deep inside PyTorch at the first forward pass. The
model also checks its input. Each line below is one mistake students make:
"""),
    code(r"""
mistakes = {
    "patch does not divide the image": lambda: ViTConfig(image_size=28, patch_size=8),
    "heads do not divide the width": lambda: ViTConfig(dim=100, heads=12),
    "a preset that does not exist": lambda: create_model("vit_b_32"),
    "RGB model, grey images": lambda: create_model("vit_ti_16")(torch.zeros(2, 1, 224, 224)),
    "an image without its batch axis": lambda: create_model("vit_fmnist")(torch.zeros(1, 28, 28)),
    "uint8 pixels straight from the data set": lambda: create_model("vit_fmnist")(data.test_images[:2, None]),
}
for what, mistake in mistakes.items():
    try:
        mistake()
    except ValueError as err:
        print(f"{what}:\n    ValueError: {err}\n")
    else:
        raise AssertionError(f"{what}: no error")
"""),
    md(r"""
## 3. One image through the model

Take the small ViT this course trains on Fashion-MNIST (`vit_fmnist`: patch 7, so $N = 16$ tokens,
$D = 128$, 6 blocks, mean pooling) with the weights the repository ships (chapter 05 trains them),
and follow one test image through it. Forward **hooks** record each module's output without changing
what the model computes; `pos_drop`'s output is $\mathbf{z}_0$, the tokens after the position
embeddings are added.
"""),
    code(r"""
trained = load_pretrained("vit_fmnist")  # eval mode
print(trained.config)
index = int((data.test_labels == 0).nonzero()[0])  # the first T-shirt/top of the test set
image = normalize(data.test_images[index:index + 1])  # (1, 1, 28, 28), standardised

records = {}  # module name -> its output
watched = ["patch_embed", "pos_drop", *[f"blocks.{i}" for i in range(trained.config.depth)], "norm", "head"]
hooks = [trained.get_submodule(name).register_forward_hook(
    lambda module, inputs, output, name=name: records.__setitem__(name, output.detach()))
    for name in watched]
with torch.no_grad():
    logits = trained(image)  # (1, 10)
for h in hooks:
    h.remove()  # hooks stay until removed

def token_stats(tokens: torch.Tensor) -> str:
    t = tokens[0]  # (N, D)
    cos = F.cosine_similarity(t[:, None], t[None], dim=-1)  # (N, N)
    alike = cos[~torch.eye(len(t), dtype=torch.bool)].mean()  # mean over pairs of different tokens
    return f"{t.norm(dim=-1).mean():12.1f} {alike:18.2f}"


print(f"{'module':12s} {'output shape':14s} {'token norm':>12s} {'cos(token, other)':>18s}")
print(f"{'(input)':12s} {str(tuple(image.shape)):14s}")
for name in watched:
    shape = str(tuple(records[name].shape))
    print(f"{name:12s} {shape:14s} {token_stats(records[name]) if name != 'head' else ''}")
assert records["patch_embed"].shape == (1, 16, 128) and records["head"].shape == (1, 10)
assert torch.equal(records["head"], logits)
"""),
    md(r"""
Every block maps $(1, 16, 128)$ to $(1, 16, 128)$: the sequence keeps its length and width all the
way up, and only the head changes the shape. The two other columns say what happens inside that
fixed shape: the mean length of a token grows block after block (each block *adds* its output to
the residual stream, chapter 03), and the final LayerNorm brings every token back to length about
$\sqrt{D} \approx 11.3$. And the tokens, nearly unrelated at the start (mean cosine similarity
between two different patches near 0), become more and more alike: attention mixes information
between them, and since this model's head reads their mean, they end up carrying a shared
description of the whole image. Below, the token matrices themselves (rows: the 16
patches, columns: the 128 channels) at four depths, and what the head makes of the last one.
"""),
    code(r"""
probs = logits.softmax(-1)[0]  # (10,)
stages = ["pos_drop", "blocks.1", "blocks.5", "norm"]
titles = [r"$\mathbf{z}_0$: patches + positions", "after block 2", "after block 6", "after the final LayerNorm"]
fig = plt.figure(figsize=(16, 4.2))
gs = fig.add_gridspec(1, 6, width_ratios=[0.8, 1.3, 1.3, 1.3, 1.3, 1.3])
ax = fig.add_subplot(gs[0])
ax.imshow(data.test_images[index], cmap="gray_r")
ax.set_title(f"input: {CLASS_NAMES[int(data.test_labels[index])]}")
ax.set_xlabel("x (pixel)")
ax.set_ylabel("y (pixel)")
for k, (stage, title) in enumerate(zip(stages, titles)):
    ax = fig.add_subplot(gs[k + 1])
    t = records[stage][0]  # (16, 128)
    lim = t.abs().max().item()
    im = ax.imshow(t, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("channel (of D = 128)")
    ax.set_ylabel("token (patch 0-15)")
    fig.colorbar(im, ax=ax, shrink=0.8)
ax = fig.add_subplot(gs[5])
ax.barh(range(10), probs, color=["tab:green" if c == int(data.test_labels[index]) else "tab:gray" for c in range(10)])
ax.set_yticks(range(10), CLASS_NAMES, fontsize=8)
ax.invert_yaxis()
ax.set_xlabel("probability")
ax.set_title("head: softmax of the logits")
fig.suptitle("One Fashion-MNIST image through the trained vit_fmnist: the token matrix (16 x 128) keeps its shape")
plt.tight_layout()
plt.show()
print(f"predicted {CLASS_NAMES[int(probs.argmax())]} with probability {probs.max():.2f}")
"""),
    md(r"""
At $\mathbf{z}_0$ each row is its own patch: the near-empty background patches (rows 8 and 11 for
this T-shirt) are faint, carrying little more than their position embedding. In the later panels
vertical stripes appear: channels with the same sign in every row, the shared description the
cosine column measured. Note the colour scales: the stream grows about fivefold before the final
LayerNorm rescales it.

### Exercise 04.1: the forward pass
Write `vit_forward(model, images)` for a **class-token** ViT (`pool="cls"`) from its parts, the
table in section 1: `model.patch_embed`, `model.cls_token` $(1, 1, D)$, `model.pos_embed`
$(1, 1 + N, D)$, `model.pos_drop`, `model.blocks` (a list of blocks, each $(B, 1 + N, D) \to (B, 1 + N, D)$),
`model.norm` and `model.head`. It must return the same logits as `model(images)`.
"""),
    code(r"""
def vit_forward(model: ViT, images: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    tokens = model.patch_embed(images)  # (B, N, D)
    cls = model.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
    z = model.pos_drop(torch.cat([cls, tokens], dim=1) + model.pos_embed)  # Eq. 1: (B, 1 + N, D)
    for block in model.blocks:
        z = block(z)  # Eqs. 2-3: (B, 1 + N, D)
    z = model.norm(z)  # Eq. 4: (B, 1 + N, D)
    return model.head(z[:, 0])  # the class token's output -> (B, K)
    ### END SOLUTION
"""),
    code(r"""
# check: 04.1
check.vit_forward(vit_forward)
"""),
    md(r"""
## 4. Counting parameters: the paper's Table 1, side by side

Where do a ViT's parameters sit? With patch size $P$, $C$ channels, width $D$, MLP width $M$,
$N$ patches, $L$ blocks and $K$ classes, a class-token ViT with learned position embeddings has:

| part | parameters |
|---|---|
| patch embedding $\mathbf{E}$ (with bias) | $P^2 C D + D$ |
| class token and position embeddings | $D + (N + 1) D$ |
| per block: two LayerNorms | $2 \cdot 2D$ |
| per block: attention ($W_{qkv}$, $W_o$, with biases) | $3D^2 + 3D + D^2 + D$ |
| per block: MLP ($D \to M \to D$, with biases) | $DM + M + MD + D$ |
| final LayerNorm | $2D$ |
| head | $DK + K$ |

### Exercise 04.2: count the parameters
Write `param_count(config)` that returns the number of parameters of `ViT(config)` **without
building it**, from the fields of a `ViTConfig` (`image_size`, `patch_size`, `in_channels`, `dim`,
`depth`, `mlp_dim`, `num_classes`, `pool`; `config.num_patches` gives $N$). With `pool="mean"`
there is no class token and $N$ position embeddings. (The checker uses learned position
embeddings and biases everywhere, as above.)
"""),
    code(r"""
def param_count(config: ViTConfig) -> int:
    ### BEGIN SOLUTION
    d, m, n = config.dim, config.mlp_dim, config.num_patches
    prefix = 1 if config.pool == "cls" else 0
    patch_embed = config.patch_size ** 2 * config.in_channels * d + d
    tokens = prefix * d + (n + prefix) * d  # class token + position embeddings
    attention = 3 * d * d + 3 * d + d * d + d
    mlp = d * m + m + m * d + d
    block = 2 * 2 * d + attention + mlp
    head = d * config.num_classes + config.num_classes
    return patch_embed + tokens + config.depth * block + 2 * d + head
    ### END SOLUTION
"""),
    code(r"""
# check: 04.2
check.param_count(param_count)
"""),
    md(r"""
Now the real thing. The paper's Table 1 lists ViT-Base, -Large and -Huge; DeiT (Touvron et al.,
2021) added the Tiny and Small models that everyone uses on small budgets. We build each preset and
the same model in two independent libraries, timm (`timm.create_model(..., pretrained=False)`) and
torchvision (`torchvision.models.vit_*(weights=None)`, which has only B, L and H), and count. The
models are built on PyTorch's **meta device**: every tensor has a shape but no memory, so even the
632-million-parameter ViT-H costs nothing to count.
"""),
    code(r"""
# timm, the independent implementation we compare with (in the course's test extras; `make lab`
# has installed it locally).
import sys

if "google.colab" in sys.modules:
    %pip install -q timm
"""),
    code(r"""
import timm
import torchvision

# preset -> (paper's table, its rounded count, timm's name, torchvision's builder)
table1 = {
    "vit_ti_16": ("DeiT Table 1", "5M", "vit_tiny_patch16_224", None),
    "vit_s_16": ("DeiT Table 1", "22M", "vit_small_patch16_224", None),
    "vit_b_16": ("ViT Table 1", "86M", "vit_base_patch16_224", "vit_b_16"),
    "vit_l_16": ("ViT Table 1", "307M", "vit_large_patch16_224", "vit_l_16"),
    "vit_h_14": ("ViT Table 1", "632M", "vit_huge_patch14_224", "vit_h_14"),
}
counts = {}
print(f"{'preset':10s} {'L':>3s} {'D':>5s} {'MLP':>5s} {'heads':>5s} {'paper':>6s} {'vitcourse':>13s} {'timm':>13s} {'torchvision':>13s}")
for name, (source, paper, timm_name, tv_name) in table1.items():
    with torch.device("meta"):  # shapes only, no memory, no initialisation cost
        ours = create_model(name)
        n_timm = count_parameters(timm.create_model(timm_name, pretrained=False, num_classes=1000))
        n_tv = count_parameters(getattr(torchvision.models, tv_name)(weights=None)) if tv_name else None
    c = ours.config
    counts[name] = count_parameters(ours)
    tv_text = f"{n_tv:13,d}" if n_tv else f"{'-':>13s}"
    print(f"{name:10s} {c.depth:3d} {c.dim:5d} {c.mlp_dim:5d} {c.heads:5d} {paper:>6s} {counts[name]:13,d} {n_timm:13,d} {tv_text}")
    assert counts[name] == n_timm and (n_tv is None or counts[name] == n_tv)
"""),
    md(r"""
All three implementations agree to the last parameter, and they agree with the paper's rounded
numbers for Base (86M) and Huge (632M). For ViT-L/16 the paper prints 307M while all three give
304.3M; we could not reproduce the paper's figure from its own description (a 21k-class head, used
in pre-training, would give 326M), so treat it as a bookkeeping difference in the table, not in the
architecture. The `layers / hidden size / MLP size / heads` columns are exactly the paper's Table 1.

Where the parameters sit, per preset (the D2L and Fashion-MNIST presets included):
"""),
    code(r"""
def parameter_shares(model: torch.nn.Module) -> dict[str, int]:
    parts = {"patch embedding": 0, "class token + positions": 0, "attention": 0, "MLP": 0, "LayerNorms": 0, "head": 0}
    for pname, p in model.named_parameters():
        if pname.startswith("patch_embed"):
            part = "patch embedding"
        elif pname in ("cls_token", "pos_embed"):
            part = "class token + positions"
        elif ".attn." in pname:
            part = "attention"
        elif ".mlp." in pname:
            part = "MLP"
        elif "norm" in pname:
            part = "LayerNorms"
        else:
            part = "head"
        parts[part] += p.numel()
    return parts


names = list(table1) + ["d2l_vit", "vit_fmnist"]
shares = {}
for name in names:
    with torch.device("meta"):
        m = create_model(name)
    shares[name] = parameter_shares(m)
    assert sum(shares[name].values()) == count_parameters(m)  # every parameter in exactly one part

fig, ax = plt.subplots(figsize=(11, 4.2))
left = torch.zeros(len(names))
for part in shares[names[0]]:
    frac = torch.tensor([shares[n][part] / sum(shares[n].values()) for n in names])
    ax.barh(names, frac, left=left, label=part)
    left += frac
for i, n in enumerate(names):
    ax.text(1.01, i, f"{sum(shares[n].values()) / 1e6:.2f}M", va="center", fontsize=9)
ax.set_xlim(0, 1.12)
ax.invert_yaxis()
ax.set_xlabel("share of the model's parameters")
ax.set_title("Where a ViT's parameters are, per preset (total on the right)")
ax.legend(ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15))
plt.tight_layout()
plt.show()
"""),
    md(r"""
In every model with the paper's MLP ratio ($M = 4D$) the blocks hold nearly everything: two thirds
MLP ($2DM = 8D^2$ per block) and one third attention ($4D^2$), whatever the size. The edges, patch
embedding and head, matter only in the small models (about 5% of ViT-Ti). `vit_fmnist` is half
attention, half MLP because its MLP is only twice as wide as its tokens ($256 = 2 \times 128$), a
choice made for speed on a CPU (chapter 05).

## 5. FLOPs: what one image costs

Parameters say how big a model is; **FLOPs** say how much work one image takes. PyTorch counts them
for us: `torch.utils.flop_counter.FlopCounterMode` watches every matrix product and convolution a
forward pass runs (`vitcourse.flops.flop_counts` wraps it, also on the meta device). Careful with
units: PyTorch counts a multiply-add as **2** FLOPs, while most vision papers print multiply-adds
(MACs) and call them FLOPs. DeiT's Table 1 gives 1.3, 4.6 and 17.6 "GFLOPs" for Ti, S and B: halve
the counter's numbers before comparing.
"""),
    code(r"""
deit_gmacs = {"vit_ti_16": 1.3, "vit_s_16": 4.6, "vit_b_16": 17.6}  # DeiT Table 1 ("FLOPs" = multiply-adds)
flops = {}
print(f"{'preset':10s} {'params':>8s} {'GFLOPs':>8s} {'GMACs':>7s} {'DeiT':>6s}  share: linear layers / attention matrices / patch conv")
for name in names:
    with torch.device("meta"):
        by_op = flop_counts(create_model(name))  # {"aten.addmm": ..., "aten.bmm": ..., "aten.convolution": ...}
    total = sum(by_op.values())
    flops[name] = total
    linear = by_op.get("aten.addmm", 0) + by_op.get("aten.mm", 0)
    attn, conv = by_op.get("aten.bmm", 0), by_op.get("aten.convolution", 0)
    assert linear + attn + conv == total
    deit = f"{deit_gmacs[name]:6.1f}" if name in deit_gmacs else f"{'-':>6s}"
    print(f"{name:10s} {sum(shares[name].values()) / 1e6:7.1f}M {total / 1e9:8.2f} {total / 2e9:7.2f} {deit}  "
          f"{linear / total:6.1%} / {attn / total:6.1%} / {conv / total:6.1%}")
for name, gmacs in deit_gmacs.items():
    assert abs(flops[name] / 2e9 - gmacs) / gmacs < 0.05  # within the paper's rounding
"""),
    md(r"""
The counts match DeiT's table to its rounding. At $224 \times 224$ with $16 \times 16$ patches
($N = 197$ tokens) the attention matrices ($QK^\top$ and the weighted sum of values, `aten.bmm`) are
only about 4% of ViT-B's work: the linear layers dominate, and FLOPs grow roughly like parameters
times tokens. That changes with resolution. The paper fine-tunes at $384 \times 384$ (§3.2), which
gives $N = 577$ tokens; the linear layers grow like $N$, the attention matrices like $N^2$:
"""),
    code(r"""
sizes = [224, 288, 384, 512, 768, 1024]
linear_g, attn_g = [], []
for size in sizes:
    with torch.device("meta"):
        by_op = flop_counts(create_model("vit_b_16", image_size=size))
    linear_g.append((by_op["aten.addmm"] + by_op["aten.convolution"]) / 1e9)
    attn_g.append(by_op["aten.bmm"] / 1e9)
tokens = [(s // 16) ** 2 + 1 for s in sizes]
for s, n, lin, att in zip(sizes, tokens, linear_g, attn_g):
    print(f"{s:5d} px  N = {n:5d}  linear {lin:8.1f} GFLOPs  attention {att:8.1f} GFLOPs  ({att / (lin + att):5.1%})")

fig, ax = plt.subplots(figsize=(7, 4.2))
ax.loglog(tokens, linear_g, "o-", label="linear layers + patch conv (grows like N)")
ax.loglog(tokens, attn_g, "s-", label=r"attention matrices $QK^\top$, $AV$ (grows like N²)")
for s, n, a in zip(sizes, tokens, attn_g):
    ax.annotate(f"{s}px", (n, a), textcoords="offset points", xytext=(4, -12), fontsize=8)
ax.set_xticks(tokens, [str(n) for n in tokens])
ax.minorticks_off()
ax.set_xlabel("tokens N (log scale)")
ax.set_ylabel("GFLOPs per image (log scale)")
ax.set_title("ViT-B/16: where the work goes as the image grows")
ax.grid(True, alpha=0.3)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
"""),
    md(r"""
On the log-log plot the two lines have slopes 1 and 2; at about 1,000 pixels the quadratic term
catches up with everything else. That is the problem Swin (chapter 09) solves with local windows.
Chapter 10's exercise 10.1 asks you to derive these counts from the shapes alone.

## 6. Same weights, same answers: timm and torchvision

Counting parameters shows the shapes are right; it does not show that the model *computes* what the
paper's model computes (the order of the class token, the LayerNorm's epsilon, the scaling inside
attention, where dropout sits...). The strongest check is to take a model from an independent
implementation, copy its weights into ours, and compare the outputs. `vitcourse.from_timm(model)`
and `vitcourse.from_torchvision(model)` read the architecture from the given model, build the same
`ViT` and copy every tensor by name; anything they do not recognise is an error, never a silently
different model. Both libraries' models here are randomly initialised (no download): equal outputs
for equal random weights prove equal architectures, and pre-trained weights go through the same
mapping (`timm.create_model(name, pretrained=True)` where there is internet, then `from_timm`).

The inputs are real test images, resized to $224 \times 224$ and repeated over three channels.
"""),
    code(r"""
def as_rgb_224(images_uint8: torch.Tensor) -> torch.Tensor:
    return normalize(images_uint8, image_size=224).expand(-1, 3, -1, -1)  # (B, 3, 224, 224)


x = as_rgb_224(data.test_images[:8])
results = {}
for timm_name in ("vit_tiny_patch16_224", "vit_small_patch16_224"):
    torch.manual_seed(0)
    reference = timm.create_model(timm_name, pretrained=False, num_classes=10).eval()
    ours = from_timm(reference).eval()
    with torch.no_grad():
        results[f"timm {timm_name}"] = (reference(x), ours(x))

torch.manual_seed(0)
reference = torchvision.models.vit_b_16(weights=None, num_classes=10).eval()
# torchvision starts its head at zero (the paper's choice for fine-tuning), which would make every
# logit 0 and the comparison empty: give the head random weights first.
torch.nn.init.normal_(reference.heads.head.weight, std=0.02)
torch.nn.init.normal_(reference.heads.head.bias, std=0.02)
ours = from_torchvision(reference).eval()
with torch.no_grad():
    results["torchvision vit_b_16"] = (reference(x[:2]), ours(x[:2]))

for what, (theirs, mine) in results.items():
    err = (theirs - mine).abs().max().item()
    print(f"{what:38s} logits {tuple(mine.shape)}, max |difference| = {err:.1e} (largest logit {theirs.abs().max():.2f})")
    assert err < 1e-4 and theirs.abs().max() > 0.1  # equal, and not trivially (all-zero logits)
"""),
    code(r"""
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
for ax, (what, (theirs, mine)) in zip(axes, results.items()):
    ax.scatter(theirs.flatten(), mine.flatten(), s=12)
    lo, hi = theirs.min().item(), theirs.max().item()
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.set_xlabel(f"{what.split()[0]} logit")
    ax.set_ylabel("vitcourse logit (same weights)")
    ax.set_title(f"{what}\nmax |diff| = {(theirs - mine).abs().max():.1e}", fontsize=10)
    ax.legend(fontsize=8)
fig.suptitle("Independent implementations, same random weights, real Fashion-MNIST images: the same logits")
plt.tight_layout()
plt.show()
"""),
    md(r"""
Against timm the differences are float32 round-off, around $10^{-6}$: timm computes attention with
PyTorch's fused kernel (`F.scaled_dot_product_attention`), which adds the same numbers in another
order than our explicit path (the CPU default). Against torchvision they are exactly zero: its
`nn.MultiheadAttention` performs the same operations in the same order as our explicit path.
Our test suite checks the same thing at several class counts
(`tests/test_convert.py`). Is the check sharp enough to catch a small mistake? Give our model
PyTorch's default LayerNorm epsilon, $10^{-5}$, instead of the paper's $10^{-6}$, with the very same
weights:
"""),
    code(r"""
import dataclasses

torch.manual_seed(0)
reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10).eval()
right = from_timm(reference).eval()
wrong = ViT(dataclasses.replace(right.config, norm_eps=1e-5)).eval()
wrong.load_state_dict(right.state_dict())  # same weights, one constant changed
with torch.no_grad():
    theirs = reference(x)
    err_right, err_wrong = (right(x) - theirs).abs().max().item(), (wrong(x) - theirs).abs().max().item()
print(f"eps = 1e-6 (the paper, timm): max |difference| = {err_right:.1e}")
print(f"eps = 1e-5 (PyTorch default): max |difference| = {err_wrong:.1e}, {err_wrong / err_right:,.0f} times larger")
assert err_wrong > 100 * err_right
"""),
    md(r"""
A change in the sixth decimal of one constant moves the logits thousands of times more than
round-off does: agreement at the $10^{-6}$ level leaves no room for a different model.

## 7. D2L's model, as a preset

D2L's chapter 11.8 trains a ViT on Fashion-MNIST resized to $96 \times 96$: patch 16 (so $N = 36$),
width 512, MLP 2048, 8 heads, 2 blocks, dropout 0.1. The `d2l_vit` preset is that model; two details
of D2L's code matter for an exact match: its attention projections have no biases
(`qkv_bias=False, proj_bias=False`) and its LayerNorms use PyTorch's default $\epsilon = 10^{-5}$.
Chapter 05 copies weights between D2L's own code and this preset, shows the same logits and the same
training steps, and then trains both.
"""),
    code(r"""
from vitcourse.models.d2l_vit import D2L_CONFIG

d2l_model = create_model("d2l_vit")
c = d2l_model.config
pairs = [("img_size", "image_size"), ("patch_size", "patch_size"), ("num_hiddens", "dim"), ("mlp_num_hiddens", "mlp_dim"),
         ("num_heads", "heads"), ("num_blks", "depth"), ("emb_dropout", "dropout"), ("blk_dropout", "attn_dropout")]
print(f"{'D2L 11.8':16s} {'value':>6s}   {'ViTConfig':12s} {'value':>6s}")
for theirs, mine in pairs:
    print(f"{theirs:16s} {D2L_CONFIG[theirs]:>6}   {mine:12s} {getattr(c, mine):>6}")
    assert D2L_CONFIG[theirs] == getattr(c, mine)
print(f"\nparameters: {count_parameters(d2l_model):,} (D2L's code builds 6,457,866), "
      f"tokens N = {c.num_patches} + 1 class token, {flops['d2l_vit'] / 1e6:.0f} MFLOPs per image "
      f"vs {flops['vit_fmnist'] / 1e6:.0f} for vit_fmnist")
assert count_parameters(d2l_model) == 6_457_866

x96 = normalize(data.test_images[:4], image_size=96)  # (4, 1, 96, 96), as D2L resizes
with torch.no_grad():
    out = d2l_model.eval()(x96)
assert out.shape == (4, 10) and torch.isfinite(out).all()
print("d2l_vit on four 96x96 test images -> logits", tuple(out.shape))
"""),
    md(r"""
D2L's model costs about 18 times the FLOPs of `vit_fmnist` per image, mostly because resizing
$28 \times 28$ images to $96 \times 96$ adds pixels but no information, and its width of 512 is
large for 10 classes. Chapter 05 measures what that means in training speed and accuracy.

## Summary

- A ViT is: patch embedding, class token, position embeddings, $L$ pre-norm encoder blocks, a final
  LayerNorm and a linear head (Eqs. 1–4). Every block keeps the shape $(B, 1 + N, D)$.
- `ViTConfig` holds every hyper-parameter and refuses impossible ones with a clear message;
  `create_model(name, **overrides)` builds the presets: the paper's B/L/H, DeiT's Ti/S, D2L's model
  and small Fashion-MNIST models.
- Parameter counts equal timm's and torchvision's exactly (5,717,416 for Ti/16 up to 632,045,800 for
  H/14); two thirds of a large ViT's parameters are in the MLPs.
- FLOPs per image from `torch.utils.flop_counter` match DeiT's table once multiply-adds are counted
  as 2 FLOPs; attention matrices are a few percent at 224 px and grow quadratically with tokens.
- With weights mapped from timm and torchvision, the logits agree to float32 round-off: the model is
  the paper's model.

## References
- A. Dosovitskiy et al. *An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale.*
  ICLR 2021, §3.1, Table 1, Appendix D.3. [arXiv:2010.11929](https://arxiv.org/abs/2010.11929)
- H. Touvron, M. Cord, M. Douze, F. Massa, A. Sablayrolles, H. Jégou. *Training data-efficient image
  transformers & distillation through attention* (DeiT). ICML 2021, Table 1. [arXiv:2012.12877](https://arxiv.org/abs/2012.12877)
- A. Zhang, Z. C. Lipton, M. Li, A. J. Smola. *Dive into Deep Learning*, §11.8 "Transformers for
  Vision". [d2l.ai](https://d2l.ai/chapter_attention-mechanisms-and-transformers/vision-transformer.html)
- R. Wightman. *PyTorch Image Models (timm)*, `timm/models/vision_transformer.py`.
- TorchVision, `torchvision/models/vision_transformer.py`.
- PyTorch, `torch.utils.flop_counter.FlopCounterMode`.
"""),
]

if __name__ == "__main__":
    write_chapter("notebooks/04_vision_transformer.ipynb", "04 · The Vision Transformer", TEACHES, CELLS)
