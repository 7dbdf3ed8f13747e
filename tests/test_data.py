"""Fashion-MNIST: found, checksummed by content, batched correctly; a clear error when missing."""

import numpy as np
import pytest
import torch

import vitcourse.data as data
from vitcourse.data import (CLASS_NAMES, MEAN, STD, Augmentation, DataNotFoundError, TensorLoader, content_sha256,
                            find_fashion_mnist, load_data, normalize, parse_idx, stratified_subset)


def test_files_match_published_content_checksums():
    assert content_sha256(find_fashion_mnist(download=False)) == data.SHA256


def test_splits_have_the_published_sizes_and_balance(fmnist):
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = fmnist[split]
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert torch.bincount(labels).tolist() == [n // 10] * 10
    assert len(CLASS_NAMES) == 10


def test_pixel_statistics_match_the_normalisation_constants(fmnist):
    x = fmnist["train"][0].float() / 255
    assert abs(x.mean().item() - MEAN) < 1e-3 and abs(x.std().item() - STD) < 1e-3


def test_parse_idx_rejects_a_truncated_file():
    header = bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big")
    assert parse_idx(header + bytes(5)).tolist() == [0] * 5
    with pytest.raises(ValueError, match="header says"):
        parse_idx(header + bytes(3))


def test_missing_data_raises_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VITCOURSE_DATA", str(tmp_path))
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "repo")
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")

    def no_network(root):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data, "_download", no_network)
    with pytest.raises(DataNotFoundError) as info:
        data.load_fashion_mnist("train")
    message = str(info.value)
    assert str(tmp_path) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "VITCOURSE_DATA" in message and "download" in message
    assert "name resolution" in message


def test_env_var_folder_wins(tmp_path, monkeypatch):
    src = find_fashion_mnist(download=False)
    monkeypatch.setenv("VITCOURSE_DATA", str(tmp_path))
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte",
                 "train-labels-idx1-ubyte"):
        (tmp_path / (name + ".gz")).symlink_to(data._find_file(src, name))
    assert find_fashion_mnist(download=False) == tmp_path


def test_damaged_labels_are_reported(tmp_path):
    images = np.zeros((10_000, 28, 28), np.uint8)
    labels = np.zeros(10_000, np.uint8)
    with pytest.raises(ValueError, match="per class"):
        data._validate("test", images, labels)


def test_stratified_subset_is_balanced_and_seeded(fmnist):
    x, y = fmnist["train"]
    xs, ys = stratified_subset(x, y, 2_000, seed=3)
    assert xs.shape == (2_000, 28, 28) and torch.bincount(ys).tolist() == [200] * 10
    xs2, ys2 = stratified_subset(x, y, 2_000, seed=3)
    assert torch.equal(xs, xs2) and torch.equal(ys, ys2)


def test_fast_mode_shrinks_the_data(monkeypatch):
    monkeypatch.setenv("VITCOURSE_FAST", "1")
    d = load_data()
    assert len(d.train_labels) == 2_000 and len(d.test_labels) == 1_000
    d = load_data(fast=False)
    assert len(d.train_labels) == 60_000 and len(d.test_labels) == 10_000


def _small(fmnist, n=1_000):
    x, y = fmnist["test"]
    return x[:n], y[:n]


def test_loader_sees_every_image_once_per_epoch(fmnist):
    x, y = _small(fmnist)
    loader = TensorLoader(x, y, batch_size=128, shuffle=True, seed=1)
    assert len(loader) == 8
    seen = []
    for xb, _yb in loader:
        assert xb.dtype == torch.float32 and xb.shape[1:] == (1, 28, 28)
        seen.append(xb)
    batches = torch.cat(seen)
    assert batches.shape[0] == 1_000
    # every normalised image appears exactly once: compare sorted per-image sums
    expected = normalize(x).flatten(1).sum(1).sort().values
    assert torch.allclose(batches.flatten(1).sum(1).sort().values, expected, atol=1e-3)


def test_loader_normalises_and_shuffles_differently_each_epoch(fmnist):
    x, y = _small(fmnist)
    loader = TensorLoader(x, y, batch_size=1_000, shuffle=True)
    (a, ya), = list(loader)
    (b, yb), = list(loader)
    assert abs(a.mean().item()) < 0.2 and abs(a.std().item() - 1) < 0.2
    assert not torch.equal(ya, yb) and torch.equal(ya.sort().values, yb.sort().values)


def test_loader_state_restores_the_same_order(fmnist):
    x, y = _small(fmnist)
    loader = TensorLoader(x, y, batch_size=100, shuffle=True, augmentation=Augmentation(crop_padding=2, hflip=True), seed=5)
    state = loader.state_dict()
    first = [yb for _, yb in loader]
    loader.load_state_dict(state)
    again = [yb for _, yb in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_augmentation_keeps_labels_and_content(fmnist):
    x, y = _small(fmnist, 256)
    plain = TensorLoader(x, y, batch_size=256, shuffle=False)
    aug = TensorLoader(x, y, batch_size=256, shuffle=False, augmentation=Augmentation(hflip=True), seed=0)
    (xp, yp), = list(plain)
    (xa, ya), = list(aug)
    assert torch.equal(yp, ya)
    flipped = ~torch.isclose(xa, xp).flatten(1).all(1)
    assert 0.3 < flipped.float().mean() < 0.7  # about half flipped
    assert torch.allclose(xa[flipped], xp[flipped].flip(-1))


def _index_coded(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose top half holds i % 256 and bottom half i // 256 (survives flips and small
    crops), labelled (7 i) % 10, so every yielded image can be traced back to its index."""
    i = torch.arange(n)
    images = torch.empty(n, 28, 28, dtype=torch.uint8)
    images[:, :14] = (i % 256).to(torch.uint8)[:, None, None]
    images[:, 14:] = (i // 256).to(torch.uint8)[:, None, None]
    return images, (7 * i) % 10


@pytest.mark.parametrize("crop_padding, hflip", [(0, False), (2, True)])
def test_loader_pairs_every_image_with_its_label_once_per_epoch(crop_padding, hflip):
    images, labels = _index_coded(1_000)
    loader = TensorLoader(images, labels, batch_size=96, shuffle=True, seed=3,
                          augmentation=Augmentation(crop_padding=crop_padding, hflip=hflip))
    for _ in range(2):  # two epochs, two orders
        seen = []
        for xb, yb in loader:
            pixels = (xb * STD + MEAN) * 255  # back to raw pixel values
            top = pixels[:, 0, 6, 14].round().long()
            bottom = pixels[:, 0, 21, 14].round().long()
            index = top + 256 * bottom
            assert torch.equal(yb, (7 * index) % 10), "a label was separated from its image"
            seen.append(index)
        seen = torch.cat(seen)
        assert sorted(seen.tolist()) == list(range(1_000)), "not every image exactly once"
        assert not torch.equal(seen, torch.arange(1_000))  # shuffled


def test_crop_padding_is_background_not_grey():
    images = torch.full((64, 28, 28), 200, dtype=torch.uint8)
    (xb, _), = list(TensorLoader(images, torch.zeros(64, dtype=torch.long), batch_size=64,
                                 augmentation=Augmentation(crop_padding=3), seed=0))
    border = torch.cat([xb[:, 0, 0, :], xb[:, 0, -1, :], xb[:, 0, :, 0], xb[:, 0, :, -1]], dim=1)
    padded = ~torch.isclose(border, normalize(images[:1])[0, 0, 0, 0])
    assert padded.any(), "no image was shifted"
    # what the crop brings in is a black pixel (the data set's background), not normalised zero
    assert torch.allclose(border[padded], torch.tensor(data.BACKGROUND))
    assert abs(data.BACKGROUND - normalize(torch.zeros(1, 28, 28, dtype=torch.uint8))[0, 0, 0, 0]) < 1e-6


def test_damaged_file_names_its_path_and_the_fix(tmp_path, monkeypatch):
    src = find_fashion_mnist(download=False)
    for pair in data.FILES.values():
        for stem in pair:
            (tmp_path / (stem + ".gz")).symlink_to(data._find_file(src, stem))
    broken = tmp_path / "t10k-labels-idx1-ubyte.gz"
    broken.unlink()
    broken.write_bytes(data._find_file(src, "t10k-labels-idx1-ubyte").read_bytes()[:200])  # truncated
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    with pytest.raises(data.DataDamagedError, match=r"t10k-labels-idx1-ubyte.gz is damaged .*EOFError.*apt-get"):
        data.load_fashion_mnist("test", download=False)
    import gzip
    broken.write_bytes(gzip.compress(bytes(10_008)))  # well-formed gzip, wrong content
    with pytest.raises(data.DataDamagedError, match="SHA-256"):
        data.load_fashion_mnist("test", download=False)


def test_random_crop_shifts_within_padding():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = data.random_crop(x, 1, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for img in out:
        # each output is the input shifted by at most 1 pixel, filled with `fill` (0) at the border
        assert any(torch.equal(img[0], torch.nn.functional.pad(x[0, 0], (1, 1, 1, 1))[dy:dy + 4, dx:dx + 4])
                   for dy in range(3) for dx in range(3))


def test_resize_for_the_d2l_configuration(fmnist):
    x, y = _small(fmnist, 8)
    xb, _ = next(iter(TensorLoader(x, y, batch_size=8, image_size=96, shuffle=False)))
    assert xb.shape == (8, 1, 96, 96)


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=torch.zeros(4, 28, 28), labels=torch.zeros(4, dtype=torch.long)), "uint8"),
    (dict(images=torch.zeros(4, 28, 28, dtype=torch.uint8), labels=torch.zeros(3, dtype=torch.long)), r"labels must have shape \(4,\)"),
    (dict(images=torch.zeros(4, 28, 28, dtype=torch.uint8), labels=torch.zeros(4, dtype=torch.long), batch_size=0), "batch_size"),
])
def test_loader_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TensorLoader(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(crop_padding=-1), r"crop_padding must be an int >= 0, got -1"),
    (dict(crop_padding=1.5), r"crop_padding must be an int >= 0, got 1.5"),
    (dict(random_erasing=1.5), r"random_erasing must be a probability in \[0, 1\], got 1.5"),
    (dict(mixup_alpha=-0.2), r"mixup_alpha must be >= 0 \(0 = off\), got -0.2"),
    (dict(cutmix_alpha=-1.0), r"cutmix_alpha must be >= 0 \(0 = off\), got -1.0"),
])
def test_augmentation_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Augmentation(**kwargs)


def test_the_loader_takes_an_augmentation_not_its_loose_fields():
    x, y = torch.zeros(4, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="augmentation must be a vitcourse.data.Augmentation, got dict"):
        TensorLoader(x, y, augmentation={"hflip": True})
    with pytest.raises(TypeError):
        TensorLoader(x, y, hflip=True)  # the old loose keyword is gone, not silently ignored


def test_a_configs_augmentation_carries_each_of_its_fields():
    from vitcourse.training.loop import TrainConfig
    config = TrainConfig(crop_padding=2, hflip=False, trivial_augment=True, random_erasing=0.25,
                         mixup_alpha=0.8, cutmix_alpha=1.0)
    assert config.augmentation() == Augmentation(2, False, True, 0.25, 0.8, 1.0)
    assert TrainConfig().augmentation() == Augmentation(hflip=True)  # the loop's default flips


def test_dataset_view(fmnist):
    ds = data.FashionMNISTDataset("test")
    img, label = ds[0]
    assert img.shape == (1, 28, 28) and label == int(fmnist["test"][1][0]) and len(ds) == 10_000
