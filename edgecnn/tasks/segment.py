"""Semantic segmentation: a class per pixel (0 = background), softmax maps, mean IoU."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.benchmarks.segmentation import segmentation_metrics
from edgecnn.core.metadata import ModelInfo
from edgecnn.runtime.interpreter import DeployedModel, Outputs
from edgecnn.runtime.segment import Segmentation, read_segmentation
from edgecnn.tasks.base import Progress, Task
from edgecnn.video.overlay import draw_segmentation


class SegmentTask(Task):
    name = "segment"
    metric = "miou"
    metric_title = "mean IoU"
    reference_classes = 21  # PASCAL VOC
    # Cross-entropy plus soft Dice: on shapes-seg at 20 epochs mIoU 0.55 -> 0.74 (seed 0) and 0.47 -> 0.53
    # (seed 1) over cross-entropy alone; the Dice term lifts classes the CE leaves rarely predicted.
    dice_weight = 1.0

    def compile(self, model: Any, info: ModelInfo, lr: float, total_steps: int | None) -> None:
        from edgecnn.core.keras_env import keras  # lazy: TensorFlow stays off the light path
        from edgecnn.segmentation.loss import segmentation_loss  # lazy: as above
        from edgecnn.trainer.fit import learning_rate  # lazy: as above

        model.compile(keras.optimizers.Adam(learning_rate(lr, total_steps)), segmentation_loss(self.dice_weight))

    def deployable(self, model: Any) -> Any:
        """Without the per-pixel softmax (same argmax): the Edge TPU runs SOFTMAX on 1-D inputs only, so
        a (1, H, W, C) softmax would leave the model's end on the CPU."""
        from edgecnn.segmentation import logits_model  # lazy: TensorFlow stays off the light path

        return logits_model(model)

    def dataset(self, info: ModelInfo, data: Any, batch: int, seed: int, augment: bool, train: bool) -> Any:
        from edgecnn.segmentation.loss import make_dataset  # lazy: TensorFlow stays off the light path

        return make_dataset(data.x, data.masks, batch, seed, augment and train, train)

    def _metrics(self, probs: np.ndarray, data: Any) -> dict[str, Any]:
        pred = probs.argmax(-1).astype(np.uint8)
        return {**segmentation_metrics(pred, data.masks, list(data.labels)), "predictions": pred}

    def evaluate_keras(self, model: Any, info: ModelInfo, data: Any) -> dict[str, Any]:
        return self._metrics(model.predict(data.x.astype(np.float32), batch_size=16, verbose=0), data)

    def evaluate_tflite(self, runner: DeployedModel, data: Any, progress: Progress = None) -> dict[str, Any]:
        return self._metrics(runner.predict(data.x, progress=progress), data)

    def agreement(self, keras_result: dict[str, Any], tflite_result: dict[str, Any]) -> dict[str, float]:
        same = keras_result["predictions"] == tflite_result["predictions"]
        return {"pixel_agreement": round(float(same.mean()), 4)}

    def format_metrics(self, result: dict[str, Any]) -> list[str]:
        per_class = "  ".join(f"{k}:{100 * v:.1f}%" for k, v in result["per_class_iou"].items() if v is not None)
        return [
            f"  mean IoU {100 * result['miou']:.2f}%  pixel accuracy {100 * result['pixel_accuracy']:.2f}%",
            f"  IoU per class: {per_class}",
        ]

    def metadata_outputs(self, flatbuffer: Any) -> Any:
        from edgecnn.convert.tflite_metadata import segment_outputs  # lazy: conversion imports TensorFlow

        return segment_outputs(flatbuffer)

    def read(
        self, model: DeployedModel | Outputs, frame_shape: tuple[int, ...], top_k: int, threshold: float
    ) -> Segmentation:
        return read_segmentation(model, frame_shape)

    def draw(self, frame: np.ndarray, result: Segmentation) -> np.ndarray:
        return draw_segmentation(frame, result)

    def describe(self, result: Segmentation) -> list[str]:
        share = result.counts / max(result.ids.size, 1)
        return [f"{result.labels[i]} {100 * share[i]:.0f}% of the frame" for i in np.flatnonzero(share) if i]
