"""Segmentation folders: ``images/`` plus ``masks/`` (PNG, same relative stem). A mask is either a
single-channel PNG of class indices or a Pascal VOC palette PNG; OpenCV expands palettes to colours,
which are mapped back to indices through the standard VOC colormap. 255 means "ignore" (VOC's
object borders) and is kept as 255.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.data.base import SegmentationData
from edgecnn.data.images import (
    images_by_stem,
    orphan_reports,
    read_image,
    resize_image,
    sorted_files,
    stack_images,
)
from edgecnn.runtime.segment import palette

IGNORE = 255
LAYOUT = "images/ with the pictures and masks/ with one PNG of class indices (or VOC palette colours) per image"


@functools.lru_cache(maxsize=1)
def voc_colormap() -> np.ndarray:
    """The Pascal VOC palette, (256, 3) uint8 RGB, read-only: the runtime's :func:`palette`, which the
    demo draws with, so decoded masks and drawn masks use the same colours."""
    cmap = palette(256)
    cmap.setflags(write=False)
    return cmap


def decode_voc_colours(rgb: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(H, W, 3) RGB mask in VOC colours -> (H, W) uint8 indices, or (None, what is wrong)."""
    codes = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    cmap = voc_colormap().astype(np.uint32)
    palette = (cmap[:, 0] << 16) | (cmap[:, 1] << 8) | cmap[:, 2]
    order = np.argsort(palette)
    colours, inverse = np.unique(codes, return_inverse=True)
    where = np.searchsorted(palette[order], colours).clip(max=255)
    known = palette[order][where] == colours
    if not known.all():
        bad = int(colours[np.flatnonzero(~known)[0]])
        row, col = (int(v[0]) for v in np.nonzero(codes == bad))
        colour = (bad >> 16, (bad >> 8) & 255, bad & 255)
        return None, f"colour {colour} at row {row}, column {col} is not in the VOC palette"
    return order[where].astype(np.uint8)[inverse.reshape(codes.shape)], ""


def read_mask(path: Path) -> tuple[np.ndarray | None, str]:
    """A mask PNG -> (H, W) uint8 class indices, or (None, what is wrong).

    Single-channel PNGs are the indices; colour PNGs (palettes expanded by OpenCV) are VOC colours.
    A colour PNG whose three channels are equal everywhere but not VOC colours is taken as indices.
    """
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        return None, "cannot read the mask"
    if mask.ndim == 3 and mask.dtype != np.uint8:
        return None, f"{mask.dtype} colour mask (VOC palette masks are 8-bit)"
    if mask.ndim == 3:
        rgb = mask[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
        indices, problem = decode_voc_colours(rgb)
        if indices is None and (rgb == rgb[:, :, :1]).all():
            return np.ascontiguousarray(rgb[:, :, 0]), ""
        return indices, problem
    if mask.max(initial=0) > 255:
        return None, f"class index {int(mask.max())} is over 255"
    return mask.astype(np.uint8), ""


def class_names_file(folder: Path) -> list[str] | None:
    """Names from labels.txt or classes.txt (first line: background), or None when there is neither."""
    for name in ("labels.txt", "classes.txt"):
        path = folder / name
        if path.is_file():
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if not names:
                raise EdgecnnError(f"{path} is empty; write one class name per line, background first")
            return names
    return None


def load_mask_folder(folder: Path, img_size: int, channels: int | None) -> SegmentationData:
    """``images/`` + ``masks/`` -> SegmentationData; masks resized with nearest neighbour."""
    if not (folder / "images").is_dir() or not (folder / "masks").is_dir():
        raise EdgecnnError(f"{folder} is not a segmentation dataset; expected {LAYOUT}")
    names = class_names_file(folder)
    images = images_by_stem(folder / "images")
    masks = {
        p.relative_to(folder / "masks").with_suffix("").as_posix(): p
        for p in sorted_files(folder / "masks")
        if p.suffix.lower() == ".png"
    }
    xs, ys, reports = [], [], []
    counts = np.zeros(256, np.int64)  # pixels per class id, in the masks as drawn (before any resize)
    for stem, image_path in images.items():
        image_rel = image_path.relative_to(folder).as_posix()
        if stem not in masks:
            reports.append(f"{image_rel}: no mask masks/{stem}.png (skipped); add the mask or remove the image")
            continue
        mask_rel = masks[stem].relative_to(folder).as_posix()
        mask, problem = read_mask(masks[stem])
        if mask is None:
            reports.append(
                f"{mask_rel}: {problem} (image skipped); save masks as PNGs of class indices or VOC palette colours"
            )
            continue
        top = int(mask[mask != IGNORE].max(initial=0))
        if names is not None and top >= len(names):
            reports.append(
                f"{mask_rel}: class index {top} but the labels file names {len(names)} classes "
                "(image skipped); add the missing names"
            )
            continue
        pixels = read_image(image_path)
        if pixels is None:
            reports.append(f"{image_rel}: cannot read the image (skipped with its mask); replace the file")
            continue
        if pixels.shape[:2] != mask.shape:
            reports.append(
                f"{mask_rel}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{pixels.shape[1]}x{pixels.shape[0]} (skipped); masks must match their image's size"
            )
            continue
        counts += np.bincount(mask.reshape(-1), minlength=256)[:256]
        xs.append(resize_image(pixels, img_size))
        ys.append(cv2.resize(mask, (img_size, img_size), interpolation=cv2.INTER_NEAREST))
    reports += orphan_reports(folder, masks, images, "mask")
    if not xs:
        raise EdgecnnError(f"no usable image/mask pairs in {folder}; expected {LAYOUT}")
    y = np.stack(ys)
    if names is None:
        names = _names_from_counts(folder, counts)
    x, pixel_format = stack_images(xs, channels)
    return SegmentationData(x, y, names, pixel_format, reports)


STRAY_SHARE = 0.001  # a top class id on fewer than 0.1% of the labelled pixels, far above the rest: a stray value


def _names_from_counts(folder: Path, counts: np.ndarray) -> list[str]:
    """Class names 0..top when no labels file names them. A top id that sits alone far above the others on
    a few pixels (one pixel of 200 beside 0..2) is refused: it would make a 201-class segmenter without a
    word. Sparse ids in real use (VOC palette masks showing classes 1 and 15) are kept."""
    counts = counts.copy()
    counts[IGNORE] = 0
    used = np.flatnonzero(counts)
    top = int(used.max(initial=0))
    below = used[used < top]
    next_id = int(below.max(initial=0))
    if top - next_id > 1 and counts[top] < STRAY_SHARE * counts.sum():
        raise EdgecnnError(
            f"{folder}/masks: class id {top} is on {int(counts[top])} pixels only, far above the next id "
            f"{next_id}: a stray mask value? fix the masks, or add labels.txt naming every class"
        )
    return ["background"] + [f"class{i}" for i in range(1, top + 1)]
