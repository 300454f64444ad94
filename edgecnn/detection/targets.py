"""Box coding and anchor matching in numpy: what training precomputes and what export must invert.

Boxes are normalized ``[ymin, xmin, ymax, xmax]``; anchors are ``[ycenter, xcenter, h, w]``
(:mod:`edgecnn.detection.anchors`). The box code is the Faster R-CNN / TF Object Detection API
center-size coder that the TFLite detection postprocess decodes::

    ty = (yc - ya) / ha * y_scale      th = log(h / ha) * h_scale   (x and w alike)

with ``box_scale = [y_scale, x_scale, h_scale, w_scale] = [10, 10, 5, 5]``: the scales only bring
the targets to a unit-ish range for the regression loss, and they are recorded in the model so the
postprocess op divides by the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgecnn.core.errors import EdgecnnError

BOX_SCALE = (10.0, 10.0, 5.0, 5.0)
BACKGROUND = -1  # class target of an anchor that matches nothing
IGNORE = -2  # class target of an anchor whose best IoU lies between neg_iou and pos_iou: no loss at all
_EPS = 1e-8


def anchors_to_corners(anchors: np.ndarray) -> np.ndarray:
    """``[yc, xc, h, w]`` -> ``[ymin, xmin, ymax, xmax]``."""
    a = np.asarray(anchors, dtype=np.float64)
    half = a[:, 2:] / 2
    return np.concatenate([a[:, :2] - half, a[:, :2] + half], axis=1)


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of two sets of ``[ymin, xmin, ymax, xmax]`` boxes (0 for empty boxes)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, _EPS), 0.0)


def encode(boxes_yxyx: np.ndarray, anchors: np.ndarray, box_scale: Sequence[float] = BOX_SCALE) -> np.ndarray:
    """(A, 4) float32 regression targets of one box per anchor (row i of ``boxes_yxyx`` against anchor i)."""
    b = np.asarray(boxes_yxyx, dtype=np.float64)
    a = np.asarray(anchors, dtype=np.float64)
    sy, sx, sh, sw = (float(s) for s in box_scale)
    h = np.maximum(b[:, 2] - b[:, 0], _EPS)
    w = np.maximum(b[:, 3] - b[:, 1], _EPS)
    yc = b[:, 0] + h / 2
    xc = b[:, 1] + w / 2
    ty = (yc - a[:, 0]) / a[:, 2] * sy
    tx = (xc - a[:, 1]) / a[:, 3] * sx
    th = np.log(h / a[:, 2]) * sh
    tw = np.log(w / a[:, 3]) * sw
    return np.stack([ty, tx, th, tw], axis=1).astype(np.float32)


def decode(encodings: np.ndarray, anchors: np.ndarray, box_scale: Sequence[float] = BOX_SCALE) -> np.ndarray:
    """(A, 4) float32 ``[ymin, xmin, ymax, xmax]``: the TFLite_Detection_PostProcess decoding, in double
    precision then rounded to float32 as the kernel does (no clipping to the image, as the kernel)."""
    e = np.asarray(encodings, dtype=np.float32).astype(np.float64)
    a = np.asarray(anchors, dtype=np.float32).astype(np.float64)
    sy, sx, sh, sw = (float(np.float32(s)) for s in box_scale)
    yc = (e[:, 0] / sy * a[:, 2] + a[:, 0]).astype(np.float32)
    xc = (e[:, 1] / sx * a[:, 3] + a[:, 1]).astype(np.float32)
    half_h = (0.5 * np.exp(e[:, 2] / sh) * a[:, 2]).astype(np.float32)
    half_w = (0.5 * np.exp(e[:, 3] / sw) * a[:, 3]).astype(np.float32)
    return np.stack([yc - half_h, xc - half_w, yc + half_h, xc + half_w], axis=1)


def _force_matches(overlaps: np.ndarray) -> list[tuple[int, int]]:
    """(anchor, gt) pairs giving every ground truth its own best anchor: greedily take the highest
    remaining IoU, then retire that anchor and that box (so two boxes never fight over one anchor)."""
    overlaps = overlaps.copy()
    pairs = []
    for _ in range(overlaps.shape[1]):
        a, g = np.unravel_index(int(np.argmax(overlaps)), overlaps.shape)
        pairs.append((int(a), int(g)))
        overlaps[a, :] = -1.0
        overlaps[:, g] = -1.0
    return pairs


def assign(
    anchors: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    num_classes: int,
    pos_iou: float = 0.5,
    neg_iou: float = 0.4,
    box_scale: Sequence[float] = BOX_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """Match anchors to ground truth: ``(box_targets (A, 4) float32, class_targets (A,) int32)``.

    An anchor whose best IoU is >= ``pos_iou`` is a positive of that box (class id, encoded box);
    below ``neg_iou`` it is background (:data:`BACKGROUND`, -1); in between it is ignored
    (:data:`IGNORE`, -2). Each box then also claims its best anchor whatever the IoU, so small or
    oddly shaped objects always get a positive. Box targets are zero except at positives.
    """
    anchors = np.asarray(anchors, dtype=np.float32)
    count = len(anchors)
    boxes = np.clip(np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4), 0.0, 1.0)
    classes = np.asarray(gt_classes).reshape(-1).astype(np.int64)
    if len(boxes) != len(classes):
        raise EdgecnnError(f"{len(boxes)} ground-truth boxes but {len(classes)} classes; give one class per box")
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise EdgecnnError(
            f"ground-truth class ids must be 0..{num_classes - 1}, got {classes.min()}..{classes.max()}; "
            "check the labels of the detection data"
        )
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # empty boxes match nothing
    boxes, classes = boxes[valid], classes[valid]
    box_targets = np.zeros((count, 4), np.float32)
    class_targets = np.full(count, BACKGROUND, np.int32)
    if not len(boxes):
        return box_targets, class_targets
    overlaps = iou(anchors_to_corners(anchors), boxes)  # (A, G)
    matched = overlaps.argmax(axis=1)
    best = overlaps.max(axis=1)
    class_targets[best >= neg_iou] = IGNORE
    positive = best >= pos_iou
    for a, g in _force_matches(overlaps):
        matched[a] = g
        positive[a] = True
    class_targets[positive] = classes[matched[positive]]
    box_targets[positive] = encode(boxes[matched[positive]], anchors[positive], box_scale)
    return box_targets, class_targets
