"""SSD anchors (Liu et al., 2016, "SSD: Single Shot MultiBox Detector", section 2.2) in the layout of
the TFLite detection postprocess: one row ``[ycenter, xcenter, h, w]`` per anchor, normalized to 0..1.

The anchor config is a JSON-able dict that the detector builder derives from its actual feature-map
sizes (so any input size works) and that travels in the model's metadata::

    {"levels": [{"feature_size": [fh, fw], "scale": s_k, "next_scale": s_k+1}, ...],
     "aspect_ratios": [1.0, 2.0, 0.5],
     "interpolated_scale": true}

Level k's scale s_k runs linearly from ``min_scale`` to ``max_scale`` over the levels (SSD eq. 4);
``next_scale`` is s_k+1 (1.0 after the last level). Each cell has one anchor per aspect ratio a
(h = s_k / sqrt(a), w = s_k * sqrt(a)) and, with ``interpolated_scale``, one more square anchor of side
sqrt(s_k s_k+1). Anchors are listed level by level, then row-major over the cells (y, then x), then
by anchor within a cell: exactly the order in which a head's (1, fh, fw, k * 4) output reshapes to
(1, fh * fw * k, 4).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError

ASPECT_RATIOS = (1.0, 2.0, 0.5)
MIN_SCALE = 0.1
MAX_SCALE = 0.9


def level_scales(levels: int, min_scale: float = MIN_SCALE, max_scale: float = MAX_SCALE) -> list[float]:
    """SSD's linear scales s_1..s_m for ``levels`` levels (a single level gets ``min_scale``)."""
    if levels == 1:
        return [min_scale]
    return [min_scale + (max_scale - min_scale) * k / (levels - 1) for k in range(levels)]


def anchor_config(
    feature_sizes: list[tuple[int, int]],
    min_scale: float = MIN_SCALE,
    max_scale: float = MAX_SCALE,
    aspect_ratios: tuple[float, ...] = ASPECT_RATIOS,
    interpolated_scale: bool = True,
) -> dict[str, Any]:
    """The anchor config for a head over feature maps of ``feature_sizes`` (height, width), finest first."""
    scales = level_scales(len(feature_sizes), min_scale, max_scale)
    return {
        "levels": [
            {"feature_size": [int(h), int(w)], "scale": round(s, 6), "next_scale": round(s_next, 6)}
            for (h, w), s, s_next in zip(feature_sizes, scales, [*scales[1:], 1.0], strict=True)
        ],
        "aspect_ratios": [float(a) for a in aspect_ratios],
        "interpolated_scale": bool(interpolated_scale),
    }


def anchors_per_cell(config: dict[str, Any]) -> int:
    """k: anchors at each feature-map cell (the same at every level)."""
    return len(config["aspect_ratios"]) + (1 if config.get("interpolated_scale", True) else 0)


def num_anchors(config: dict[str, Any]) -> int:
    """A: the sum over levels of fh * fw * k."""
    k = anchors_per_cell(config)
    return sum(int(lv["feature_size"][0]) * int(lv["feature_size"][1]) * k for lv in config["levels"])


def _cell_shapes(level: dict[str, Any], config: dict[str, Any]) -> np.ndarray:
    """(k, 2) anchor (h, w) of one cell, in the head's channel order."""
    s = float(level["scale"])
    shapes = [(s / np.sqrt(a), s * np.sqrt(a)) for a in config["aspect_ratios"]]
    if config.get("interpolated_scale", True):
        side = float(np.sqrt(s * float(level["next_scale"])))
        shapes.append((side, side))
    return np.asarray(shapes, dtype=np.float64)


def generate_anchors(config: dict[str, Any]) -> np.ndarray:
    """(A, 4) float32 anchors ``[ycenter, xcenter, h, w]``, normalized, in the head's output order."""
    try:
        levels = config["levels"]
        if not levels or not config["aspect_ratios"]:
            raise KeyError("levels")
    except (KeyError, TypeError) as exc:
        raise EdgecnnError(
            f"invalid anchor config {str(config)[:80]!r}: it needs 'levels' and 'aspect_ratios'; "
            "rebuild the model so that its metadata carries the config"
        ) from exc
    rows = []
    for level in levels:
        fh, fw = (int(v) for v in level["feature_size"])
        shapes = _cell_shapes(level, config)
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) / fh, (np.arange(fw) + 0.5) / fw, indexing="ij")
        centers = np.stack([cy.ravel(), cx.ravel()], axis=1)  # (fh * fw, 2), row-major y, x
        k = len(shapes)
        grid = np.concatenate([np.repeat(centers, k, axis=0), np.tile(shapes, (fh * fw, 1))], axis=1)
        rows.append(grid)
    return np.concatenate(rows).astype(np.float32)
