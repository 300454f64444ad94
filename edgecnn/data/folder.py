"""An image folder with one subfolder per class (the ImageNet / Keras ``image_dataset_from_directory`` layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.data.base import ImageData
from edgecnn.data.images import list_images, load_image
from edgecnn.errors import EdgecnnError


def load_folder(folder: Path, img_size: int, channels: int | None = None) -> ImageData:
    if not folder.is_dir():
        raise EdgecnnError(f"data path is not a folder: {folder}; give a folder with one subfolder per class")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise EdgecnnError(f"no class subfolders in {folder}; put each class's images in a subfolder of it")
    pixel_format = "gray" if channels == 1 else "rgb"
    xs, ys, skipped = [], [], []
    for label, name in enumerate(classes):
        for path in list_images(folder / name):
            image = load_image(path, img_size, pixel_format)
            if image is None:
                skipped.append(f"skipped unreadable image: {path}")
                continue
            xs.append(image)
            ys.append(label)
    if not xs:
        first = f" ({len(skipped)} unreadable, e.g. {skipped[0].split(': ', 1)[1]})" if skipped else ""
        raise EdgecnnError(f"no readable images in {folder}{first}; add .jpg/.png files to its class subfolders")
    return ImageData(np.stack(xs), np.asarray(ys, np.int64), classes, pixel_format, skipped)
