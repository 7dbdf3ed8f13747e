"""Centred kernel alignment (CKA): how similar two layers' representations are, over the same images.

Linear CKA (Kornblith et al., ICML 2019) compares the (B, B) Gram matrices K = X Xᵀ and L = Y Yᵀ
of two layers' features X (B, p) and Y (B, q) on the same B images:

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

It is invariant to orthogonal transforms and isotropic scaling of either layer's features (not to
any invertible linear map), so layers of different widths, or of a ViT and a CNN, can be compared.

Two estimators:

- `linear_cka`: the full-batch, *biased* HSIC (centred features), Kornblith et al.'s direct formula
  ||Yᵀ X||_F² / (||Xᵀ X||_F ||Yᵀ Y||_F). It needs all B images at once, and it is biased upwards:
  unrelated features of width p score about p/B, not 0.
- `MinibatchCKA` / `cka_matrix`: the *unbiased* HSIC_1 of Song et al. (2012) computed on each
  minibatch's Gram matrices and averaged over minibatches, then combined into CKA (Nguyen, Raghu &
  Kornblith 2021, the estimator behind Raghu et al. 2021, "Do Vision Transformers See Like CNNs?").
  Memory is (batch, batch) per layer pair, never (N, N), so it runs over 10k images; unrelated
  features score about 0.

What the minibatch estimate does and does not depend on: it is the same (up to float rounding) for
any ORDER of the minibatches and any order of the images within a minibatch (HSIC_1 is symmetric in
the images, the average is a sum). It DOES depend on which images share a minibatch: another split
gives another estimate of the same quantity, different by sampling noise. With one minibatch
holding every image it is exactly the full-batch unbiased CKA.

Everything is computed in float64: the unbiased estimator subtracts terms of similar size, and the
Gram matrices of wide flattened features (ViT tokens: N * D values per image) have large entries.
"""
from __future__ import annotations

from typing import Sequence

import torch

MIN_BATCH = 4  # HSIC_1 divides by n (n - 3): a minibatch needs at least 4 images


def _check_features(name: str, x: torch.Tensor) -> int:
    """The batch size B of features (B, ...), checked."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, ...), got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must be (B, features) or (B, ...), got shape {tuple(x.shape)}")
    return x.shape[0]


def _features(name: str, x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, features) float64, checked."""
    _check_features(name, x)
    return x.reshape(x.shape[0], -1).to(torch.float64)  # (B, F)


def _num_images(name: str, feats: Sequence[torch.Tensor]) -> int:
    """The common N of a list of per-layer features (N, ...), checked."""
    if isinstance(feats, torch.Tensor) or not isinstance(feats, (list, tuple)) or not feats:
        raise ValueError(f"{name} must be a non-empty list of per-layer features (N, ...), "
                         f"got {type(feats).__name__}")
    sizes = [_check_features(f"{name}[{i}]", f) for i, f in enumerate(feats)]
    if len(set(sizes)) != 1:
        raise ValueError(f"every layer in {name} must hold the same images, got sizes {sizes}")
    return sizes[0]


def _check_gram(name: str, k: torch.Tensor) -> None:
    if not isinstance(k, torch.Tensor) or k.dim() != 2 or k.shape[0] != k.shape[1]:
        shape = tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
        raise ValueError(f"{name} must be a square (n, n) Gram matrix, got {shape}")
    if k.shape[0] < MIN_BATCH:
        raise ValueError(f"{name} must cover at least {MIN_BATCH} examples for the unbiased HSIC, "
                         f"got n={k.shape[0]}")


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Full-batch linear CKA with the biased HSIC: a float64 scalar in [0, 1].

    Args:
        x: features (B, ...) of one layer; flattened to (B, p).
        y: features (B, ...) of another layer on the same B images; flattened to (B, q).

    Returns:
        ||Yᵀ X||_F² / (||Xᵀ X||_F ||Yᵀ Y||_F) on column-centred X and Y. NaN when either layer is
        constant over the batch (its HSIC with itself is 0).
    """
    x, y = _features("x", x), _features("y", y)  # (B, p), (B, q)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same images: x has B={x.shape[0]}, y has B={y.shape[0]}")
    x = x - x.mean(dim=0, keepdim=True)  # centring the features = centring the Gram matrix (H K H)
    y = y - y.mean(dim=0, keepdim=True)
    # p x q, p x p and q x q products: cheaper than B x B Grams when the features are narrower than B.
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    return cross / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y))


def _hsic_pairs(ks: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC_1 of every pair: ks (I, n, n), ls (J, n, n) -> (I, J)."""
    n = ks.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=ks.device)
    ks = ks.masked_fill(eye, 0.0)  # K~: the estimator only uses pairs of distinct images
    ls = ls.masked_fill(eye, 0.0)
    k_rows, l_rows = ks.sum(dim=-1), ls.sum(dim=-1)  # (I, n), (J, n): K~ 1 and L~ 1
    trace = torch.einsum("ixy,jxy->ij", ks, ls)  # tr(K~ L~) (L~ is symmetric)
    sums = k_rows.sum(-1)[:, None] * l_rows.sum(-1)[None, :]  # (1ᵀ K~ 1)(1ᵀ L~ 1)
    middle = k_rows @ l_rows.T  # 1ᵀ K~ L~ 1
    return (trace + sums / ((n - 1) * (n - 2)) - 2.0 * middle / (n - 2)) / (n * (n - 3))


def _hsic_self(ks: torch.Tensor) -> torch.Tensor:
    """HSIC_1(K_i, K_i) of each layer: (I, n, n) -> (I,), without the I x I cross terms."""
    return torch.stack([_hsic_pairs(k[None], k[None])[0, 0] for k in ks])


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC_1 estimator (Song et al., 2012) of two Gram matrices: a float64 scalar.

    HSIC_1 = [tr(K~ L~) + 1ᵀK~1 1ᵀL~1 / ((n-1)(n-2)) - 2/(n-2) 1ᵀK~L~1] / (n(n-3)),
    with K~, L~ the Gram matrices with their diagonals set to 0.

    Args:
        k: (n, n) symmetric Gram matrix of one layer, n >= 4.
        l: (n, n) symmetric Gram matrix of another layer on the same n examples.
    """
    _check_gram("k", k)
    _check_gram("l", l)
    if k.shape != l.shape:
        raise ValueError(f"k and l must cover the same examples: k is {tuple(k.shape)}, l is {tuple(l.shape)}")
    return _hsic_pairs(k.to(torch.float64)[None], l.to(torch.float64)[None])[0, 0]


def _grams(name: str, feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-layer linear Gram matrices of one minibatch: list of (B, ...) -> (layers, B, B)."""
    _num_images(name, feats)
    flat = [_features(f"{name}[{i}]", f) for i, f in enumerate(feats)]  # each (B, F)
    return torch.stack([f @ f.T for f in flat])  # (layers, B, B)


class MinibatchCKA:
    """Accumulates minibatch unbiased HSIC terms; `compute()` gives the (La, Lb) CKA matrix.

    Usage: `acc = MinibatchCKA()`, then `acc.update(feats_a, feats_b)` once per minibatch (the same
    images through both models), then `acc.compute()`. Each minibatch counts equally, as in Nguyen
    et al.; give them the same size so no minibatch is noisier than the others.
    """

    def __init__(self) -> None:
        self.num_batches = 0
        self._cross: torch.Tensor | None = None  # (La, Lb): sum over minibatches of HSIC_1(K_i, L_j)
        self._self_a: torch.Tensor | None = None  # (La,): sum of HSIC_1(K_i, K_i)
        self._self_b: torch.Tensor | None = None  # (Lb,): sum of HSIC_1(L_j, L_j)

    def update(self, feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor] | None = None
               ) -> None:
        """Add one minibatch.

        Args:
            feats_a: per layer of model A, features (B, ...) of the minibatch, B >= 4.
            feats_b: per layer of model B on the SAME B images in the same order; None compares
                model A with itself.
        """
        ka = _grams("feats_a", feats_a)  # (La, B, B)
        kb = ka if feats_b is None else _grams("feats_b", feats_b)  # (Lb, B, B)
        if ka.shape[-1] != kb.shape[-1]:
            raise ValueError(f"feats_a and feats_b must hold the same images: batch size "
                             f"{ka.shape[-1]} vs {kb.shape[-1]}")
        if ka.shape[-1] < MIN_BATCH:
            raise ValueError(f"feats_a must hold at least {MIN_BATCH} images per minibatch for the "
                             f"unbiased HSIC, got B={ka.shape[-1]}")
        if self._cross is not None and self._cross.shape != (len(ka), len(kb)):
            raise ValueError(f"every update must have the same layers: first {tuple(self._cross.shape)}, "
                             f"now ({len(ka)}, {len(kb)})")
        cross = _hsic_pairs(ka, kb)  # (La, Lb)
        self_a = cross.diagonal() if feats_b is None else _hsic_self(ka)
        self_b = self_a if feats_b is None else _hsic_self(kb)
        if self._cross is None:
            self._cross, self._self_a, self._self_b = cross, self_a.clone(), self_b.clone()
        else:
            self._cross = self._cross + cross
            self._self_a = self._self_a + self_a
            self._self_b = self._self_b + self_b
        self.num_batches += 1

    def compute(self) -> torch.Tensor:
        """(La, Lb) float64 CPU matrix of CKA over all minibatches so far; NaN for a layer whose
        self-HSIC is not positive (constant features)."""
        if self._cross is None:
            raise ValueError("MinibatchCKA.compute() needs at least one update(), got none")
        # The 1 / num_batches of the averages cancels between numerator and denominator.
        denom = self._self_a[:, None] * self._self_b[None, :]  # (La, Lb)
        nan = torch.full_like(denom, float("nan"))
        cka = torch.where(denom > 0, self._cross / denom.clamp_min(1e-300).sqrt(), nan)
        return cka.cpu()


def cka_matrix(feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor] | None = None,
               batch_size: int = 256) -> torch.Tensor:
    """Minibatch unbiased CKA between every layer of A and every layer of B: (La, Lb) float64.

    For features already collected (e.g. `layer_outputs`); to stream a model over many images
    without keeping the features, feed `MinibatchCKA` from `iter_layer_outputs` instead.

    Args:
        feats_a: per layer of model A, features (N, ...) of the same N images.
        feats_b: per layer of model B on the same N images; None compares A with itself.
        batch_size: images per minibatch, >= 4. The images are taken in order; a last minibatch
            of fewer than 4 images joins the one before it.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < MIN_BATCH:
        raise ValueError(f"batch_size must be an int >= {MIN_BATCH}, got {batch_size!r}")
    n = _num_images("feats_a", feats_a)
    if feats_b is not None and _num_images("feats_b", feats_b) != n:
        raise ValueError(f"feats_a and feats_b must hold the same images: N={n} vs "
                         f"N={_num_images('feats_b', feats_b)}")
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < MIN_BATCH:
        starts.pop()  # too few for HSIC_1 on its own: merge into the previous minibatch
    acc = MinibatchCKA()
    for start, stop in zip(starts, starts[1:] + [n]):
        acc.update([f[start:stop] for f in feats_a],
                   None if feats_b is None else [f[start:stop] for f in feats_b])
    return acc.compute()
