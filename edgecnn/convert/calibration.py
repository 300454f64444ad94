"""Representative data for full-integer calibration: real images, random only when asked for."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import ModelInfo
from edgecnn.data.images import list_images, load_image
from edgecnn.data.registry import builtins, model_split

RANDOM = "random"


def calibration_images(
    spec: str | None, info: ModelInfo, val_images: np.ndarray | None, samples: int, seed: int = 0
) -> tuple[np.ndarray, str]:
    """(N, H, W, C) uint8 calibration images and a description of where they came from.

    ``spec``: None (the run's own validation images), a built-in dataset name, a folder of images
    (searched recursively, no class layout needed), or 'random' (uniform noise, with a warning).
    """
    h, w = info.input_size
    rng = np.random.default_rng(seed)
    if spec is None:
        if val_images is None:
            raise EdgecnnError(
                "no calibration data: this model has no record of its dataset; pass --calib digits or --calib DIR"
            )
        images, source = val_images, "the run's validation images"
    elif spec == RANDOM:
        print(
            "warning: calibrating on random noise (--calib random): int8 accuracy will suffer; "
            "use real images with --calib DIR",
            file=sys.stderr,
        )
        images = rng.integers(0, 256, (samples, h, w, info.channels), dtype=np.uint8)
        source = "random noise"
    elif spec in builtins(info.task):
        images, source = model_split(info, spec).train.x, f"{spec} (train split)"
    else:
        images, source = _folder_images(Path(spec), info, samples, rng)
    if len(images) > samples:
        images = images[np.sort(rng.choice(len(images), samples, replace=False))]
    return images, f"{len(images)} images from {source}"


def _folder_images(folder: Path, info: ModelInfo, samples: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    if not folder.is_dir():
        raise EdgecnnError(
            f"calibration data not found: {folder}; give a folder of images, a dataset name, or 'random'"
        )
    paths = list_images(folder)
    if len(paths) > samples:
        paths = [paths[i] for i in np.sort(rng.choice(len(paths), samples, replace=False))]
    images = [im for im in (load_image(p, info.input_size[0], info.pixel_format) for p in paths) if im is not None]
    if not images:
        raise EdgecnnError(
            f"no readable images in calibration folder {folder}; add .jpg/.png images of the deployment scenes"
        )
    return np.stack(images), str(folder)


def representative_dataset(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The generator the TFLite converter calls: one float32 batch of one image per step."""

    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None].astype(np.float32)]

    return generate
