"""Occlusion sensitivity (Zeiler & Fergus, 2014): grey out one patch at a time and watch the class score.

No gradients, only predictions, so it explains any model that classifies images, the int8 .tflite on
the Pi included. numpy only (light): ``predict`` is a function from a (N, H, W, C) uint8 batch to class
probabilities (N, classes), e.g. :meth:`edgecnn.runtime.interpreter.TFLiteModel.predict` or a Keras
model's ``predict``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Window:
    """The occluding patch: ``size`` pixels square, moved ``stride`` pixels at a time."""

    size: int
    stride: int

    @staticmethod
    def for_image(h: int, w: int) -> Window:
        """About a fifth of the short side, moved by a third of that: ~10-15 positions per axis, so a map
        costs ~100-250 predictions whatever the input size (a 32x32 digit: 6-pixel patch, stride 2)."""
        size = max(2, round(min(h, w) / 5))
        return Window(size, max(1, size // 3))


def positions(length: int, window: Window) -> list[int]:
    """Patch start offsets along one axis, the last one flush with the edge so every pixel is covered."""
    last = max(0, length - window.size)
    starts = list(range(0, last + 1, window.stride))
    return starts if starts[-1] == last else [*starts, last]


def occluded_batch(image: np.ndarray, window: Window, fill: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Every occluded copy of ``image`` (one patch set to ``fill`` each) and the patches' top-left corners."""
    h, w = image.shape[:2]
    corners = [(y, x) for y in positions(h, window) for x in positions(w, window)]
    batch = np.repeat(image[None], len(corners), axis=0)
    for i, (y, x) in enumerate(corners):
        batch[i, y : y + window.size, x : x + window.size] = fill
    return batch, corners


def occlusion_map(
    predict: Predict,
    image: np.ndarray,
    target: int,
    window: Window | None = None,
    fill: float | None = None,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(H, W) float32: how much the probability of class ``target`` drops when each pixel is hidden,
    averaged over the patches that cover it. Positive where the evidence for ``target`` lies.

    ``fill`` defaults to the image's median value: its background for most photos and for the digits,
    so hiding background changes nothing and only the object's patches score.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    window = window or Window.for_image(h, w)
    fill = float(np.median(image)) if fill is None else fill
    base = float(np.asarray(predict(image[None]))[0, target])
    if progress:
        progress(1)
    batch, corners = occluded_batch(image, window, fill)
    scores = []
    for start in range(0, len(batch), batch_size):
        scores.append(np.asarray(predict(batch[start : start + batch_size]))[:, target])
        if progress:
            progress(len(scores[-1]))
    drops = base - np.concatenate(scores)
    total = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    for drop, (y, x) in zip(drops, corners, strict=True):
        total[y : y + window.size, x : x + window.size] += drop
        count[y : y + window.size, x : x + window.size] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def predictions(image_count: int, window: Window, h: int, w: int) -> int:
    """How many predictions :func:`occlusion_map` makes for ``image_count`` images (for a progress bar)."""
    return image_count * (len(positions(h, window)) * len(positions(w, window)) + 1)
