"""An image folder with one subfolder per class (the ImageNet / Keras ``image_dataset_from_directory`` layout).

Listed, not loaded: each file's header is checked (unreadable files are reported by path and left out),
and the pixels stay on disk as :class:`~edgecnn.data.files.ImageFiles` until a batch needs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgecnn.core.errors import EdgecnnError
from edgecnn.data.base import ImageData
from edgecnn.data.files import ImageFiles
from edgecnn.data.images import image_header, list_images


def load_folder(folder: Path, img_size: int, channels: int | None = None) -> ImageData:
    if not folder.is_dir():
        raise EdgecnnError(f"data path is not a folder: {folder}; give a folder with one subfolder per class")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise EdgecnnError(f"no class subfolders in {folder}; put each class's images in a subfolder of it")
    pixel_format = "gray" if channels == 1 else "rgb"
    listed = [(label, path) for label, name in enumerate(classes) for path in list_images(folder / name)]
    paths, ys, skipped = [], [], []
    for label, path in tqdm(listed, desc="checking images", unit="img", leave=False, disable=None):
        if image_header(path) is None:
            skipped.append(f"skipped unreadable image: {path}")
            continue
        paths.append(path)
        ys.append(label)
    if not paths:
        first = f" ({len(skipped)} unreadable, e.g. {skipped[0].split(': ', 1)[1]})" if skipped else ""
        raise EdgecnnError(f"no readable images in {folder}{first}; add .jpg/.png files to its class subfolders")
    x = ImageFiles(paths, img_size, pixel_format, folder)
    return ImageData(x, np.asarray(ys, np.int64), classes, pixel_format, skipped)
