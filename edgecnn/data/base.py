"""Dataset containers, the seeded split, and the name -> loader table for classification data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError


@dataclass
class ImageData:
    """Images as uint8 (N, H, W, C) in ``pixel_format`` ('rgb' or 'gray'), integer class ids."""

    x: np.ndarray
    y: np.ndarray
    labels: list[str]
    pixel_format: str = "rgb"
    skipped: list[str] = field(default_factory=list)  # files that could not be read, with why

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> ImageData:
        return ImageData(self.x[index], self.y[index], self.labels, self.pixel_format)


@dataclass
class Split:
    train: ImageData
    val: ImageData


def check_val_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise EdgecnnError(f"--val-fraction must be between 0 and 1, got {val_fraction}")


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class seeded shuffle; the same (y, fraction, seed) gives the same split on any machine.

    Written with numpy rather than scikit-learn so that the light runtime, which evaluates a
    .tflite on the validation split, reproduces exactly the split that training used.
    """
    check_val_fraction(val_fraction)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        n_val = min(max(n_val, 1), len(idx) - 1) if len(idx) > 1 else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


# name -> loader(img_size, channels) for built-in datasets; folders are handled by data.folder
Loader = Callable[[int, "int | None"], ImageData]
BUILTIN: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def wrap(fn: Loader) -> Loader:
        BUILTIN[name] = fn
        return fn

    return wrap


def load_images(spec: str, img_size: int, channels: int | None = None) -> ImageData:
    """A built-in dataset by name, else a folder with one subfolder per class."""
    from edgecnn.data import digits, folder  # noqa: F401  (registers the built-ins)

    if spec in BUILTIN:
        return BUILTIN[spec](img_size, channels)
    path = Path(spec)
    if not path.exists():
        raise EdgecnnError(
            f"dataset not found: {spec!r}; use a built-in name ({', '.join(sorted(BUILTIN))}) "
            "or a folder with one subfolder of images per class"
        )
    return folder.load_folder(path, img_size, channels)


def load_classification(
    spec: str, img_size: int, channels: int | None = None, seed: int = 0, val_fraction: float = 0.2
) -> Split:
    if img_size < 8:
        raise EdgecnnError(f"--img must be 8 or more pixels, got {img_size}")
    data = load_images(spec, img_size, channels)
    train_idx, val_idx = stratified_split(data.y, val_fraction, seed)
    split = Split(data.subset(train_idx), data.subset(val_idx))
    split.train.skipped = data.skipped
    return split
