"""vitcourse.analysis.cka: linear CKA, the unbiased HSIC and its minibatch accumulator."""
from __future__ import annotations

from itertools import permutations

import pytest
import torch

from vitcourse.analysis import MinibatchCKA, cka_matrix, hsic_unbiased, linear_cka


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def related(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """X (n, 32) and Y (n, 48) = a linear map of X plus noise: a CKA well inside (0, 1)."""
    x = randn(n, 32, seed=seed)
    y = x @ randn(32, 48, seed=seed + 1) + 2 * randn(n, 48, seed=seed + 2)
    return x, y


def full_batch_unbiased_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The direct computation on the (N, N) Gram matrices of all the data."""
    k, l = x @ x.T, y @ y.T
    return hsic_unbiased(k, l) / (hsic_unbiased(k, k) * hsic_unbiased(l, l)).sqrt()


def orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(randn(d, d, seed=seed))
    return q


# ---------------------------------------------------------------- the unbiased HSIC
def test_hsic_unbiased_equals_the_u_statistic_by_brute_force():
    # HSIC = E[k_ij l_ij] + E[k_ij] E[l_qr] - 2 E[k_ij l_iq], each mean over DISTINCT indices.
    n = 7
    k, l = (lambda a: a @ a.T)(randn(n, 3, seed=1)), (lambda b: b @ b.T)(randn(n, 2, seed=2))
    t1 = sum(k[i, j] * l[i, j] for i, j in permutations(range(n), 2)) / (n * (n - 1))
    t3 = sum(k[i, j] * l[i, q] for i, j, q in permutations(range(n), 3)) / (n * (n - 1) * (n - 2))
    t2 = sum(k[i, j] * l[q, r] for i, j, q, r in permutations(range(n), 4)) / (n * (n - 1) * (n - 2) * (n - 3))
    assert hsic_unbiased(k, l).item() == pytest.approx((t1 + t2 - 2 * t3).item(), rel=1e-10)


def test_hsic_unbiased_ignores_the_diagonal():
    k, l = (lambda a: a @ a.T)(randn(9, 4, seed=3)), (lambda b: b @ b.T)(randn(9, 4, seed=4))
    torch.testing.assert_close(hsic_unbiased(k + torch.diag(randn(9, seed=5)), l), hsic_unbiased(k, l))


# ---------------------------------------------------------------- linear_cka (full batch, biased)
def test_linear_cka_of_a_layer_with_itself_is_one():
    x = randn(64, 20)
    assert linear_cka(x, x).item() == pytest.approx(1.0, abs=1e-12)
    assert cka_matrix([x], batch_size=16).item() == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_is_the_biased_hsic_ratio_of_centred_grams():
    x, y = related(100)
    h = torch.eye(100, dtype=torch.float64) - 1 / 100  # centring matrix
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    expected = (k * l).sum() / ((k * k).sum() * (l * l).sum()).sqrt()  # tr(KHLH) / ...
    torch.testing.assert_close(linear_cka(x, y), expected)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x, y = related(256)
    q = orthogonal(32, seed=9)
    for est in (linear_cka, lambda a, b: cka_matrix([a], [b], batch_size=64)[0, 0]):
        base = est(x, y)
        torch.testing.assert_close(est(x @ q, y), base, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(est(3.5 * x, 0.01 * y), base, rtol=1e-10, atol=1e-12)


def test_cka_is_not_invariant_to_an_arbitrary_linear_map():
    x, y = related(256)
    stretch = torch.diag(torch.linspace(0.1, 10, 32, dtype=torch.float64))
    assert abs(linear_cka(x @ stretch, y) - linear_cka(x, y)) > 0.05


def test_unbiased_cka_of_independent_features_is_near_zero_unlike_the_biased_one():
    x, y = randn(1024, 64, seed=10), randn(1024, 64, seed=11)
    unbiased = cka_matrix([x], [y], batch_size=256).item()
    biased = linear_cka(x, y).item()
    assert abs(unbiased) < 0.02  # measured 0.004
    assert biased > 0.04  # ~ p / N = 64 / 1024 = 0.06: the bias the unbiased HSIC removes


def test_cka_of_constant_features_is_nan():
    assert torch.isnan(cka_matrix([torch.ones(8, 3)], [randn(8, 3)], batch_size=8)).all()


# ---------------------------------------------------------------- minibatch vs full batch
def test_one_minibatch_is_exactly_the_full_batch_unbiased_cka():
    x, y = related(200)
    torch.testing.assert_close(cka_matrix([x], [y], batch_size=200)[0, 0], full_batch_unbiased_cka(x, y),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch_size, tol", [(128, 0.005), (64, 0.01)])
def test_minibatch_cka_agrees_with_the_full_batch_unbiased_cka(batch_size, tol):
    # Measured on these 512 examples (CKA 0.747): |difference| 1.4e-4 at 128, 3.0e-3 at 64;
    # smaller minibatches give noisier ratios, hence the looser bound.
    x, y = related(512)
    full = full_batch_unbiased_cka(x, y).item()
    assert 0.6 < full < 0.9
    assert cka_matrix([x], [y], batch_size=batch_size).item() == pytest.approx(full, abs=tol)


def test_the_accumulator_ignores_the_order_of_minibatches_and_of_images_within_them():
    x, y = related(256)
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 256, 64)]
    forward, backward, shuffled = MinibatchCKA(), MinibatchCKA(), MinibatchCKA()
    for xb, yb in batches:
        forward.update([xb], [yb])
    for xb, yb in reversed(batches):
        backward.update([xb], [yb])
    for j, (xb, yb) in enumerate(batches):
        perm = torch.randperm(64, generator=torch.Generator().manual_seed(j))
        shuffled.update([xb[perm]], [yb[perm]])
    torch.testing.assert_close(backward.compute(), forward.compute(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(shuffled.compute(), forward.compute(), rtol=1e-12, atol=1e-12)
    assert forward.num_batches == 4


def test_another_split_into_minibatches_gives_another_estimate_of_the_same_cka():
    # Not invariant: which images share a minibatch changes the estimate, by sampling noise only.
    x, y = related(512)
    perm = torch.randperm(512, generator=torch.Generator().manual_seed(0))
    a = cka_matrix([x], [y], batch_size=64).item()
    b = cka_matrix([x[perm]], [y[perm]], batch_size=64).item()
    assert a != b
    assert a == pytest.approx(b, abs=0.01)


def test_cka_matrix_compares_every_layer_pair_and_flattens_features():
    x, y = related(96)
    maps = x.reshape(96, 2, 4, 4)  # (B, C, H, W): flattened to (B, 32), same as x
    m = cka_matrix([x, maps, y], [y, x], batch_size=32)
    assert m.shape == (3, 2) and m.dtype == torch.float64
    torch.testing.assert_close(m[0], m[1])
    torch.testing.assert_close(m[0, 1], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(m[2, 0], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(m[0, 0], m[2, 1])  # CKA is symmetric


def test_self_comparison_matrix_is_symmetric_with_a_unit_diagonal():
    x, y = related(128)
    m = cka_matrix([x, y, x[:, :5]], batch_size=32)
    torch.testing.assert_close(m, m.T)
    torch.testing.assert_close(m.diagonal(), torch.ones(3, dtype=torch.float64))


def test_a_short_last_minibatch_joins_the_previous_one():
    x, y = related(66)  # 64 + 2: a minibatch of 2 would have no unbiased HSIC
    assert torch.isfinite(cka_matrix([x], [y], batch_size=32)).all()


# ---------------------------------------------------------------- bad arguments
def test_bad_shapes_raise_value_errors_naming_the_argument():
    x = randn(16, 4)
    with pytest.raises(ValueError, match="x must be"):
        linear_cka(randn(16), x)
    with pytest.raises(ValueError, match="x and y must hold the same images"):
        linear_cka(x, randn(15, 4))
    with pytest.raises(ValueError, match=r"k must be a square \(n, n\)"):
        hsic_unbiased(randn(4, 5), randn(4, 4))
    with pytest.raises(ValueError, match="at least 4"):
        hsic_unbiased(randn(3, 3), randn(3, 3))
    with pytest.raises(ValueError, match="k and l must cover the same examples"):
        hsic_unbiased(randn(5, 5), randn(6, 6))
    with pytest.raises(ValueError, match=r"feats_a\[1\] must be"):
        cka_matrix([x, randn(16)], batch_size=8)
    with pytest.raises(ValueError, match="every layer in feats_b must hold the same images"):
        cka_matrix([x], [x, randn(12, 4)], batch_size=8)
    with pytest.raises(ValueError, match="feats_a and feats_b must hold the same images"):
        cka_matrix([x], [randn(12, 4)], batch_size=8)
    with pytest.raises(ValueError, match="feats_a must be a non-empty list"):
        cka_matrix(x, batch_size=8)
    with pytest.raises(ValueError, match="batch_size must be an int >= 4"):
        cka_matrix([x], batch_size=3)


def test_the_accumulator_rejects_small_or_changing_batches():
    acc = MinibatchCKA()
    with pytest.raises(ValueError, match="compute"):
        acc.compute()
    with pytest.raises(ValueError, match="at least 4 images"):
        acc.update([randn(3, 2)])
    acc.update([randn(8, 2)], [randn(8, 3)])
    with pytest.raises(ValueError, match="same layers"):
        acc.update([randn(8, 2), randn(8, 2)], [randn(8, 3)])
    with pytest.raises(ValueError, match="feats_a and feats_b must hold the same images"):
        acc.update([randn(8, 2)], [randn(9, 3)])
