"""Decoding and NMS settings, and the numpy copy of ``TFLite_Detection_PostProcess`` that scores Keras models.

:data:`DEFAULT_NMS` is the one place the settings live: they are baked into the .tflite's postprocess
op, recorded in its metadata, and used by :func:`postprocess` for the Keras model, so Keras and
.tflite mAP compare like for like. Light: numpy and OpenCV only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.detection.targets import decode


@dataclass(frozen=True)
class NmsSettings:
    max_detections: int = 25
    score_threshold: float = 0.05
    iou_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.max_detections < 1:
            raise EdgecnnError(f"max_detections must be 1 or more, got {self.max_detections}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise EdgecnnError(f"the NMS IoU threshold must be in (0, 1], got {self.iou_threshold}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise EdgecnnError(f"the score threshold must be in [0, 1], got {self.score_threshold}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_NMS = NmsSettings()


def postprocess(
    encodings: np.ndarray,
    scores: np.ndarray,
    anchors: np.ndarray,
    box_scale: list[float],
    nms: NmsSettings = DEFAULT_NMS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw outputs (A, 4) and (A, C) -> (boxes yxyx normalized, class ids, scores), best first.

    Each anchor keeps its best class (the op's max_classes_per_detection=1), then one NMS over all
    classes, as ``TFLite_Detection_PostProcess`` does with use_regular_nms=false. NMS is OpenCV's.
    """
    boxes = decode(encodings, anchors, box_scale)
    classes = scores.argmax(axis=1)
    best = scores[np.arange(len(scores)), classes]
    keep = np.flatnonzero(best >= nms.score_threshold)
    if keep.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    yxyx = boxes[keep]
    xywh = np.stack([yxyx[:, 1], yxyx[:, 0], yxyx[:, 3] - yxyx[:, 1], yxyx[:, 2] - yxyx[:, 0]], axis=1)
    # NMSBoxes' top_k caps the candidates that enter NMS, not the survivors: leave it off (all
    # candidates, as the op does) and keep the best max_detections afterwards.
    picked = cv2.dnn.NMSBoxes(xywh.tolist(), best[keep].tolist(), nms.score_threshold, nms.iou_threshold)
    picked = np.asarray(picked, np.int64).reshape(-1)[: nms.max_detections]
    order = keep[picked]
    return boxes[order].astype(np.float32), classes[order].astype(np.int32), best[order].astype(np.float32)
