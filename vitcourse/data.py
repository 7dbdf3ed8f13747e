"""Fashion-MNIST from the real files, held in memory, batched on the device.

Where the files are looked for, in order (the first hit wins):
1. ``$VITCOURSE_DATA`` (a folder holding the four ``*-idx?-ubyte[.gz]`` files, or ``FashionMNIST/raw``);
2. ``data/fashion-mnist/`` in the repository;
3. Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
4. a download into ``data/fashion-mnist/`` with torchvision's mirrors, where there is internet.

The idx files are parsed here with numpy and gzip (0.3 s for all four) instead of torchvision's
dataset class, because Debian re-compresses the ``.gz`` files and torchvision's MD5 checks reject
them. We check the unpacked content instead (shapes, label range, per-class counts, SHA-256).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from . import augment
from .settings import is_fast

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Pixel statistics of the 60,000 training images, scaled to [0, 1].
MEAN: float = 0.2860
STD: float = 0.3530

FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SIZES: dict[str, int] = {"train": 60_000, "test": 10_000}
# SHA-256 of the *unpacked* idx files: identical for upstream's and Debian's re-compressed copies.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

ENV_VAR = "VITCOURSE_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_DATA_DIR = REPO_ROOT / "data" / "fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


class DataNotFoundError(FileNotFoundError):
    """Fashion-MNIST was not found anywhere and could not be downloaded."""


def _candidates() -> list[Path]:
    dirs: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs += [REPO_DATA_DIR, DEBIAN_DIR]
    return dirs


def _find_file(folder: Path, stem: str) -> Path | None:
    for sub in (folder, folder / "FashionMNIST" / "raw", folder / "raw"):
        for name in (stem + ".gz", stem):
            if (sub / name).is_file():
                return sub / name
    return None


def _complete(folder: Path) -> bool:
    return all(_find_file(folder, stem) is not None for pair in FILES.values() for stem in pair)


def _download(root: Path) -> None:
    """Download with torchvision's mirrors into ``root/FashionMNIST/raw`` (needs internet)."""
    from torchvision.datasets import FashionMNIST  # imported here: only needed to download

    root.mkdir(parents=True, exist_ok=True)
    FashionMNIST(str(root), train=True, download=True)
    FashionMNIST(str(root), train=False, download=True)


def not_found_message(searched: list[Path], reason: str = "") -> str:
    lines = [
        "Fashion-MNIST was not found. Looked in:",
        *[f"  - {p}" for p in searched],
    ]
    if reason:
        lines.append(f"and the download failed ({reason}).")
    lines += [
        "Get the data in one of three ways:",
        "  1. Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist   "
        "(files land in /usr/share/datasets/fashion-mnist)",
        f"  2. copy the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,"
        f" t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz into {REPO_DATA_DIR}"
        f" (or any folder named by ${ENV_VAR})",
        "  3. with internet: run any chapter once, or `python -c \"import vitcourse.data as d; "
        "d.find_fashion_mnist(download=True)\"`, which downloads them with torchvision",
    ]
    return "\n".join(lines)


def find_fashion_mnist(download: bool = True) -> Path:
    """The folder holding the four Fashion-MNIST files (see the module docstring for the order).

    Raises:
        DataNotFoundError: nothing found and the download failed or was not allowed; the
            message lists the ways to get the data.
    """
    searched = _candidates()
    for folder in searched:
        if _complete(folder):
            return folder
    if not download:
        raise DataNotFoundError(not_found_message(searched))
    target = searched[0] if os.environ.get(ENV_VAR) else REPO_DATA_DIR
    try:
        _download(target)
    except Exception as exc:  # no internet shows up as URLError, OSError or RuntimeError
        raise DataNotFoundError(not_found_message(searched, f"{type(exc).__name__}: {exc}")) from None
    if not _complete(target):
        raise DataNotFoundError(not_found_message(searched, "files incomplete after download"))
    return target


def _read_bytes(path: Path) -> bytes:
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        return f.read()


def parse_idx(raw: bytes) -> np.ndarray:
    """Parse an idx file (LeCun's MNIST format: magic, dims, big-endian, then the data)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError("not an idx file: the first two bytes must be zero")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise ValueError(f"only unsigned-byte idx files are supported, got type code {dtype_code:#x}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"idx header says {dims} = {int(np.prod(dims))} values, file has {data.size}")
    return data.reshape(dims)


def content_sha256(folder: Path | None = None) -> dict[str, str]:
    """SHA-256 of each unpacked file (what the tests compare with `SHA256`)."""
    folder = folder or find_fashion_mnist()
    return {stem: hashlib.sha256(_read_bytes(_find_file(folder, stem))).hexdigest()
            for pair in FILES.values() for stem in pair}


def _validate(split: str, images: np.ndarray, labels: np.ndarray) -> None:
    n = SIZES[split]
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise ValueError(f"Fashion-MNIST {split}: expected images (n, 28, 28) and labels (n,) with "
                         f"n={n}, got {images.shape} and {labels.shape}: the files are damaged")
    counts = np.bincount(labels, minlength=10)
    if len(counts) != 10 or not (counts == n // 10).all():
        raise ValueError(f"Fashion-MNIST {split}: expected {n // 10} images per class 0-9, "
                         f"got counts {counts.tolist()}: the files are damaged")


class DataDamagedError(ValueError):
    """A Fashion-MNIST file was found but its content is not the data set's."""


def _damaged(path: Path, what: str) -> DataDamagedError:
    return DataDamagedError(
        f"{path} is damaged ({what}). Delete it and get the file again: copy it from "
        f"{DEBIAN_DIR} (sudo apt-get install dataset-fashion-mnist), or delete the folder "
        f"{path.parent} and let the course download it where there is internet.")


def _read_checked(folder: Path, stem: str) -> np.ndarray:
    """Unpack and parse one idx file, checking the SHA-256 of its unpacked bytes."""
    path = _find_file(folder, stem)
    try:
        raw = _read_bytes(path)
    except (EOFError, OSError, zlib.error) as exc:  # a truncated download, a bad .gz
        raise _damaged(path, f"{type(exc).__name__}: {exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[stem]:
        raise _damaged(path, f"SHA-256 of its unpacked content is {digest[:12]}..., "
                             f"expected {SHA256[stem][:12]}...")
    return parse_idx(raw)


def load_fashion_mnist(split: str = "train", download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the `split` ("train" or "test").

    The unpacked content of each file is checked against its SHA-256 (~0.1 s), so a damaged or
    wrong file fails here, with its path and how to replace it, not later in a chapter.
    """
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = find_fashion_mnist(download=download)
    img_stem, lbl_stem = FILES[split]
    images = _read_checked(folder, img_stem)
    labels = _read_checked(folder, lbl_stem)
    _validate(split, images, labels)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def stratified_subset(images: torch.Tensor, labels: torch.Tensor, n: int,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` examples with (as near as possible) equal counts per class, in a seeded random order."""
    if not 0 < n <= len(labels):
        raise ValueError(f"n must be between 1 and {len(labels)}, got {n}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    classes = labels.unique()
    per_class = -(-n // len(classes))  # ceil
    picked = torch.cat([order[labels[order] == c][:per_class] for c in classes])
    picked = picked[torch.randperm(len(picked), generator=g)][:n]
    return images[picked], labels[picked]


@dataclass
class FashionMNISTData:
    """The train and test splits as in-memory tensors, plus class names."""
    train_images: torch.Tensor  # (N, 28, 28) uint8
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor   # (M, 28, 28) uint8
    test_labels: torch.Tensor   # (M,) int64
    classes: tuple[str, ...] = CLASS_NAMES


def load_data(fast: bool | None = None, train_size: int | None = None, test_size: int | None = None,
              seed: int = 0) -> FashionMNISTData:
    """Both splits; in fast mode (``VITCOURSE_FAST=1``) a stratified 2,000 / 1,000 subset.

    Args:
        fast: shrink the data; None reads `VITCOURSE_FAST`.
        train_size, test_size: explicit subset sizes (override fast mode).
    """
    fast = is_fast() if fast is None else fast
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    train_size = train_size or (2_000 if fast else None)
    test_size = test_size or (1_000 if fast else None)
    if train_size:
        xtr, ytr = stratified_subset(xtr, ytr, train_size, seed)
    if test_size:
        xte, yte = stratified_subset(xte, yte, test_size, seed + 1)
    return FashionMNISTData(xtr, ytr, xte, yte)


def normalize(images: torch.Tensor, image_size: int | None = None) -> torch.Tensor:
    """uint8 (B, H, W) or (B, 1, H, W) -> float (B, 1, S, S), scaled and standardised."""
    if images.dim() == 3:
        images = images.unsqueeze(1)  # (B, H, W) -> (B, 1, H, W)
    x = images.float().div_(255.0)
    if image_size is not None and image_size != x.shape[-1]:
        # D2L's chapter resizes 28 -> 96 with bilinear interpolation; we do the same on the tensor.
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                          align_corners=False)
    return (x - MEAN) / STD


# The value of a black pixel after `normalize`: what padding must add to look like background.
BACKGROUND: float = (0.0 - MEAN) / STD


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator,
                fill: float = 0.0) -> torch.Tensor:
    """Pad by `padding` pixels of value `fill` and cut a random H x W window per image.
    x: (B, C, H, W). On normalised images pass ``fill=BACKGROUND``: a zero there is grey."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, value=fill)  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # (B, H)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # (B, W)
    idx_r = rows[:, None, :, None].expand(b, c, h, w + 2 * padding)
    out = padded.gather(2, idx_r)  # (B, C, H, W+2p)
    idx_c = cols[:, None, None, :].expand(b, c, h, w)
    return out.gather(3, idx_c)  # (B, C, H, W)


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Flip each image left-right with probability `p`. x: (B, C, H, W)."""
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@dataclass(frozen=True)
class Augmentation:
    """What a training batch goes through after it is normalised, in this order (each off by
    default; `TrainConfig` has a field of the same name for each):

        crop_padding: random crop with this much padding, filled with the background (0 = off).
        hflip: random horizontal flips.
        trivial_augment: one TrivialAugment op per image (`vitcourse.augment.trivial_augment`).
        random_erasing: probability of erasing a rectangle per image.
        mixup_alpha, cutmix_alpha: mix image pairs (`vitcourse.augment.mix_batch`); with either
            on, the labels come out as (B, num_classes) probabilities instead of (B,) classes.
    """
    crop_padding: int = 0
    hflip: bool = False
    trivial_augment: bool = False
    random_erasing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.crop_padding, int) or isinstance(self.crop_padding, bool) or self.crop_padding < 0:
            raise ValueError(f"crop_padding must be an int >= 0, got {self.crop_padding!r}")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing must be a probability in [0, 1], got {self.random_erasing!r}")
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = off), got {getattr(self, name)!r}")

    @property
    def mixes_labels(self) -> bool:
        return bool(self.mixup_alpha or self.cutmix_alpha)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                 num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 1, S, S) normalised, y: (B,) -> the augmented batch; y (B, num_classes) if mixed."""
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator, fill=BACKGROUND)
        if self.hflip:
            x = random_hflip(x, generator)
        if self.trivial_augment:
            x = augment.trivial_augment(x, generator, mean=MEAN, std=STD)
        if self.random_erasing:
            x = augment.random_erasing(x, self.random_erasing, generator)
        if self.mixes_labels:
            x, y = augment.mix_batch(x, y, num_classes, generator,
                                     mixup_alpha=self.mixup_alpha, cutmix_alpha=self.cutmix_alpha)
        return x, y


class TensorLoader:
    """Shuffled, normalised batches cut from tensors that live on the target device.

    No DataLoader and no workers: on 2 cores workers only add overhead, and on a GPU they are the
    bottleneck. The whole set (uint8) sits on `device`; each batch is normalised (and augmented)
    there. Its random state is one CPU generator, saved by `state_dict()` for exact resume.

    Args:
        images: (N, H, W) or (N, 1, H, W) uint8.
        labels: (N,) int64.
        batch_size: images per batch.
        shuffle: a new random order every epoch.
        device: where the data and batches live.
        image_size: resize to this (e.g. 96 for D2L's configuration); None keeps 28.
        drop_last: drop the last incomplete batch.
        seed: seeds the loader's own generator.
        augmentation: what each batch goes through after normalising (`Augmentation`; none by default).
        num_classes: the width of mixed labels (mixup / CutMix).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256,
                 shuffle: bool = True, device: torch.device | str = "cpu", image_size: int | None = None,
                 drop_last: bool = False, seed: int = 0, augmentation: Augmentation = Augmentation(),
                 num_classes: int = 10) -> None:
        if images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (raw pixels), got dtype {images.dtype}")
        if images.dim() not in (3, 4):
            raise ValueError(f"images must be (N, H, W) or (N, 1, H, W), got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},) to match images, "
                             f"got {tuple(labels.shape)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(augmentation, Augmentation):
            raise ValueError(f"augmentation must be a vitcourse.data.Augmentation, got {type(augmentation).__name__}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.image_size = image_size
        self.drop_last = drop_last
        self.augmentation = augmentation
        self.num_classes = num_classes
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = normalize(self.images[idx], self.image_size)  # (B, 1, S, S)
            yield self.augmentation(x, self.labels[idx], self.generator, self.num_classes)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class FashionMNISTDataset(torch.utils.data.Dataset):
    """The standard `Dataset` view: (normalised float image (1, 28, 28), label)."""

    def __init__(self, split: str = "train", image_size: int | None = None) -> None:
        self.images, self.labels = load_fashion_mnist(split)
        self.image_size = image_size
        self.classes = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return normalize(self.images[i:i + 1], self.image_size)[0], int(self.labels[i])


def copy_to_repo(source: Path | None = None) -> Path:
    """Copy the four files into ``data/fashion-mnist`` (atomic per file). Returns the folder."""
    source = source or find_fashion_mnist()
    REPO_DATA_DIR.mkdir(parents=True, exist_ok=True)
    for pair in FILES.values():
        for stem in pair:
            src = _find_file(source, stem)
            dst = REPO_DATA_DIR / src.name
            with tempfile.NamedTemporaryFile(dir=REPO_DATA_DIR, delete=False) as tmp:
                shutil.copyfileobj(open(src, "rb"), tmp)
            os.replace(tmp.name, dst)
    return REPO_DATA_DIR
