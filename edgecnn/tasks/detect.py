"""Object detection: boxes, classes and scores per image; COCO mAP@0.5 and mAP@0.5:0.95.

The Keras model outputs raw box encodings and per-anchor class scores; the deployed .tflite ends in
the standard ``TFLite_Detection_PostProcess`` op (decode + NMS), so its outputs are the four that
TFLite/pycoral detection code reads. The Keras model is evaluated through :func:`postprocess`, a
numpy copy of that op's decoding and class-agnostic ("fast") NMS, so Keras and .tflite mAP compare
like for like.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgecnn.metadata import ModelInfo
from edgecnn.tasks.base import Progress, Task, register_task

# Decoding and NMS settings, baked into the .tflite's postprocess op and recorded in its metadata.
POSTPROCESS = {"max_detections": 25, "score_threshold": 0.05, "iou_threshold": 0.5}


def postprocess(
    encodings: np.ndarray,
    scores: np.ndarray,
    anchors: np.ndarray,
    box_scale: list[float],
    max_detections: int = POSTPROCESS["max_detections"],
    score_threshold: float = POSTPROCESS["score_threshold"],
    iou_threshold: float = POSTPROCESS["iou_threshold"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw outputs (A, 4) and (A, C) -> (boxes yxyx normalized, class ids, scores), best first.

    Each anchor keeps its best class (the op's max_classes_per_detection=1), then one NMS over all
    classes, as ``TFLite_Detection_PostProcess`` does with use_regular_nms=false. NMS is OpenCV's.
    """
    from edgecnn.detection.targets import decode

    boxes = decode(encodings, anchors, box_scale)
    classes = scores.argmax(axis=1)
    best = scores[np.arange(len(scores)), classes]
    keep = np.flatnonzero(best >= score_threshold)
    if keep.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    yxyx = boxes[keep]
    xywh = np.stack([yxyx[:, 1], yxyx[:, 0], yxyx[:, 3] - yxyx[:, 1], yxyx[:, 2] - yxyx[:, 0]], axis=1)
    # NMSBoxes' top_k caps the candidates that enter NMS, not the survivors: leave it off (all
    # candidates, as the op does) and keep the best max_detections afterwards.
    picked = cv2.dnn.NMSBoxes(xywh.tolist(), best[keep].tolist(), score_threshold, iou_threshold)
    picked = np.asarray(picked, np.int64).reshape(-1)[:max_detections]
    order = keep[picked]
    return boxes[order].astype(np.float32), classes[order].astype(np.int32), best[order].astype(np.float32)


def _anchors(info: ModelInfo) -> tuple[np.ndarray, list[float]]:
    from edgecnn.detection.anchors import generate_anchors

    return generate_anchors(info.extra["anchors"]), list(info.extra["box_scale"])


class DetectTask(Task):
    name = "detect"
    metric = "map50"
    metric_title = "mAP@0.5"
    default_data = "shapes"
    reference_classes = 90  # COCO

    def load(self, spec: str, img: int, channels: int | None, seed: int, val_fraction: float) -> Any:
        from edgecnn.data.detection import load_detection

        return load_detection(spec, img, channels, seed, val_fraction)

    def compile(self, model: Any, info: ModelInfo, lr: float, total_steps: int | None) -> None:
        from edgecnn.detection.loss import compile_detector

        compile_detector(model, lr, total_steps)

    def dataset(self, info: ModelInfo, data: Any, batch: int, seed: int, augment: bool, train: bool) -> Any:
        from edgecnn.detection.loss import make_dataset

        anchors, box_scale = _anchors(info)
        return make_dataset(
            data.x,
            data.boxes,
            data.classes,
            anchors,
            box_scale,
            len(data.labels),
            batch,
            seed,
            augment and train,
            train,
        )

    def _metrics(self, detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]], data: Any) -> dict[str, Any]:
        from edgecnn.benchmarks.detection import coco_map

        boxes, classes, scores = (list(d) for d in zip(*detections, strict=True)) if detections else ([], [], [])
        size = tuple(int(v) for v in data.x.shape[1:3])
        result = coco_map(data.boxes, data.classes, boxes, classes, scores, list(data.labels), size)
        return {**result, "predictions": detections}

    def evaluate_keras(self, model: Any, info: ModelInfo, data: Any) -> dict[str, Any]:
        anchors, box_scale = _anchors(info)
        encodings, scores = model.predict(data.x.astype(np.float32), batch_size=32, verbose=0)
        detections = [postprocess(e, s, anchors, box_scale) for e, s in zip(encodings, scores, strict=True)]
        return self._metrics(detections, data)

    def evaluate_tflite(self, runner: Any, data: Any, progress: Progress = None) -> dict[str, Any]:
        from edgecnn.runtime.detect import read_detections

        detections = []
        for image in data.x:
            runner.set_input(image)
            runner.invoke()
            boxes, classes, scores, count = read_detections(runner)
            detections.append((boxes[:count], classes[:count].astype(np.int32), scores[:count]))
            if progress:
                progress(1)
        return self._metrics(detections, data)

    def to_tflite(self, model: Any, info: ModelInfo, fmt: str, io: str, calib: np.ndarray | None) -> bytes:
        from edgecnn.detection.postprocess import to_tflite_detection

        return to_tflite_detection(model, info.extra, fmt, io, calib, **POSTPROCESS)

    def agreement(self, keras_result: dict[str, Any], tflite_result: dict[str, Any]) -> dict[str, float]:
        """Share of the Keras model's confident detections (score >= 0.4) that the .tflite also finds
        (same class, IoU >= 0.5)."""
        from edgecnn.detection.targets import iou

        found = total = 0
        for (kb, kc, ks), (tb, tc, _) in zip(keras_result["predictions"], tflite_result["predictions"], strict=True):
            for box, cls in zip(kb[ks >= 0.4], kc[ks >= 0.4], strict=True):
                total += 1
                same = tc == cls
                found += bool(same.any() and iou(box[None], tb[same]).max() >= 0.5)
        return {"detection_agreement": round(found / total, 4) if total else 1.0}

    def format_metrics(self, result: dict[str, Any]) -> list[str]:
        per_class = "  ".join(f"{k}:{100 * v:.1f}%" for k, v in result["per_class_ap50"].items() if v is not None)
        return [
            f"  mAP@0.5 {100 * result['map50']:.2f}%  mAP@0.5:0.95 {100 * result['map']:.2f}%",
            f"  AP@0.5 per class: {per_class}",
        ]


register_task(DetectTask())
