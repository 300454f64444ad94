"""Object-detection data: images with boxes and class ids, the seeded split, and the ``--data`` dispatch.

Boxes follow the TFLite detection convention, ``[ymin, xmin, ymax, xmax]`` normalized to 0..1, so the
same numbers go into training targets, the .tflite's outputs and COCO mAP. Images are plain-resized
(no letterbox) to ``img_size`` x ``img_size``; normalized boxes are unchanged by that resize.
Helpers shared with segmentation (image reading, the split, channel conversion) live here too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgecnn.data.base import check_val_fraction
from edgecnn.data.folder import IMAGE_SUFFIXES
from edgecnn.errors import EdgecnnError
from edgecnn.runtime.image import convert_color, to_model_pixels

LAYOUTS = (
    "COCO: annotations/instances.json (or one .json in the folder) + images/; "
    "YOLO: images/ + labels/ with one .txt per image + data.yaml or classes.txt"
)


@dataclass
class DetectionData:
    """Images as uint8 (N, S, S, C) in ``pixel_format`` ('rgb' or 'gray'), with per-image boxes and class ids.

    ``boxes[i]`` is (K_i, 4) float32 ``[ymin, xmin, ymax, xmax]`` in 0..1 and ``classes[i]`` (K_i,) int32
    indices into ``labels`` (no background class); K_i may be 0 (a negative image).
    """

    x: np.ndarray
    boxes: list[np.ndarray]
    classes: list[np.ndarray]
    labels: list[str]
    pixel_format: str = "rgb"
    skipped: list[str] = field(default_factory=list)  # annotations/images not used (or clipped): "file:line: why"

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: np.ndarray) -> DetectionData:
        """The images at ``index`` (integer positions), copied; ``skipped`` stays with the whole set."""
        index = positions(index)
        boxes, classes = [self.boxes[i] for i in index], [self.classes[i] for i in index]
        return DetectionData(self.x[index], boxes, classes, self.labels, self.pixel_format)


@dataclass
class DetectionSplit:
    train: DetectionData
    val: DetectionData


# -- shared by detection and segmentation ---------------------------------------------------------


def positions(index: np.ndarray) -> np.ndarray:
    """Integer positions from an integer or boolean index array."""
    index = np.asarray(index)
    return np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64).reshape(-1)


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


def check_size_and_channels(img_size: int, channels: int | None) -> None:
    if img_size < 8:
        raise EdgecnnError(f"--img must be 8 or more pixels, got {img_size}")
    if channels not in (None, 1, 3):
        raise EdgecnnError(f"--channels must be 1 (gray) or 3 (RGB), got {channels}")


def set_channels(x: np.ndarray, pixel_format: str, channels: int | None) -> tuple[np.ndarray, str]:
    """(N, S, S, C) uint8 to 1 channel (gray) or 3 (RGB); None keeps the data's own."""
    want = {None: pixel_format, 1: "gray", 3: "rgb"}[channels]
    if want == pixel_format:
        return x, pixel_format
    n, h, w, c = x.shape
    flat = convert_color(x.reshape(n * h, w, c), pixel_format, want)  # one cv2 call for the whole batch
    return flat.reshape(n, h, w, -1), want


def sorted_files(folder: Path, pattern: str = "*") -> list[Path]:
    """Files under ``folder`` matching ``pattern`` (recursive), sorted by their relative path as text."""
    return sorted((p for p in folder.rglob(pattern) if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def list_images(folder: Path) -> dict[str, Path]:
    """Images under ``folder`` (recursive) by their relative path without suffix, e.g. 'train/0001'.

    Sorted by that path as text, so the order (and with it the seeded split) is the same everywhere.
    """
    found: dict[str, Path] = {}
    for path in sorted_files(folder):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    return found


def read_image(path: Path) -> np.ndarray | None:
    """A whole image as (H, W, 3) RGB or (H, W, 1) gray uint8 (alpha dropped); None when unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_ANYCOLOR)
    if image is None or image.size == 0:
        return None
    return convert_color(image, "bgr", "rgb") if image.ndim == 3 else image[:, :, None]


def resize_image(image: np.ndarray, img_size: int) -> np.ndarray:
    """Plain resize of an RGB or gray image to (img_size, img_size, C), keeping its channels."""
    pixel_format = "gray" if image.shape[2] == 1 else "rgb"
    return to_model_pixels(image, (img_size, img_size), pixel_format, src=pixel_format)


def stack_images(images: list[np.ndarray], channels: int | None) -> tuple[np.ndarray, str]:
    """Stack resized images of mixed gray/RGB: all gray stays gray unless ``channels`` says otherwise."""
    gray = all(im.shape[2] == 1 for im in images)
    if not gray:
        images = [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]
    return set_channels(np.stack(images), "gray" if gray else "rgb", channels)


def warn_skipped(skipped: list[str], limit: int = 20) -> None:
    """Print what was not used to stderr (as the image-folder loader does), at most ``limit`` lines."""
    for line in skipped[:limit]:
        print(f"warning: {line}", file=sys.stderr)
    if len(skipped) > limit:
        print(f"warning: ... and {len(skipped) - limit} more problems in the dataset", file=sys.stderr)


# -- entry point ---------------------------------------------------------------------------------


def detection_builtins() -> dict:
    """Built-in detection datasets: name -> fn(img_size) -> DetectionData."""
    from edgecnn.data.shapes import shapes

    return {"shapes": lambda img_size: shapes(img_size)}


def load_detection_data(spec: str, img_size: int, channels: int | None = None) -> DetectionData:
    """The whole dataset named by ``spec``: a built-in name, or a COCO or YOLO folder (detected by layout)."""
    check_size_and_channels(img_size, channels)
    builtins = detection_builtins()
    if spec in builtins:
        data = builtins[spec](img_size)
        data.x, data.pixel_format = set_channels(data.x, data.pixel_format, channels)
        return data
    folder = Path(spec)
    if not folder.is_dir():
        raise EdgecnnError(
            f"detection dataset not found: {spec!r}; use the built-in name "
            f"({', '.join(sorted(builtins))}) or a folder in one of these layouts - {LAYOUTS}"
        )
    if (folder / "labels").is_dir() and (folder / "images").is_dir():
        from edgecnn.data.yolo import load_yolo

        return load_yolo(folder, img_size, channels)
    if list((folder / "annotations").glob("*.json")) or list(folder.glob("*.json")):
        from edgecnn.data.coco import load_coco

        return load_coco(folder, img_size, channels)
    raise EdgecnnError(f"{folder} is neither a COCO nor a YOLO dataset; expected {LAYOUTS}")


def load_detection(
    spec: str, img_size: int, channels: int | None = None, seed: int = 0, val_fraction: float = 0.2
) -> DetectionSplit:
    """Load ``spec`` and split it with a seeded permutation; ``train.skipped`` lists what was not used."""
    check_val_fraction(val_fraction)
    data = load_detection_data(spec, img_size, channels)
    train_idx, val_idx = random_split(len(data), val_fraction, seed)
    split = DetectionSplit(data.subset(train_idx), data.subset(val_idx))
    split.train.skipped = data.skipped
    return split
