"""Image files on disk -> uint8 pixel arrays: the one place datasets, calibration and the demo list and read images.

Every loader reads through :func:`read_image` (OpenCV, alpha dropped, gray kept as one channel) and
lists through :func:`list_images` (sorted by relative path as text, so the order, and with it every
seeded split, is the same on any machine). Streamed datasets check each file while listing with
:func:`image_header`, which reads the header only, and decode later.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime.image import convert_color, to_model_pixels

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MIN_IMG_SIZE = 8
GRAY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}  # Pillow modes OpenCV decodes as one channel
EXIF_ORIENTATION, TURNED = 0x0112, {5, 6, 7, 8}  # orientations OpenCV applies by swapping width and height


@dataclass(frozen=True)
class Header:
    """What a file's header says: the size as OpenCV decodes it (EXIF rotation applied) and whether it is gray."""

    width: int
    height: int
    gray: bool


def sorted_files(folder: Path, pattern: str = "*") -> list[Path]:
    """Files under ``folder`` matching ``pattern`` (recursive), sorted by their relative path as text."""
    return sorted((p for p in folder.rglob(pattern) if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by relative path as text."""
    return [p for p in sorted_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES]


def images_by_stem(folder: Path) -> dict[str, Path]:
    """Images under ``folder`` by their relative path without suffix, e.g. 'train/0001' (first suffix wins):
    how annotations (YOLO .txt, masks) are matched to their images."""
    found: dict[str, Path] = {}
    for path in list_images(folder):
        found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    return found


def read_image(path: Path) -> np.ndarray | None:
    """A whole image as (H, W, 3) RGB or (H, W, 1) gray uint8 (alpha dropped); None when unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_ANYCOLOR)
    if image is None or image.size == 0:
        return None
    return convert_color(image, "bgr", "rgb") if image.ndim == 3 else image[:, :, None]


def image_header(path: Path) -> Header | None:
    """The image's size and colour from its header alone (Pillow reads no pixels: ~0.1 ms a file, so a
    folder of 100,000 images is checked in seconds); None when no decoder recognises the file.

    Files whose header is fine but whose pixels are damaged are caught when decoded (the stream skips
    them and names them). Without Pillow (a bare runtime install) the file is decoded with OpenCV instead.
    """
    try:
        from PIL import Image  # lazy: optional (Pillow comes with the train extra); OpenCV decodes otherwise
    except ImportError:
        image = read_image(path)
        return None if image is None else Header(image.shape[1], image.shape[0], image.shape[2] == 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning for large photos: only the header is read
            with Image.open(path) as image:
                width, height = image.size
                gray = image.mode in GRAY_MODES
                if image.format == "JPEG" and image.getexif().get(EXIF_ORIENTATION, 1) in TURNED:
                    width, height = height, width
    except Exception:  # any parse failure of any format (OSError, SyntaxError, struct.error, ...) means unreadable
        return None
    return Header(width, height, gray) if width > 0 and height > 0 else None


def resize_image(image: np.ndarray, img_size: int, pixel_format: str | None = None) -> np.ndarray:
    """Plain resize of an RGB or gray image to (img_size, img_size, C), into ``pixel_format`` (default: its own)."""
    own = "gray" if image.shape[2] == 1 else "rgb"
    return to_model_pixels(image, (img_size, img_size), pixel_format or own, src=own)


def load_image(path: Path, img_size: int, pixel_format: str) -> np.ndarray | None:
    """One image file at the model's size and pixel format; None when OpenCV cannot decode it."""
    image = read_image(path)
    return None if image is None else resize_image(image, img_size, pixel_format)


def orphan_reports(folder: Path, annotations: dict[str, Path], images: dict[str, Path], what: str) -> list[str]:
    """One report line per annotation file (label file, mask) whose image is missing, by relative stem."""
    return [
        f"{path.relative_to(folder).as_posix()}: no image images/{stem}.* for this {what} "
        f"(skipped); add the image or delete the {what}"
        for stem, path in annotations.items()
        if stem not in images
    ]


def check_size_and_channels(img_size: int, channels: int | None) -> None:
    if img_size < MIN_IMG_SIZE:
        raise EdgecnnError(f"--img must be {MIN_IMG_SIZE} or more pixels, got {img_size}")
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


def choose_format(all_gray: bool, channels: int | None) -> str:
    """The pixel format of a set of images: gray when every image is (or ``channels`` is 1), else RGB."""
    return {None: "gray" if all_gray else "rgb", 1: "gray", 3: "rgb"}[channels]


def stack_images(images: list[np.ndarray], channels: int | None) -> tuple[np.ndarray, str]:
    """Stack resized images of mixed gray/RGB: all gray stays gray unless ``channels`` says otherwise."""
    gray = all(im.shape[2] == 1 for im in images)
    if not gray:
        images = [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]
    return set_channels(np.stack(images), "gray" if gray else "rgb", channels)


def warn_skipped(skipped: list[str], limit: int = 20) -> None:
    """Print what was not used to stderr, at most ``limit`` lines."""
    for line in skipped[:limit]:
        print(f"warning: {line}", file=sys.stderr)
    if len(skipped) > limit:
        print(f"warning: ... and {len(skipped) - limit} more problems in the dataset", file=sys.stderr)
