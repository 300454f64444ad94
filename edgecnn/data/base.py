"""The task containers (images with labels, boxes or masks), one train/validation :class:`Split`, and the
seeded splits: everything below the loaders and above nothing.

``x`` is a numpy array (the built-in sets, segmentation folders) or :class:`~edgecnn.data.files.ImageFiles`
(image folders, COCO, YOLO: decoded when read); both index, iterate and batch alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.data.files import ImageFiles, take_images

Pixels = np.ndarray | ImageFiles


@dataclass
class ImageData:
    """Images as uint8 (N, H, W, C) in ``pixel_format`` ('rgb' or 'gray'), integer class ids."""

    x: Pixels
    y: np.ndarray
    labels: list[str]
    pixel_format: str = "rgb"
    skipped: list[str] = field(default_factory=list)  # files that could not be read, with why

    def __len__(self) -> int:
        return len(self.y)

    def split_indices(self, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Stratified by class: every class keeps its share in both halves."""
        return stratified_split(self.y, val_fraction, seed)

    def subset(self, index: np.ndarray) -> ImageData:
        index = positions(index)
        return ImageData(take_images(self.x, index), self.y[index], self.labels, self.pixel_format)

    def training_problem(self) -> str | None:
        """Why this set cannot train a classifier (one class scores "100%" and learns nothing), or None."""
        present = sorted({self.labels[int(i)] for i in np.unique(self.y)})
        if len(present) < 2:
            return f"only {len(present)} class with images ({', '.join(present)}); a classifier needs 2 or more"
        return None


@dataclass
class DetectionData:
    """Images as uint8 (N, S, S, C) in ``pixel_format`` ('rgb' or 'gray'), with per-image boxes and class ids.

    ``boxes[i]`` is (K_i, 4) float32 ``[ymin, xmin, ymax, xmax]`` in 0..1 and ``classes[i]`` (K_i,) int32
    indices into ``labels`` (no background class); K_i may be 0 (a negative image). ``parts`` are the
    dataset's own splits when it defines them (a YOLO data.yaml's train/val/test): name -> positions.
    """

    x: Pixels
    boxes: list[np.ndarray]
    classes: list[np.ndarray]
    labels: list[str]
    pixel_format: str = "rgb"
    skipped: list[str] = field(default_factory=list)  # annotations/images not used (or clipped): "file:line: why"
    parts: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def split_indices(self, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The dataset's own train/val when it defines them (seed and fraction unused), else a seeded shuffle."""
        if "train" in self.parts and "val" in self.parts:
            return self.parts["train"], self.parts["val"]
        return random_split(len(self), val_fraction, seed)

    def subset(self, index: np.ndarray) -> DetectionData:
        """The images at ``index`` (integer positions); ``skipped`` and ``parts`` stay with the whole set."""
        index = positions(index)
        boxes, classes = [self.boxes[i] for i in index], [self.classes[i] for i in index]
        return DetectionData(take_images(self.x, index), boxes, classes, self.labels, self.pixel_format)

    def training_problem(self) -> str | None:
        """Why this set cannot train a detector (no box to learn from), or None."""
        if not sum(len(b) for b in self.boxes):
            return f"no valid box in {len(self)} images; check the annotations (the warnings above say why)"
        return None


@dataclass
class SegmentationData:
    """Images as uint8 (N, S, S, C) in ``pixel_format`` and masks (N, S, S) uint8 of indices into ``labels``.

    ``labels[0]`` is the background class; mask value 255 marks pixels to ignore.
    """

    x: np.ndarray
    masks: np.ndarray
    labels: list[str]
    pixel_format: str = "rgb"
    skipped: list[str] = field(default_factory=list)  # images/masks not used: "file: why; fix"

    def __len__(self) -> int:
        return len(self.x)

    def split_indices(self, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return random_split(len(self), val_fraction, seed)

    def subset(self, index: np.ndarray) -> SegmentationData:
        """The images at ``index`` (integer positions), copied; ``skipped`` stays with the whole set."""
        index = positions(index)
        return SegmentationData(self.x[index], self.masks[index], self.labels, self.pixel_format)

    def training_problem(self) -> str | None:
        """Why this set cannot train a segmenter (no pixel of any class but background), or None."""
        if not np.any((self.masks > 0) & (self.masks != 255)):
            return f"no mask pixel of any class but background in {len(self)} images; check the masks"
        return None


TaskData = ImageData | DetectionData | SegmentationData  # a task's dataset container


@dataclass
class Split:
    """A dataset split in two; ``train.skipped`` lists what the loader did not use (with why).

    ``record`` says which images each half holds (file paths relative to the dataset folder, or positions
    in a built-in set) and how the split was made: a run writes it (:meth:`to_json`, ``split.json``) so
    that eval, convert's calibration and optimize use the same files even if the folder changes later.
    """

    train: TaskData
    val: TaskData
    record: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.record, indent=0) + "\n"


def positions(index: np.ndarray) -> np.ndarray:
    """Integer positions from an integer or boolean index array."""
    index = np.asarray(index)
    return np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64).reshape(-1)


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


def random_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation -> sorted (train, val) positions; the same on any machine for the same arguments.

    Detection and segmentation images have no single class to stratify on, so this is a plain
    shuffle; each side gets at least one image.
    """
    check_val_fraction(val_fraction)
    if n < 2:
        raise EdgecnnError(f"the dataset has {n} usable image(s); add at least 2 to split into train and validation")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(int(round(n * val_fraction)), 1), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
