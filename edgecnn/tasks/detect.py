"""Object detection: boxes, classes and scores per image; COCO mAP@0.5 and mAP@0.5:0.95.

The Keras model outputs raw box encodings and per-anchor class scores; the deployed .tflite ends in
the standard ``TFLite_Detection_PostProcess`` op (decode + NMS), so its outputs are the four that
TFLite/pycoral detection code reads. The Keras model is evaluated through :func:`~edgecnn.detection.nms.postprocess`, a
numpy copy of that op's decoding and class-agnostic ("fast") NMS, so Keras and .tflite mAP compare
like for like.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.benchmarks.detection import coco_map
from edgecnn.core.metadata import ModelInfo
from edgecnn.data.files import image_batches, streamed
from edgecnn.detection.anchors import generate_anchors
from edgecnn.detection.nms import DEFAULT_NMS, postprocess
from edgecnn.detection.targets import iou
from edgecnn.runtime.detect import Detection, read_detections, read_objects
from edgecnn.runtime.interpreter import DeployedModel, Outputs
from edgecnn.tasks.base import Progress, Task
from edgecnn.video.overlay import draw_detections


def _anchors(info: ModelInfo) -> tuple[np.ndarray, list[float]]:
    return generate_anchors(info.extra["anchors"]), list(info.extra["box_scale"])


class DetectTask(Task):
    name = "detect"
    metric = "map50"
    metric_title = "mAP@0.5"
    reference_classes = 90  # COCO

    def compile(self, model: Any, info: ModelInfo, lr: float, total_steps: int | None) -> None:
        from edgecnn.trainer.fit import compile_detector  # lazy: TensorFlow stays off the light path

        compile_detector(model, lr, total_steps)

    def dataset(self, info: ModelInfo, data: Any, batch: int, seed: int, augment: bool, train: bool) -> Any:
        from edgecnn.detection.loss import make_dataset  # lazy: TensorFlow stays off the light path

        anchors, box_scale = _anchors(info)
        if streamed(data.x):  # images on disk: decoded, and their targets assigned, as they stream
            from edgecnn.data.stream import detect_stream  # lazy: TensorFlow stays off the light path

            return detect_stream(data, anchors, box_scale, batch, seed, augment and train, train)
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
        boxes, classes, scores = (list(d) for d in zip(*detections, strict=True)) if detections else ([], [], [])
        size = (int(data.x.shape[1]), int(data.x.shape[2]))
        result = coco_map(data.boxes, data.classes, boxes, classes, scores, list(data.labels), size)
        return {**result, "predictions": detections}

    def evaluate_keras(self, model: Any, info: ModelInfo, data: Any) -> dict[str, Any]:
        anchors, box_scale = _anchors(info)
        detections = []
        for images in image_batches(data.x, 256):  # raw outputs of a batch at a time: (N, anchors, classes) is big
            encodings, scores = model.predict(images.astype(np.float32), batch_size=32, verbose=0)
            detections += [postprocess(e, s, anchors, box_scale) for e, s in zip(encodings, scores, strict=True)]
        return self._metrics(detections, data)

    def evaluate_tflite(self, runner: DeployedModel, data: Any, progress: Progress = None) -> dict[str, Any]:
        detections = []
        for image in data.x:
            runner.set_input(image)
            runner.invoke()
            boxes, classes, scores, count = read_detections(runner)
            detections.append((boxes[:count], classes[:count].astype(np.int32), scores[:count]))
            if progress:
                progress(1)
        return self._metrics(detections, data)

    def export_graph(self, model: Any, info: ModelInfo) -> Any:
        from edgecnn.detection.postprocess import detection_graph  # lazy: TensorFlow stays off the light path

        return detection_graph(model, info.extra, DEFAULT_NMS)

    def onnx_function(self, model: Any, info: ModelInfo) -> Any:
        """The decoding and NMS of the postprocess op in standard ops, with its four outputs (ONNX has no
        ``TFLite_Detection_PostProcess``)."""
        from edgecnn.convert.onnx import detection_function  # lazy: conversion imports TensorFlow

        return detection_function(model, info)

    def metadata_outputs(self, flatbuffer: Any) -> Any:
        from edgecnn.convert.tflite_metadata import detect_outputs  # lazy: conversion imports TensorFlow

        return detect_outputs(flatbuffer)

    def agreement(self, keras_result: dict[str, Any], tflite_result: dict[str, Any]) -> dict[str, float]:
        """Share of the Keras model's confident detections (score >= 0.4) that the .tflite also finds
        (same class, IoU >= 0.5)."""
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

    def read(
        self, model: DeployedModel | Outputs, frame_shape: tuple[int, ...], top_k: int, threshold: float
    ) -> list[Detection]:
        return read_objects(model, frame_shape, threshold)

    def draw(self, frame: np.ndarray, result: list[Detection]) -> np.ndarray:
        return draw_detections(frame, result)

    def describe(self, result: list[Detection]) -> list[str]:
        return [f"{d.label} {d.score:.2f} at {list(d.box)}" for d in result]
