"""What a convolution has learned and what it sees: its kernels as small images, and its output channels
(feature maps) for one input image, each as a grid of tiles."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import tf
from edgecnn.insight.heatmap import grid
from edgecnn.insight.layers import capture, is_conv, spatial_output

TILE = 48  # pixels per filter tile: a 5x5 kernel drawn at ~10x
MAX_MAPS = 64  # feature-map channels drawn (the first ones); a 1280-channel map would not be readable


def kernel_of(layer: Any) -> np.ndarray:
    """The spatial kernel (kh, kw, in, out): a depthwise kernel's (kh, kw, in, multiplier) is one
    filter per input channel, so it is laid out as (kh, kw, 1, in * multiplier)."""
    if not is_conv(layer):
        raise EdgecnnError(f"layer {layer.name!r} is not a convolution; give --filters a Conv2D/DepthwiseConv2D layer")
    depthwise = getattr(layer, "depthwise_kernel", None)
    if depthwise is not None:
        k = depthwise.numpy()
        return k.reshape(k.shape[0], k.shape[1], 1, -1)
    return layer.kernel.numpy()


def filter_images(kernel: np.ndarray) -> list[np.ndarray]:
    """One BGR uint8 tile per output filter. Three input channels are drawn in colour (a first layer on
    RGB pixels), one as gray, more as their mean. Each filter is scaled symmetrically about zero, so
    mid-gray is a zero weight."""
    kh, kw, cin, cout = kernel.shape
    tiles = []
    for k in range(cout):
        w = kernel[:, :, :, k]
        w = w if cin in (1, 3) else w.mean(axis=-1, keepdims=True)
        peak = float(np.abs(w).max()) or 1.0
        pixels = np.uint8(np.round(127.5 + 127.5 * w / peak))
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2)
        scale = max(1, TILE // max(kh, kw))
        tiles.append(cv2.resize(pixels, (kw * scale, kh * scale), interpolation=cv2.INTER_NEAREST))
    return tiles


def feature_maps(model: Any, layer: Any, pixels: np.ndarray) -> np.ndarray:
    """``layer``'s output (h, w, channels) for one image (H, W, C) of raw 0..255 pixels."""
    spatial_output(layer, "--maps")
    with capture(layer) as seen:
        model(tf.convert_to_tensor(pixels[None].astype(np.float32)), training=False)
    return np.asarray(seen[-1])[0]


def map_images(maps: np.ndarray, limit: int = MAX_MAPS) -> list[np.ndarray]:
    """The first ``limit`` channels as viridis tiles (each scaled to its own range), at least TILE pixels."""
    h, w, _ = maps.shape
    scale = max(1, TILE // max(h, w))
    tiles = []
    for c in range(min(limit, maps.shape[-1])):
        m = maps[:, :, c].astype(np.float32)
        low, high = float(m.min()), float(m.max())
        gray = np.uint8(np.round(255 * (m - low) / (high - low))) if high > low else np.zeros((h, w), np.uint8)
        tile = cv2.applyColorMap(gray, cv2.COLORMAP_VIRIDIS)
        tiles.append(cv2.resize(tile, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST))
    return tiles


def filter_grid(layer: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """The grid image of ``layer``'s filters and its kernel shape."""
    kernel = kernel_of(layer)
    return grid(filter_images(kernel)), tuple(int(d) for d in kernel.shape)


def maps_grid(model: Any, layer: Any, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid image of ``layer``'s feature maps for ``pixels`` and the maps themselves."""
    maps = feature_maps(model, layer, pixels)
    return grid(map_images(maps)), maps
