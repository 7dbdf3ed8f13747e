"""Chapter 12's measured facts, from the committed results of ``make robustness``:

* ``data/results/robustness.csv``: accuracy per model, corruption and strength (10,000 test
  images; the attacks on a 1,000-image subset);
* ``data/results/cka.csv``: the layer-by-layer CKA of each model with itself and of the ViT with
  the ResNet;
* the shipped ViT, ``data/checkpoints/vit_fmnist.pt``: its mean attention distance on the first
  2,000 Fashion-MNIST test images (the one model evaluation here, ~5-10 s on two CPU cores).

Ported from the deleted generator ``tools/chapters/ch12.py`` (its ``measured()`` and
``discussions()``, the discussions A-E). Accuracies are in percent with one decimal, CKA values
are strings with two decimals (the prose shows "0.60", which a float would write "0.6"), the
ViT-minus-ResNet gaps are signed strings ("+14.9"), as the prose quotes them. ``accuracies``,
``cka`` and ``attention_distances`` are what the claims test (tests/test_vit_vs_cnn.py) reads
for the claims that quote no number.
"""
from __future__ import annotations

import torch

from vitcourse.experiments.vit_vs_cnn import CKA_CSV, ROBUSTNESS_CSV, read_cka, read_robustness

CHAPTER = "12_vit_vs_cnn"
V, R = "vit_fmnist", "resnet_fmnist"
SHORT = {V: "vit", R: "resnet"}  # the models as fact names spell them
DISTANCE_IMAGES = 2_000  # the test images the attention distance is averaged over, as the chapter's cell does
ATTACK_P = 0.85  # the accuracy both models keep at 1/255, where the attacks' standard error is quoted


def accuracies() -> dict[tuple[str, str, float], float]:
    """{(model, corruption, strength): accuracy in %} from robustness.csv."""
    return {(r["model"], r["corruption"], float(r["strength"])): 100 * r["accuracy"]
            for r in read_robustness(ROBUSTNESS_CSV)}


def images() -> dict[str, int]:
    """{corruption: the number of test images it was measured on}."""
    return {r["corruption"]: r["images"] for r in read_robustness(ROBUSTNESS_CSV)}


def cka() -> dict[tuple[str, str], torch.Tensor]:
    """{(model_a, model_b): the (layers, layers) CKA matrix} from cka.csv."""
    return read_cka(CKA_CSV)


def off_diagonal(m: torch.Tensor) -> float:
    """The mean CKA between *different* layers of one model."""
    return float(m[~torch.eye(*m.shape, dtype=torch.bool)].mean())


def attention_distances() -> torch.Tensor:
    """The shipped ViT's mean attention distance in pixels, (layers, heads), on the first
    `DISTANCE_IMAGES` test images: what the generator computed (the chapter's cell does the same
    on the images it loads)."""
    from vitcourse.analysis import model_attention_distance
    from vitcourse.data import load_fashion_mnist
    from vitcourse.training.checkpoint import load_pretrained

    test_images, _ = load_fashion_mnist("test")
    with torch.inference_mode():
        return model_attention_distance(load_pretrained(V), test_images[:DISTANCE_IMAGES])


def attack_standard_error(n: int, p: float = ATTACK_P) -> float:
    """The binomial standard error, in points, of an accuracy near `p` measured on `n` images."""
    return 100 * (p * (1 - p) / n) ** 0.5


def facts() -> dict[str, str | int | float]:
    """The numbers chapter 12's discussions (a)-(e) quote, by name."""
    acc = accuracies()
    out: dict[str, str | int | float] = {}

    def both(corruption: str, strength: float, label: str) -> None:
        """Each model's accuracy, `vit_<label>` and `resnet_<label>`, in % with one decimal."""
        for model, short in SHORT.items():
            out[f"{short}_{label}"] = round(acc[(model, corruption, float(strength))], 1)

    def lead(corruption: str, strength: float, label: str) -> None:
        """The ViT's accuracy minus the ResNet's, in points, signed as the prose shows it."""
        out[f"vit_minus_resnet_{label}"] = f"{acc[(V, corruption, float(strength))] - acc[(R, corruption, float(strength))]:+.1f}"

    # (a) CKA: the mean between different layers, first vs last; across the models
    matrices = cka()
    for model, short in SHORT.items():
        m = matrices[(model, model)]
        out[f"cka_{short}_off_diagonal"] = f"{off_diagonal(m):.2f}"
        out[f"cka_{short}_first_last"] = f"{float(m[0, -1]):.2f}"
    out["cka_vit_resnet_mean"] = f"{float(matrices[(V, R)].mean()):.2f}"
    # (a) "global early": each head of the first layer (one fact per head, not a joined list: the
    # Japanese edition separates them with "、"), and the range of the layers' means over heads
    distance = attention_distances()
    for head, d in enumerate(distance[0], start=1):
        out[f"attention_distance_layer1_head{head}"] = round(float(d), 1)
    layer_means = distance.mean(1)
    out["attention_distance_layer_min"] = round(float(layer_means.min()), 1)
    out["attention_distance_layer_max"] = round(float(layer_means.max()), 1)

    # (b) occlusion and shuffling
    both("clean", 0, "clean")
    out["resnet_minus_vit_clean"] = round(acc[(R, "clean", 0.0)] - acc[(V, "clean", 0.0)], 1)
    for corruption in ("patch_drop_random_7", "patch_drop_random_4", "patch_drop_centre_7"):
        both(corruption, 0.5, f"{corruption}_50pct")
    lead("patch_drop_random_7", 0.5, "patch_drop_random_7_50pct")
    lead("patch_drop_random_7", 0.1, "patch_drop_random_7_10pct")
    lead("patch_drop_centre_7", 0.25, "patch_drop_centre_7_25pct")
    both("patch_shuffle", 4, "patch_shuffle_4x4")

    # (c) Fourier filters, by radius in cycles per image
    for radius in (4, 2):
        both("low_pass", radius, f"low_pass_r{radius}")
    lead("low_pass", 4, "low_pass_r4")
    for radius in (4, 6):
        both("high_pass", radius, f"high_pass_r{radius}")

    # (d) attacks, eps in grey levels out of 255; the standard error of the attacks' subset
    n_attack = images()["pgd"]
    out["attack_images"] = f"{n_attack:,}"  # "1,000": below 10,000 an int would read "1000"
    out["attack_standard_error"] = round(attack_standard_error(n_attack), 1)
    for attack, eps in (("fgsm", 1), ("pgd", 1), ("pgd", 8), ("pgd", 16), ("fgsm", 8)):
        both(attack, eps, f"{attack}_eps{eps}")

    # (e) Gaussian noise, by signal-to-noise ratio in dB
    for snr in (20, 10, 5, 0):
        both("gaussian_noise", snr, f"gaussian_noise_{snr}db")
    lead("gaussian_noise", 10, "gaussian_noise_10db")
    gaps = [acc[(V, "gaussian_noise", float(s))] - acc[(R, "gaussian_noise", float(s))] for s in (10, 5)]
    out["vit_minus_resnet_gaussian_noise_10_5db_range"] = f"{min(gaps):.0f}-{max(gaps):.0f}"  # "20-31" points
    return out
