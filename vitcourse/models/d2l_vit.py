"""D2L's Vision Transformer (Dive into Deep Learning, section 11.8), written the chapter's way.

The `d2l` package ships the chapter's building blocks (`d2l.MultiHeadAttention`, `d2l.Classifier`)
but not the ViT classes themselves; they are copied here from the chapter, unchanged in substance
(lazy layers, `save_hyperparameters`, post-hoc `X + attention(*([ln(X)] * 3))`), so that chapter 05
and ``python -m vitcourse bench`` compare against the book's own model instead of a re-write.

    model = build_d2l_vit()                       # lazy layers materialised on a dummy batch
    optimizer = model.configure_optimizers()      # SGD(lr=0.1), as d2l.Trainer uses it
    loss = d2l_train_step(model, optimizer, X, y)
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

# The chapter's hyper-parameters (D2L 11.8.4): 96x96 images, batch 128, SGD lr 0.1, 10 epochs.
D2L_CONFIG: dict[str, Any] = dict(img_size=96, patch_size=16, num_hiddens=512, mlp_num_hiddens=2048,
                                  num_heads=8, num_blks=2, emb_dropout=0.1, blk_dropout=0.1, lr=0.1)
D2L_BATCH_SIZE = 128
D2L_EPOCHS = 10


def _d2l():
    """`d2l.torch`, imported on first use (it pulls in pandas, IPython and matplotlib)."""
    try:
        from d2l import torch as d2l
    except ImportError:
        raise ImportError("D2L's package is needed for its reference ViT: pip install --no-deps "
                          "'d2l==1.0.3' pandas scipy  (--no-deps: its exact pins would replace torch; "
                          "`make setup` does this)") from None
    return d2l


class PatchEmbedding(nn.Module):
    def __init__(self, img_size=96, patch_size=16, num_hiddens=512):
        super().__init__()

        def _make_tuple(x):
            if not isinstance(x, (list, tuple)):
                return (x, x)
            return x
        img_size, patch_size = _make_tuple(img_size), _make_tuple(patch_size)
        self.num_patches = (img_size[0] // patch_size[0]) * (img_size[1] // patch_size[1])
        self.conv = nn.LazyConv2d(num_hiddens, kernel_size=patch_size, stride=patch_size)

    def forward(self, X):
        # Output shape: (batch size, no. of patches, no. of channels)
        return self.conv(X).flatten(2).transpose(1, 2)


class ViTMLP(nn.Module):
    def __init__(self, mlp_num_hiddens, mlp_num_outputs, dropout=0.5):
        super().__init__()
        self.dense1 = nn.LazyLinear(mlp_num_hiddens)
        self.gelu = nn.GELU()
        self.dropout1 = nn.Dropout(dropout)
        self.dense2 = nn.LazyLinear(mlp_num_outputs)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout2(self.dense2(self.dropout1(self.gelu(self.dense1(x)))))


class ViTBlock(nn.Module):
    def __init__(self, num_hiddens, norm_shape, mlp_num_hiddens, num_heads, dropout, use_bias=False):
        super().__init__()
        self.ln1 = nn.LayerNorm(norm_shape)
        self.attention = _d2l().MultiHeadAttention(num_hiddens, num_heads, dropout, use_bias)
        self.ln2 = nn.LayerNorm(norm_shape)
        self.mlp = ViTMLP(mlp_num_hiddens, num_hiddens, dropout)

    def forward(self, X, valid_lens=None):
        X = X + self.attention(*([self.ln1(X)] * 3), valid_lens)
        return X + self.mlp(self.ln2(X))


def _vit_class():
    """The chapter's `ViT(d2l.Classifier)`, defined when d2l is first needed."""
    d2l = _d2l()

    class ViT(d2l.Classifier):
        """Vision Transformer (D2L 11.8)."""

        def __init__(self, img_size, patch_size, num_hiddens, mlp_num_hiddens, num_heads,
                     num_blks, emb_dropout, blk_dropout, lr=0.1, use_bias=False, num_classes=10):
            super().__init__()
            self.save_hyperparameters()
            self.patch_embedding = PatchEmbedding(img_size, patch_size, num_hiddens)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, num_hiddens))
            num_steps = self.patch_embedding.num_patches + 1  # Add the cls token
            # Positional embeddings are learnable
            self.pos_embedding = nn.Parameter(torch.randn(1, num_steps, num_hiddens))
            self.dropout = nn.Dropout(emb_dropout)
            self.blks = nn.Sequential()
            for i in range(num_blks):
                self.blks.add_module(f"{i}", ViTBlock(num_hiddens, num_hiddens, mlp_num_hiddens,
                                                      num_heads, blk_dropout, use_bias))
            self.head = nn.Sequential(nn.LayerNorm(num_hiddens), nn.Linear(num_hiddens, num_classes))

        def forward(self, X):
            X = self.patch_embedding(X)
            X = torch.cat((self.cls_token.expand(X.shape[0], -1, -1), X), 1)
            X = self.dropout(X + self.pos_embedding)
            for blk in self.blks:
                X = blk(X)
            return self.head(X[:, 0])

    return ViT


def build_d2l_vit(**overrides: Any) -> nn.Module:
    """D2L's ViT with the chapter's hyper-parameters (`D2L_CONFIG`, overridable by keyword),
    its lazy layers materialised by one forward pass on a dummy batch (as d2l.Trainer does)."""
    unknown = set(overrides) - set(D2L_CONFIG) - {"use_bias", "num_classes"}
    if unknown:
        raise ValueError(f"unknown D2L ViT argument(s) {sorted(unknown)}; known: {sorted(D2L_CONFIG)}")
    config = {**D2L_CONFIG, **overrides}
    model = _vit_class()(**config)
    with torch.no_grad():
        model(torch.zeros(2, 1, config["img_size"], config["img_size"]))
    return model


def d2l_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
    """One step as d2l.Trainer takes it: fp32 forward, `model.loss`, zero_grad, backward, step."""
    loss = model.loss(model(X), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def copy_to_vitcourse(d2l_model: nn.Module, vit: nn.Module) -> nn.Module:
    """Copy D2L's ViT weights into vitcourse's `d2l_vit` (same architecture, other names).

    D2L keeps separate q, k, v projections; vitcourse stacks them into one `qkv` Linear in
    (q, k, v) order, heads contiguous inside each, as D2L's `transpose_qkv` splits them. D2L's
    projections have no biases: where `vit` has them (other presets), they are set to zero.
    """
    src = d2l_model.state_dict()
    if len(vit.blocks) != len(d2l_model.blks):
        raise ValueError(f"vit must have {len(d2l_model.blks)} blocks like the D2L model, got {len(vit.blocks)}")
    out = {"patch_embed.proj.weight": src["patch_embedding.conv.weight"],
           "patch_embed.proj.bias": src["patch_embedding.conv.bias"],
           "cls_token": src["cls_token"], "pos_embed": src["pos_embedding"],
           "norm.weight": src["head.0.weight"], "norm.bias": src["head.0.bias"],
           "head.weight": src["head.1.weight"], "head.bias": src["head.1.bias"]}
    for i in range(len(vit.blocks)):
        d, v = f"blks.{i}.", f"blocks.{i}."
        for a, b in (("ln1", "norm1"), ("ln2", "norm2")):
            out[v + b + ".weight"], out[v + b + ".bias"] = src[d + a + ".weight"], src[d + a + ".bias"]
        out[v + "attn.qkv.weight"] = torch.cat([src[d + f"attention.W_{x}.weight"] for x in "qkv"])
        out[v + "attn.proj.weight"] = src[d + "attention.W_o.weight"]
        for a, b in (("dense1", "fc1"), ("dense2", "fc2")):
            out[v + f"mlp.{b}.weight"], out[v + f"mlp.{b}.bias"] = src[d + f"mlp.{a}.weight"], src[d + f"mlp.{a}.bias"]
    target = vit.state_dict()
    for name, value in target.items():
        if name.endswith("attn.proj.bias"):
            value.zero_()
        elif name in out:
            value.copy_(out[name])
        elif name.endswith(("qkv.bias",)):
            value.zero_()
        else:
            raise ValueError(f"no D2L weight for vitcourse parameter {name!r}")
    return vit


def matching_parameters(vit: nn.Module) -> list[nn.Parameter]:
    """`vit`'s parameters that D2L's model also has (all but attention output biases, which D2L
    leaves out and `d2l_vit` does too): optimise these to follow D2L step for step."""
    return [p for n, p in vit.named_parameters() if not n.endswith("attn.proj.bias")]
