"""Data sets: scikit-learn's digits (embedded, the default), digits-iv (the same digits with seeded per-image
photometric variation), CIFAR-10 and an ImageNet-style folder tree (local).

Nothing is downloaded. CIFAR-10 is read from the "python version" of its standard distribution
(``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``, pickled); ImageNet from ``<root>/train/<class>/*``
and ``<root>/val/<class>/*``. A missing or malformed directory is refused with a message that names it.

digits-iv ("instance variation", :func:`digits_iv_arrays`): every image gets its own contrast, brightness, gamma
and illumination ramp (and optionally pixel noise), drawn from a generator seeded by (seed, split, draw, image index),
scaled by ``severity`` (0: the plain digits, exactly); optionally upsampled to 16x16 or 32x32 first. Nothing is
normalised per image anywhere.

Augmentation draws from torch's global generator, which the trainer seeds per epoch, so that a resumed run sees
the same batches as an uninterrupted one.
"""

from __future__ import annotations

import pickle
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

DATASETS = ("digits", "digits-iv", "cifar10", "imagenet")
DATASET_ARCH = {"digits": "digits", "digits-iv": "digits", "cifar10": "resnet20", "imagenet": "reactnet18"}
DIGITS_IV_SIZES = (8, 16, 32)
DIGITS_IV_OPTIONS = {"severity", "image_size", "noise", "seed", "limit"}  # a run's data_options

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
    perturbations: dict = field(default_factory=dict)  # digits-iv: {"train": params, "test": params}


def _digits_split():
    """(images (N, 1, 8, 8) in [0, 1], labels, train indices, test indices) of the fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    return x, y, idx_tr, idx_te


def digits_arrays():
    """scikit-learn's 8x8 digits as float images in [0, 1] (pixel / 16), with a fixed stratified split.

    Returns (x_train, y_train, x_test, y_test); 1437 training and 360 test images.
    """
    x, y, idx_tr, idx_te = _digits_split()
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


# ----------------------------------------------------------------------------------------------- digits-iv

PERTURBATION_FIELDS = ("log2_contrast", "brightness", "log2_gamma", "ramp", "ramp_angle")
"""Per-image parameters of the digits-iv perturbation (see :func:`perturb`)."""

SPLIT_STREAM = {"train": 0, "test": 1}


def check_digits_iv_options(severity: float, image_size: int, noise: float, seed: int) -> None:
    """Refuse a bad digits-iv setting with a one-line :class:`DataError` naming it."""
    if not isinstance(severity, (int, float)) or not math.isfinite(severity) or severity < 0:
        raise DataError(f"digits-iv: --severity {severity!r} must be a finite number >= 0 (0: the plain digits)")
    if image_size not in DIGITS_IV_SIZES:
        raise DataError(f"digits-iv: --image-size {image_size!r} must be one of "
                        f"{', '.join(map(str, DIGITS_IV_SIZES))}")
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise DataError(f"digits-iv: --noise {noise!r} must be a finite number >= 0")
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"digits-iv: perturbation seed {seed!r} must be an integer >= 0")


def perturb(images: np.ndarray, indices: np.ndarray, severity: float, seed: int, split: str, draw: int = 0,
            noise: float = 0.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-image photometric variation of ``images`` (N, 1, H, W) in [0, 1]; returns (images, parameters).

    Image k (dataset index ``indices[k]``) draws five uniforms u from a generator seeded by
    (seed, split, draw, index), so the same image always gets the same perturbation, and the train and test splits
    (and each test draw) use independent streams. With S = ``severity``:

        log2 contrast c ~ S/2 (2u - 1)          brightness b ~ S/4 (2u - 1)         log2 gamma ~ S/2 (2u - 1)
        ramp amplitude a ~ S/4 u,  direction theta ~ 2 pi u,  r(p) = cos(theta) X(p) + sin(theta) Y(p), X, Y in [-1, 1]
        y = 2^c * x^gamma * exp(a * r) + b  [+ noise * S * N(0, 1) per pixel, drawn after the five uniforms]

    No clipping and no normalisation: S = 0 returns the images unchanged.
    """
    n, _, h, w = images.shape
    if severity == 0:
        return images.copy(), {f: np.zeros(n) for f in PERTURBATION_FIELDS}
    u = np.empty((n, len(PERTURBATION_FIELDS)))
    pixel_noise = np.zeros((n, 1, h, w))
    for k, index in enumerate(indices):
        rng = np.random.default_rng([seed, SPLIT_STREAM[split], draw, int(index)])
        u[k] = rng.random(len(PERTURBATION_FIELDS))
        if noise > 0:
            pixel_noise[k, 0] = rng.standard_normal((h, w))
    params = {"log2_contrast": severity / 2 * (2 * u[:, 0] - 1), "brightness": severity / 4 * (2 * u[:, 1] - 1),
              "log2_gamma": severity / 2 * (2 * u[:, 2] - 1), "ramp": severity / 4 * u[:, 3],
              "ramp_angle": 2 * np.pi * u[:, 4]}
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    ramp = (np.cos(params["ramp_angle"])[:, None, None] * xx + np.sin(params["ramp_angle"])[:, None, None] * yy)
    col = lambda v: v[:, None, None, None]  # noqa: E731
    x = images.astype(np.float64)
    y = (2.0 ** col(params["log2_contrast"]) * x ** (2.0 ** col(params["log2_gamma"]))
         * np.exp(col(params["ramp"]) * ramp[:, None]) + col(params["brightness"]) + noise * severity * pixel_noise)
    return y.astype(np.float32), params


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling (N, C, 8, 8) -> (N, C, size, size); the identity for size 8."""
    if images.shape[-1] == size:
        return images
    t = torch.nn.functional.interpolate(torch.from_numpy(images), size=(size, size), mode="bilinear",
                                        align_corners=False)
    return t.numpy()


def digits_iv_arrays(severity: float = 1.0, image_size: int = 8, seed: int = 0, noise: float = 0.0,
                     test_draw: int = 0, limit: int | None = None):
    """digits-iv: (x_train, y_train, x_test, y_test, params_train, params_test) of the fixed digits split.

    Images are upsampled (``image_size``) and then perturbed (:func:`perturb`) with ``seed``; the training images
    always with draw 0, the test images with ``test_draw`` (several draws score one model on several perturbations
    of the same test images). ``limit``: only the first ``limit`` images of each split (quick tests).
    """
    check_digits_iv_options(severity, image_size, noise, seed)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DataError(f"digits-iv: limit {limit!r} must be an integer >= 1")
    x, y, idx_tr, idx_te = _digits_split()
    if limit is not None:
        idx_tr, idx_te = idx_tr[:limit], idx_te[:limit]
    x = upsample(x, image_size)
    x_tr, p_tr = perturb(x[idx_tr], idx_tr, severity, seed, "train", 0, noise)
    x_te, p_te = perturb(x[idx_te], idx_te, severity, seed, "test", test_draw, noise)
    return x_tr, y[idx_tr], x_te, y[idx_te], p_tr, p_te


def digits_test_split(name: str, options: dict | None = None, test_draw: int = 0):
    """(x_test, y_test, description) of ``digits`` or ``digits-iv`` with ``options`` (severity, image_size, noise,
    seed, optionally limit) and perturbation draw ``test_draw``: the images that the export check, the lowering's
    agreement, the co-simulation and the deployment's example images of one model all use. The description names
    every option, so two reports on different images never carry the same one."""
    if name == "digits":
        if options or test_draw:
            raise DataError(f"digits: options {', '.join(sorted(options or {'test_draw': 0}))} apply to digits-iv only")
        return (*digits_arrays()[2:], "digits test split")
    if name != "digits-iv":
        raise DataError(f"{name}: not digits or digits-iv")
    if not isinstance(test_draw, int) or test_draw < 0:
        raise DataError(f"digits-iv: test draw {test_draw!r} must be an integer >= 0")
    options = dict(options or {})
    unknown = sorted(set(options) - DIGITS_IV_OPTIONS)
    if unknown:
        raise DataError(f"digits-iv: unknown option(s) {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(DIGITS_IV_OPTIONS))})")
    x, y = digits_iv_arrays(**options, test_draw=test_draw)[2:4]
    described = ", ".join(f"{k} {options[k]:g}" if isinstance(options[k], float) else f"{k} {options[k]}"
                          for k in sorted(options))
    return x, y, f"digits-iv test split ({described}; test draw {test_draw})"


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


def load_digits_iv_splits(augment: bool = True, severity: float = 1.0, image_size: int = 8, seed: int = 0,
                          noise: float = 0.0, test_draw: int = 0, limit: int | None = None) -> DataSplits:
    x_tr, y_tr, x_te, y_te, p_tr, p_te = digits_iv_arrays(severity, image_size, seed, noise, test_draw, limit)
    x_tr, y_tr = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    pad = image_size // 8  # a shift of up to one original pixel, as for digits
    train = AugmentedTensorDataset(x_tr, y_tr, pad=pad, flip=False) if augment else TensorDataset(x_tr, y_tr)
    test = TensorDataset(torch.from_numpy(x_te), torch.from_numpy(y_te))
    return DataSplits("digits-iv", train, test, 10, 1, image_size, [str(i) for i in range(10)],
                      {"train": p_tr, "test": p_te})


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


def load_splits(name: str, data_dir=None, augment: bool = True, image_size: int | None = None,
                **options) -> DataSplits:
    """The named data set. ``options``: digits-iv's severity, seed, noise, test_draw (and image_size)."""
    if options and name != "digits-iv":
        raise DataError(f"{name}: options {', '.join(sorted(options))} apply to digits-iv only")
    if name == "digits-iv":
        return load_digits_iv_splits(augment, image_size=image_size or 8, **options)
    if image_size is not None and name != "imagenet":
        raise DataError(f"{name}: --image-size applies to digits-iv and imagenet only")
    if name == "digits":
        return load_digits_splits(augment)
    if name == "cifar10":
        return load_cifar10_splits(data_dir, augment)
    if name == "imagenet":
        return load_imagenet_splits(data_dir, image_size or 224)
    raise DataError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
