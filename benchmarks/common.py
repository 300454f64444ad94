"""Shared setup for the benchmark scripts: a MobileNetV2 224 converted to float32 and int8.

The weights are random (seeded): latency does not depend on weight values, and no weights can be
downloaded here. Calibration uses real photos shipped with scikit-image, so activation ranges
are those of natural images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "benchmarks"


def photo_folder(out: Path, crops_per_photo: int = 8) -> Path:
    """Random 224x224 crops of scikit-image's sample photos, written as PNGs."""
    from skimage import data as skdata

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "camera",
        "immunohistochemistry",
        "retina",
        "hubble_deep_field",
    ]
    for name in names:
        image = getattr(skdata, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        image = image[..., :3]
        h, w = image.shape[:2]
        for i in range(crops_per_photo):
            size = int(rng.integers(min(h, w) // 2, min(h, w)))
            y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            crop = cv2.resize(np.ascontiguousarray(image[y : y + size, x : x + size]), (224, 224))
            cv2.imwrite(str(out / f"{name}_{i}.png"), crop[..., ::-1])
    return out


def mobilenet_v2_224(formats: tuple[str, ...] = ("float32", "int8")) -> dict[str, Path]:
    """Build (once) MobileNetV2 1.0 224 with 1000 classes and convert it; returns format -> .tflite path."""
    from edgecnn.archs import create
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.core.metadata import ModelInfo
    from edgecnn.pipelines.convert import ConvertOptions, convert

    CACHE.mkdir(parents=True, exist_ok=True)
    keras_path = CACHE / "mobilenet_v2_224.keras"
    if not keras_path.exists():
        keras.utils.set_random_seed(0)
        model = create("mobilenet_v2", 1000, 224, 3)
        info = ModelInfo(labels=[str(i) for i in range(1000)], input_size=[224, 224], channels=3, arch="mobilenet_v2")
        save_keras(model, keras_path, info)
    calib = photo_folder(CACHE / "photos")
    out = {}
    for fmt in formats:
        path = CACHE / f"mobilenet_v2_224_{fmt}.tflite"
        if not path.exists():
            print(f"converting {fmt} ...", file=sys.stderr)
            convert(keras_path, path, ConvertOptions(format=fmt, calib=str(calib), evaluate=False))
        out[fmt] = path
    return out


def int8_model(arch: str, classes: int, size: int = 224) -> Path:
    """Build (once) ``arch`` at ``size`` with seeded random weights and convert it to int8 (uint8 I/O),
    calibrated on the photo crops; any task (the detector's anchors go into its record)."""
    from edgecnn.archs import create, get_arch
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.core.metadata import ModelInfo
    from edgecnn.pipelines.convert import ConvertOptions, convert

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{arch}_{size}_int8.tflite"
    if path.exists():
        return path
    keras.utils.set_random_seed(0)
    model = create(arch, classes, size, 3)
    info = ModelInfo(
        task=get_arch(arch).task,
        labels=[str(i) for i in range(classes)],
        input_size=[size, size],
        channels=3,
        arch=arch,
        extra=dict(model.edgecnn_extra),
    )
    keras_path = save_keras(model, CACHE / f"{arch}_{size}.keras", info)
    print(f"converting {arch} to int8 ...", file=sys.stderr)
    convert(keras_path, path, ConvertOptions(format="int8", calib=str(photo_folder(CACHE / "photos")), evaluate=False))
    return path


def video_640x480(frames: int = 300) -> Path:
    """An .mp4 of 640x480 frames panning over scikit-image's sample photos: a stand-in for a camera."""
    from skimage import data as skdata

    path = CACHE / f"pan_640x480_{frames}.mp4"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    photos = [
        cv2.resize(getattr(skdata, n)()[..., :3][..., ::-1], (960, 720)) for n in ("astronaut", "coffee", "chelsea")
    ]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for i in range(frames):
        photo = photos[(i // 100) % len(photos)]
        x, y = (i * 3) % 320, (i * 2) % 240
        writer.write(np.ascontiguousarray(photo[y : y + 480, x : x + 640]))
    writer.release()
    return path
