"""Augmentations: reproducible from one generator, shape-preserving, and each op does what it says."""
import ast
import inspect

import numpy as np
import pytest
import torch

import vitcourse.augment as augment
from vitcourse.augment import (GEOMETRIC_OPS, TRIVIAL_MAGNITUDES, TRIVIAL_OPS, apply_op, mix_batch,
                               random_erasing, sample_trivial_ops, trivial_augment)

# Fashion-MNIST's constants, written out: the module under test must not need vitcourse.data.
MEAN, STD = 0.2860, 0.3530
LOW, HIGH = (0 - MEAN) / STD, (1 - MEAN) / STD


def shirt(h: int = 28, w: int = 28) -> torch.Tensor:
    """A shirt-like item in [0, 1]: a textured body and sleeves on black, brightest 0.8 (so
    autocontrast changes it) and odd 8-bit values (so posterize at 7 bits changes it)."""
    img = torch.zeros(h, w)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    texture = 0.5 + 0.3 * torch.sin(yy * 0.9) * torch.cos(xx * 0.7)
    body = (yy >= h // 5) & (yy < h - 2) & (xx >= w // 3) & (xx < w - w // 3)
    sleeves = (yy >= h // 5) & (yy < h // 2) & (xx >= w // 6) & (xx < w - w // 6)
    img = torch.where(body | sleeves, texture, img)
    img = ((img * 255).round() // 2 * 2 + 1) / 255 * (img > 0)  # odd 8-bit levels on the item
    return img[None]  # (1, H, W)


def normalised_batch(n: int, h: int = 28, w: int = 28, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x01 = (torch.rand(n, 1, h, w, generator=g) * 255).round() / 255
    return (x01 - MEAN) / STD


def run(fn_name: str, seed: int, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(x.shape[0]) % 10
    if fn_name == "trivial_augment":
        return (trivial_augment(x, g, mean=MEAN, std=STD),)
    if fn_name == "random_erasing":
        return (random_erasing(x, 0.5, g),)
    return mix_batch(x, y, 10, g, mixup_alpha=0.8, cutmix_alpha=1.0)


FUNCTIONS = ["trivial_augment", "random_erasing", "mix_batch"]


# --- reproducibility ---------------------------------------------------------------------------

@pytest.mark.parametrize("fn_name", FUNCTIONS)
def test_same_seed_gives_identical_output_and_another_seed_differs(fn_name):
    x = normalised_batch(64)
    a, b = run(fn_name, 1, x), run(fn_name, 1, x)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    # mix_batch may pick Mixup for one seed and CutMix for another; any difference counts.
    assert any(not torch.equal(u, v) for seed in (2, 3) for u, v in zip(a, run(fn_name, seed, x)))


@pytest.mark.parametrize("fn_name", FUNCTIONS)
def test_global_rng_states_are_untouched(fn_name):
    x = normalised_batch(32)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    for seed in range(4):
        run(fn_name, seed, x)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def test_module_does_not_import_vitcourse_data():
    tree = ast.parse(inspect.getsource(augment))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [f"{n.level}:{n.module}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not any("data" in name or name.startswith(("1:", "2:")) for name in names), names


# --- shapes, dtypes, range ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(28, 28), (20, 33)])
def test_shape_dtype_and_device_are_preserved(dtype, size):
    x = normalised_batch(16, *size).to(dtype)
    g = torch.Generator().manual_seed(0)
    for out in (trivial_augment(x, g, mean=MEAN, std=STD), random_erasing(x, 1.0, g),
                mix_batch(x, torch.arange(16) % 10, 10, g, mixup_alpha=1.0)[0],
                mix_batch(x, torch.arange(16) % 10, 10, g, cutmix_alpha=1.0)[0]):
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    targets = mix_batch(x, torch.arange(16) % 10, 10, g, mixup_alpha=1.0)[1]
    assert targets.shape == (16, 10) and targets.dtype == torch.float32


def test_trivial_augment_stays_in_the_standardised_image_range():
    x = normalised_batch(512)
    out = trivial_augment(x, torch.Generator().manual_seed(0), mean=MEAN, std=STD)
    assert out.min() >= LOW - 1e-5 and out.max() <= HIGH + 1e-5


# --- apply_op ----------------------------------------------------------------------------------

def test_identity_returns_the_input():
    x = shirt()[None]
    assert torch.equal(apply_op(x, "identity", 5.0), x)


@pytest.mark.parametrize("name", sorted(GEOMETRIC_OPS))
def test_geometric_ops_at_magnitude_zero_return_the_input(name):
    x = torch.rand(3, 1, 28, 20, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(apply_op(x, name, 0.0), x, atol=1e-5)


@pytest.mark.parametrize("k", [1, 3, -2])
def test_translate_moves_a_pixel_by_whole_pixels(k):
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 12] = 1.0
    right = apply_op(x, "translate_x", float(k))
    down = apply_op(x, "translate_y", float(k))
    expected_right, expected_down = torch.zeros_like(x), torch.zeros_like(x)
    expected_right[0, 0, 10, 12 + k] = 1.0
    expected_down[0, 0, 10 + k, 12] = 1.0
    assert torch.allclose(right, expected_right, atol=1e-5)
    assert torch.allclose(down, expected_down, atol=1e-5)


def test_translate_fills_the_uncovered_border_with_black():
    out = apply_op(torch.ones(1, 1, 28, 28), "translate_x", 3.0)
    assert torch.allclose(out[..., :3], torch.zeros(1), atol=1e-5)
    assert torch.allclose(out[..., 3:], torch.ones(1), atol=1e-5)


def test_rotate_by_90_degrees_turns_right_of_centre_into_above_centre():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 6] = 1.0  # two pixels right of the centre pixel (4, 4)
    out = apply_op(x, "rotate", 90.0)
    expected = torch.zeros_like(x)
    expected[0, 0, 2, 4] = 1.0  # counter-clockwise: now two pixels above it
    assert torch.allclose(out, expected, atol=1e-5)


def test_shear_x_shifts_rows_in_proportion_to_their_distance_from_the_centre():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 8, 4] = 1.0  # bottom row, centre column: 4 rows below the centre
    out = apply_op(x, "shear_x", 0.5)  # x_in = x + 0.5 * y: the bottom row moves 2 px left
    assert out[0, 0, 8].argmax().item() == 2 and torch.isclose(out.sum(), torch.tensor(1.0))


@pytest.mark.parametrize("name", ["brightness", "contrast", "sharpness"])
def test_blend_ops_with_factor_one_are_identity(name):
    x = shirt()[None]
    assert torch.equal(apply_op(x, name, 0.0), x)  # magnitude = factor - 1


def test_brightness_and_contrast_scale_as_their_factor_says():
    x = torch.full((1, 1, 4, 4), 0.4)
    x[..., 0, 0] = 0.8
    assert torch.allclose(apply_op(x, "brightness", -0.5), x * 0.5)
    mean = x.mean()
    assert torch.allclose(apply_op(x, "contrast", 0.5), mean + 1.5 * (x - mean))


def test_sharpness_keeps_a_flat_image_and_the_border():
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(apply_op(flat, "sharpness", 0.9), flat)
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = apply_op(x, "sharpness", 0.9)
    border = torch.ones(8, 8, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    assert torch.equal(out[..., border], x[..., border])
    assert not torch.allclose(out, x)


def test_solarize_threshold_one_is_identity_and_zero_inverts():
    x = shirt()[None]
    assert torch.equal(apply_op(x, "solarize", 1.0), x)
    item = x > 0
    assert torch.allclose(apply_op(x, "solarize", 0.0)[item], 1 - x[item])
    assert torch.equal(apply_op(x, "solarize", 0.0)[~item], x[~item])  # black stays black


def test_posterize_with_8_bits_is_identity_and_1_bit_binarises():
    x = shirt()[None]
    assert torch.equal(apply_op(x, "posterize", 8.0), x)
    one_bit = apply_op(x, "posterize", 1.0)
    assert torch.all((one_bit == 0) | (one_bit == torch.tensor(128 / 255)))
    assert (one_bit > 0).any() and (one_bit == 0).any()
    assert not torch.equal(apply_op(x, "posterize", 7.0), x)


def test_autocontrast_stretches_the_range_to_zero_one():
    x = 0.2 + 0.4 * torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.2, 0.6
    out = apply_op(x, "autocontrast", 0.0)
    assert out.amin(dim=(1, 2, 3)).tolist() == [0.0, 0.0]
    assert out.amax(dim=(1, 2, 3)).tolist() == [1.0, 1.0]
    assert torch.allclose(out, (x - 0.2) / 0.4, atol=1e-6)
    flat = torch.full((1, 1, 4, 4), 0.5)
    assert torch.equal(apply_op(flat, "autocontrast", 0.0), flat)


def test_unknown_op_name_raises_a_value_error_naming_it():
    with pytest.raises(ValueError, match="name must be one of .*'equalize'"):
        apply_op(torch.zeros(1, 1, 4, 4), "equalize", 0.0)


# --- trivial_augment ---------------------------------------------------------------------------

def test_op_list_and_ranges_match():
    assert set(TRIVIAL_MAGNITUDES) == set(TRIVIAL_OPS) and len(set(TRIVIAL_OPS)) == 12
    assert "equalize" not in TRIVIAL_OPS and "color" not in TRIVIAL_OPS


def test_every_op_is_drawn_and_each_image_gets_exactly_its_op():
    n = 512
    x01 = shirt().expand(n, 1, 28, 28).contiguous()
    x = (x01 - MEAN) / STD
    ops, mags = sample_trivial_ops(n, 28, 28, torch.Generator().manual_seed(7))
    assert set(ops.tolist()) == set(range(len(TRIVIAL_OPS)))
    out = trivial_augment(x, torch.Generator().manual_seed(7), mean=MEAN, std=STD)
    for k, name in enumerate(TRIVIAL_OPS):  # the first image of each op, redone alone
        i = int((ops == k).nonzero()[0])
        lo, hi = sorted(TRIVIAL_MAGNITUDES[name])
        scale = 28 if name.startswith("translate") else 1
        assert lo * scale - 1e-9 <= abs(float(mags[i])) <= hi * scale + 1e-9
        expected = (apply_op(x01[i:i + 1], name, float(mags[i])) - MEAN) / STD
        assert torch.allclose(out[i:i + 1], expected, atol=1e-5), name


def test_about_one_image_in_twelve_comes_back_unchanged():
    n = 512
    x = ((shirt() - MEAN) / STD).expand(n, 1, 28, 28).contiguous()
    out = trivial_augment(x, torch.Generator().manual_seed(0), mean=MEAN, std=STD)
    unchanged = (out - x).abs().amax(dim=(1, 2, 3)) < 1e-5
    # identity is 1/12 = 0.083; magnitude-0 bins and solarize above the item's 0.8 add ~0.05.
    assert 0.05 < unchanged.float().mean().item() < 0.2


def test_trivial_augment_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_magnitude_bins"):
        trivial_augment(normalised_batch(2), torch.Generator(), mean=MEAN, std=STD,
                        num_magnitude_bins=1)
    with pytest.raises(ValueError, match="std"):
        trivial_augment(normalised_batch(2), torch.Generator(), mean=MEAN, std=0.0)
    with pytest.raises(ValueError, match="x must be"):
        trivial_augment(torch.zeros(2, 28, 28), torch.Generator(), mean=MEAN, std=STD)


# --- random_erasing ----------------------------------------------------------------------------

def test_erasing_with_p_zero_returns_the_input():
    x = normalised_batch(8)
    assert random_erasing(x, 0.0, torch.Generator()) is x


@pytest.mark.parametrize("size", [(28, 28), (16, 40)])
def test_erasing_with_p_one_erases_one_rectangle_per_image_within_scale(size):
    h, w = size
    x = normalised_batch(300, h, w) + 5.0  # nowhere equal to the fill value
    scale = (0.02, 0.33)
    out = random_erasing(x, 1.0, torch.Generator().manual_seed(0), scale=scale, value=-1.5)
    erased = out != x  # (B, 1, H, W)
    assert torch.all(out[erased] == -1.5)
    fraction = erased.float().mean(dim=(1, 2, 3))
    assert fraction.min() >= scale[0] * 0.5 and fraction.max() <= scale[1]  # sides rounded down
    rows, cols = erased.any(dim=3)[:, 0], erased.any(dim=2)[:, 0]  # (B, H), (B, W)
    assert torch.equal(erased[:, 0].sum(dim=(1, 2)), rows.sum(1) * cols.sum(1))  # a rectangle


def test_erasing_with_p_half_erases_about_half_the_images():
    x = normalised_batch(1000) + 5.0
    out = random_erasing(x, 0.5, torch.Generator().manual_seed(0))
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.4 < changed < 0.6


@pytest.mark.parametrize("kwargs, match", [
    (dict(p=1.5), "p must be in"), (dict(p=-0.1), "p must be in"),
    (dict(p=0.5, scale=(0.3, 0.1)), "scale must be"), (dict(p=0.5, scale=(0.0, 0.1)), "scale"),
    (dict(p=0.5, scale=(0.1, 1.5)), "scale"), (dict(p=0.5, ratio=(3.0, 0.3)), "ratio must be"),
    (dict(p=0.5, ratio=(-1.0, 2.0)), "ratio"),
])
def test_erasing_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_erasing(normalised_batch(2), generator=torch.Generator(), **kwargs)


# --- mix_batch ---------------------------------------------------------------------------------

def lam_from_targets(targets: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    differs = y != y.flip(0)
    return targets[differs, y[differs]]  # (n,) the weight of each image's own label


@pytest.mark.parametrize("seed", range(4))
def test_mixup_is_the_convex_blend_its_targets_describe(seed):
    x, y = normalised_batch(32, seed=seed), torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(seed))
    out, targets = mix_batch(x, y, 10, torch.Generator().manual_seed(seed), mixup_alpha=0.4)
    assert torch.allclose(targets.sum(1), torch.ones(32)) and targets.min() >= 0
    lam = lam_from_targets(targets, y)
    assert torch.allclose(lam, lam[0].expand_as(lam))  # one lam per batch
    lam = lam[0].item()
    assert torch.allclose(out, lam * x + (1 - lam) * x.flip(0), atol=1e-6)


@pytest.mark.parametrize("size", [(28, 28), (15, 30)])
@pytest.mark.parametrize("seed", range(6))
def test_cutmix_pastes_a_box_whose_area_is_one_minus_lam(seed, size):
    # Continuous values (not 8-bit levels), so that x and its partner never agree by chance.
    x = torch.randn(16, 1, *size, generator=torch.Generator().manual_seed(100 + seed))
    y = torch.arange(16) % 10
    out, targets = mix_batch(x, y, 10, torch.Generator().manual_seed(seed), cutmix_alpha=1.0)
    assert torch.allclose(targets.sum(1), torch.ones(16)) and targets.min() >= 0
    own, partner = out == x, out == x.flip(0)
    assert torch.all(own ^ partner)  # every pixel from exactly one of the two
    partner_fraction = partner.float().mean(dim=(1, 2, 3))  # (B,)
    lam = lam_from_targets(targets, y)
    assert torch.allclose(partner_fraction, 1 - lam, atol=1e-6)


def test_switch_prob_chooses_between_mixup_and_cutmix():
    x, y = normalised_batch(8), torch.arange(8)
    kinds = []
    for seed in range(40):
        out, _ = mix_batch(x, y, 10, torch.Generator().manual_seed(seed), mixup_alpha=1.0,
                           cutmix_alpha=1.0, switch_prob=0.5)
        kinds.append(bool(torch.all((out == x) | (out == x.flip(0)))))  # True: CutMix
    assert 5 < sum(kinds) < 35
    for p, expected in ((0.0, False), (1.0, True)):
        out, _ = mix_batch(x, y, 10, torch.Generator().manual_seed(1), mixup_alpha=1.0,
                           cutmix_alpha=1.0, switch_prob=p)
        assert bool(torch.all((out == x) | (out == x.flip(0)))) is expected


def test_zero_alphas_give_the_input_and_one_hot_targets():
    x, y = normalised_batch(8), torch.tensor([0, 3, 9, 1, 1, 2, 5, 7])
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    out, targets = mix_batch(x, y, 10, g)
    assert out is x and targets.dtype == torch.float32
    assert torch.equal(targets, torch.nn.functional.one_hot(y, 10).float())
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mixup_alpha=-1.0), "mixup_alpha"), (dict(cutmix_alpha=-0.5), "cutmix_alpha"),
    (dict(num_classes=0), "num_classes"), (dict(switch_prob=2.0), "switch_prob"),
    (dict(y=torch.arange(3)), "y must be"), (dict(y=torch.zeros(4)), "y must be"),
    (dict(y=torch.tensor([0, 1, 2, 10])), r"y must lie in \[0, 10\)"),
    (dict(y=torch.tensor([0, -1, 2, 3])), "y must lie"),
])
def test_mix_batch_rejects_bad_arguments(kwargs, match):
    args = dict(x=normalised_batch(4), y=torch.arange(4), num_classes=10,
                generator=torch.Generator(), mixup_alpha=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mix_batch(**args)
