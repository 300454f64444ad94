"""COCO detection metrics (mAP@0.5, mAP@0.5:0.95, AP@0.5 per class) with pycocotools, built in memory.

Ground truth and predictions are normalized ``[ymin, xmin, ymax, xmax]`` boxes (the TFLite detection
convention); they are scaled to ``image_size`` pixels and written into COCO structures directly: no
annotation files, and pycocotools' progress prints are swallowed. Numbers are COCOeval's own
(101-point interpolated precision, up to 100 detections per image, all areas), so they compare with
published COCO-style results.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError


def _xywh(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalized yxyx -> COCO pixel [x, y, w, h]."""
    b = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0.0, 1.0)
    return np.stack(
        [b[:, 1] * width, b[:, 0] * height, (b[:, 3] - b[:, 1]) * width, (b[:, 2] - b[:, 0]) * height], axis=1
    )


def _annotations(
    boxes: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray] | None,
    height: int,
    width: int,
) -> list[dict[str, Any]]:
    annotations: list[dict[str, Any]] = []
    for image_id, (b, c) in enumerate(zip(boxes, classes, strict=True)):
        xywh = _xywh(b, height, width)
        ids = np.asarray(c).reshape(-1)
        if len(ids) != len(xywh):
            raise EdgecnnError(f"image {image_id}: {len(xywh)} boxes but {len(ids)} classes; give one class per box")
        s = np.ones(len(ids)) if scores is None else np.asarray(scores[image_id], np.float64).reshape(-1)
        for box, cls, score in zip(xywh, ids, s, strict=True):
            ann = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(cls) + 1,  # COCO ids start at 1
                "bbox": [float(v) for v in box],
                "area": float(box[2] * box[3]),
                "iscrowd": 0,
            }
            if scores is not None:
                ann["score"] = float(score)
            annotations.append(ann)
    return annotations


def _coco(images: list[dict[str, Any]], categories: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> Any:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco


def coco_map(
    truth_boxes: Sequence[np.ndarray],
    truth_classes: Sequence[np.ndarray],
    pred_boxes: Sequence[np.ndarray],
    pred_classes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    labels: list[str],
    image_size: tuple[int, int],
) -> dict[str, Any]:
    """COCO box metrics over a set of images: one (K, 4) normalized yxyx array and one (K,) class-id array
    per image on each side, plus (K,) prediction scores; ``image_size`` is (height, width) in pixels.

    Returns ``map50``, ``map`` (0.5:0.95), ``per_class_ap50`` {label: AP, or None for a class with no
    ground truth} and ``images``. With no ground truth at all the mAPs are 0.0.
    """
    from pycocotools.cocoeval import COCOeval

    n = len(truth_boxes)
    if not (len(truth_classes) == len(pred_boxes) == len(pred_classes) == len(pred_scores) == n):
        raise EdgecnnError(
            f"coco_map needs the same number of images on each side: {n} ground truths, {len(pred_boxes)} predictions"
        )
    height, width = (int(v) for v in image_size)
    images = [{"id": i, "height": height, "width": width} for i in range(n)]
    categories = [{"id": i + 1, "name": str(name)} for i, name in enumerate(labels)]
    truth = _annotations(truth_boxes, truth_classes, None, height, width)
    preds = _annotations(pred_boxes, pred_classes, pred_scores, height, width)
    result: dict[str, Any] = {"map50": 0.0, "map": 0.0, "per_class_ap50": {str(k): None for k in labels}, "images": n}
    if not truth:
        return result
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        evaluation = COCOeval(_coco(images, categories, truth), _coco(images, categories, preds), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    result["map"] = max(float(evaluation.stats[0]), 0.0)
    result["map50"] = max(float(evaluation.stats[1]), 0.0)
    # precision: (IoU thresholds, recall points, classes, area ranges, max detections); IoU 0.5, all areas, 100
    precision = evaluation.eval["precision"][0, :, :, 0, -1]
    for k, name in enumerate(labels):
        p = precision[:, k]
        result["per_class_ap50"][str(name)] = float(p[p > -1].mean()) if (p > -1).any() else None
    return result
