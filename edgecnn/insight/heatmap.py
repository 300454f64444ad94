"""Heatmaps as images a user can open: colour overlays with a caption, grids of them, and the one measure
of where a heatmap's mass lies. numpy + OpenCV only (light: the Pi draws occlusion maps with it)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_SIDE = 256  # small inputs (32x32 digits) are enlarged so the overlay and its caption can be read
CAPTION_H = 22  # pixels per caption line, on a dark band above the image


def normalize(heat: np.ndarray) -> np.ndarray:
    """``heat`` as float32 in [0, 1] (a constant map becomes all zeros; NaN counts as 0)."""
    heat = np.nan_to_num(np.asarray(heat, np.float32))
    low, high = float(heat.min()), float(heat.max())
    return (heat - low) / (high - low) if high > low else np.zeros_like(heat)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Model pixels (H, W, 1) gray or (H, W, 3) RGB, uint8 -> (H, W, 3) BGR for OpenCV."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def enlarge(image: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """Scale up by a whole factor (nearest neighbour: pixels stay visible) until the short side is ``min_side``."""
    factor = max(1, math.ceil(min_side / min(image.shape[:2])))
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) if factor > 1 else image


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap (resized to the image, smoothly) in the JET colour map blended over the image; BGR uint8."""
    base = enlarge(to_bgr(image))
    h, w = base.shape[:2]
    smooth = cv2.resize(normalize(heat), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.uint8(np.round(255 * smooth)), cv2.COLORMAP_JET)
    return cv2.addWeighted(colour, alpha, base, 1.0 - alpha, 0.0)


def caption(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``image`` with ``lines`` written on a dark band above it."""
    band = np.zeros((CAPTION_H * len(lines) + 4, image.shape[1], 3), np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(band, line, (4, CAPTION_H * (i + 1) - 6), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([band, image])


def grid(tiles: Sequence[np.ndarray], cols: int | None = None, gap: int = 4) -> np.ndarray:
    """Tiles (BGR, any sizes) on a dark canvas, row by row, ``cols`` per row (default: near square)."""
    if not tiles:
        raise ValueError("grid needs at least one tile")
    cols = cols or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    canvas = np.full((rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), 32, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile if tile.ndim == 3 else tile[:, :, None]
    return canvas


def mass_ratio(heat: np.ndarray, mask: np.ndarray) -> float:
    """How concentrated ``heat`` is inside ``mask``: its share of the (non-negative) heat mass inside the
    mask divided by the mask's share of the area. A uniform map scores 1.0; above 1 the map points into
    the mask. ``heat`` is resized to the mask's shape first."""
    mask = np.asarray(mask, bool)
    heat = np.clip(np.nan_to_num(np.asarray(heat, np.float32)), 0, None)
    if heat.shape != mask.shape:
        heat = cv2.resize(heat, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
    total, area = float(heat.sum()), float(mask.mean())
    if total <= 0 or area in (0.0, 1.0):
        return 1.0  # no mass, or a mask that is everything or nothing: no preference either way
    return float(heat[mask].sum() / total / area)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a BGR or gray uint8 image (written with the atomic helpers of :mod:`edgecnn.core.fileio`)."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return buf.tobytes()
