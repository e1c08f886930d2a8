"""Data sets: scikit-learn's digits (embedded, the default), CIFAR-10 and an ImageNet-style folder tree (local).

Nothing is downloaded. CIFAR-10 is read from the "python version" of its standard distribution
(``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``, pickled); ImageNet from ``<root>/train/<class>/*``
and ``<root>/val/<class>/*``. A missing or malformed directory is refused with a message that names it.

Augmentation draws from torch's global generator, which the trainer seeds per epoch, so that a resumed run sees
the same batches as an uninterrupted one.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

DATASETS = ("digits", "cifar10", "imagenet")
DATASET_ARCH = {"digits": "digits", "cifar10": "resnet20", "imagenet": "reactnet18"}

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataError(RuntimeError):
    """A data set that is missing or malformed; the message names the path."""


@dataclass
class DataSplits:
    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    class_names: list[str]


def digits_arrays(test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 8x8 digits as float images in [0, 1] (pixel / 16), with a fixed stratified split.

    Returns (x_train, y_train, x_test, y_test); 1437 training and 360 test images for the default split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return x_tr, y_tr, x_te, y_te


class AugmentedTensorDataset(Dataset):
    """Images (N, C, H, W) with random crop after zero padding and an optional horizontal flip."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pad: int, flip: bool):
        self.images, self.labels, self.pad, self.flip = images, labels, pad, flip

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i]
        if self.pad:
            h, w = img.shape[1:]
            padded = torch.nn.functional.pad(img, (self.pad,) * 4)
            dy, dx = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            img = padded[:, dy:dy + h, dx:dx + w]
        if self.flip and torch.rand(()) < 0.5:
            img = img.flip(-1)
        return img, self.labels[i]


def load_digits_splits(augment: bool = True) -> DataSplits:
    x_tr, y_tr, x_te, y_te = digits_arrays()
    x_tr, y_tr = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    train = AugmentedTensorDataset(x_tr, y_tr, pad=1, flip=False) if augment else TensorDataset(x_tr, y_tr)
    test = TensorDataset(torch.from_numpy(x_te), torch.from_numpy(y_te))
    return DataSplits("digits", train, test, 10, 1, 8, [str(i) for i in range(10)])


def _cifar_dir(root: Path) -> Path:
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "test_batch").is_file():
            return candidate
    raise DataError(f"cifar10: no CIFAR-10 data under {root} (expected data_batch_1..5 and test_batch of the "
                    f"python distribution, unpacked from cifar-10-python.tar.gz; set --data-dir)")


def _read_cifar_batch(path: Path):
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return data, np.asarray(batch["labels"], dtype=np.int64)
    except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"cifar10: cannot read {path}: {e}") from e


def cifar10_arrays(root: str | Path):
    """uint8 CIFAR-10 arrays (x_train, y_train, x_test, y_test) from a local directory."""
    if root is None:
        raise DataError("cifar10: no data directory given (set --data-dir to the unpacked cifar-10-batches-py)")
    base = _cifar_dir(Path(root))
    parts = []
    for i in range(1, 6):
        path = base / f"data_batch_{i}"
        if not path.is_file():
            raise DataError(f"cifar10: missing {path}")
        parts.append(_read_cifar_batch(path))
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = _read_cifar_batch(base / "test_batch")
    return x_tr, y_tr, x_te, y_te


def _normalise(x_uint8: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(x_uint8.astype(np.float32) / 255.0)
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def load_cifar10_splits(root, augment: bool = True) -> DataSplits:
    x_tr, y_tr, x_te, y_te = cifar10_arrays(root)
    train_x = _normalise(x_tr, CIFAR_MEAN, CIFAR_STD)
    train = AugmentedTensorDataset(train_x, torch.from_numpy(y_tr), pad=4 if augment else 0, flip=augment)
    test = TensorDataset(_normalise(x_te, CIFAR_MEAN, CIFAR_STD), torch.from_numpy(y_te))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return DataSplits("cifar10", train, test, 10, 3, 32, names)


class ImageFolder(Dataset):
    """``<root>/<class>/<image>`` read with Pillow; train: random crop of a resized image + flip; eval: centre."""

    EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG"}

    def __init__(self, root: Path, size: int, train: bool, classes: list[str] | None = None):
        if not root.is_dir():
            raise DataError(f"imagenet: missing directory {root}")
        self.classes = classes or sorted(p.name for p in root.iterdir() if p.is_dir())
        if not self.classes:
            raise DataError(f"imagenet: no class folders in {root}")
        self.samples = [(p, i) for i, c in enumerate(self.classes) for p in sorted((root / c).iterdir())
                        if p.suffix in self.EXTENSIONS] if all((root / c).is_dir() for c in self.classes) else []
        if not self.samples:
            raise DataError(f"imagenet: no images under {root} (expected <class>/<image> files)")
        self.size, self.train = size, train

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.samples[i]
        try:
            img = Image.open(path).convert("RGB")
        except OSError as e:
            raise DataError(f"imagenet: cannot read {path}: {e}") from e
        resize = int(self.size * 256 / 224)
        w, h = img.size
        scale = resize / min(w, h)
        img = img.resize((max(resize, round(w * scale)), max(resize, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        if self.train:
            x0 = int(torch.randint(0, w - self.size + 1, ()))
            y0 = int(torch.randint(0, h - self.size + 1, ()))
        else:
            x0, y0 = (w - self.size) // 2, (h - self.size) // 2
        img = img.crop((x0, y0, x0 + self.size, y0 + self.size))
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        if self.train and torch.rand(()) < 0.5:
            x = x.flip(-1)
        x = (x.float() / 255.0 - torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)) / torch.tensor(IMAGENET_STD).view(-1, 1, 1)
        return x, label


def load_imagenet_splits(root, image_size: int = 224) -> DataSplits:
    if root is None:
        raise DataError("imagenet: no data directory given (set --data-dir to a folder with train/ and val/)")
    root = Path(root)
    train = ImageFolder(root / "train", image_size, train=True)
    test = ImageFolder(root / "val", image_size, train=False, classes=train.classes)
    return DataSplits("imagenet", train, test, len(train.classes), 3, image_size, train.classes)


def load_splits(name: str, data_dir=None, augment: bool = True, image_size: int | None = None) -> DataSplits:
    if name == "digits":
        return load_digits_splits(augment)
    if name == "cifar10":
        return load_cifar10_splits(data_dir, augment)
    if name == "imagenet":
        return load_imagenet_splits(data_dir, image_size or 224)
    raise DataError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
