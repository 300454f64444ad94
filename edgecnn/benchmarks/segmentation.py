"""Segmentation accuracy from one confusion matrix: IoU per class, mean IoU, pixel accuracy (no TensorFlow).

Pixels whose true label is ``ignore`` (255: borders, unlabelled) are left out entirely. The IoU of a
class is TP / (TP + FP + FN) over all the images' pixels together (the PASCAL VOC definition, not a
mean of per-image IoUs); a class that appears neither in the truth nor in the predictions has no
IoU (None) and is left out of the mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore: int = 255) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows the true class, columns the predicted one."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise EdgecnnError(f"predictions {pred.shape} and masks {truth.shape} differ in shape; give one mask per image")
    keep = truth != ignore
    t = truth[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    for what, ids in (("mask", t), ("prediction", p)):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            bad = int(ids.max() if ids.max() >= num_classes else ids.min())
            raise EdgecnnError(
                f"{what} class id {bad} is outside 0..{num_classes - 1}; "
                f"the labels list has {num_classes} names and {ignore} marks ignored pixels"
            )
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray, labels: list[str], ignore: int = 255) -> dict[str, Any]:
    """Metrics of (N, H, W) predicted class ids against (N, H, W) uint8 true masks.

    Returns ``miou``, ``per_class_iou`` ({label: IoU or None}), ``pixel_accuracy``, ``confusion``
    (list of lists, rows true, columns predicted) and ``images``.
    """
    n = len(labels)
    confusion = confusion_matrix(pred, truth, n, ignore)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    ious = [float(tp[i] / union[i]) if union[i] else None for i in range(n)]
    present = [v for v in ious if v is not None]
    total = int(confusion.sum())
    return {
        "images": int(np.asarray(truth).shape[0]) if np.ndim(truth) == 3 else 1,
        "miou": round(float(np.mean(present)), 4) if present else 0.0,
        "per_class_iou": {labels[i]: None if v is None else round(v, 4) for i, v in enumerate(ious)},
        "pixel_accuracy": round(float(tp.sum() / total), 4) if total else 0.0,
        "confusion": confusion.tolist(),
    }
