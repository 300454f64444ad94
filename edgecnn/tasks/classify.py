"""Image classification: one label per image, softmax probabilities, top-1/top-5 accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.benchmarks.accuracy import classification_metrics
from edgecnn.core.metadata import ModelInfo
from edgecnn.data.files import map_batches, streamed
from edgecnn.runtime.classify import Class, read_classes
from edgecnn.runtime.interpreter import DeployedModel, Outputs
from edgecnn.tasks.base import Progress, Task
from edgecnn.video.overlay import draw_classes


class ClassifyTask(Task):
    name = "classify"
    metric = "top1"
    metric_title = "top-1"
    onnx_output = "probabilities"

    def compile(self, model: Any, info: ModelInfo, lr: float, total_steps: int | None) -> None:
        from edgecnn.trainer.fit import compile_model  # lazy: TensorFlow stays off the light path

        compile_model(model, lr, total_steps, int(model.output_shape[-1]))

    def dataset(self, info: ModelInfo, data: Any, batch: int, seed: int, augment: bool, train: bool) -> Any:
        if streamed(data.x):  # images on disk: decoded as they stream
            from edgecnn.data.stream import classify_stream  # lazy: TensorFlow stays off the light path

            return classify_stream(data, batch, seed, augment and train, train)
        from edgecnn.trainer.fit import make_dataset  # lazy: TensorFlow stays off the light path

        return make_dataset(data.x, data.y, batch, seed, augment and train, train)

    def evaluate_keras(self, model: Any, info: ModelInfo, data: Any) -> dict[str, Any]:
        probs = map_batches(lambda x: model.predict(x.astype(np.float32), batch_size=64, verbose=0), data.x, 1024)
        return {**classification_metrics(probs, data.y, data.labels), "predictions": probs}

    def evaluate_tflite(self, runner: DeployedModel, data: Any, progress: Progress = None) -> dict[str, Any]:
        probs = runner.predict(data.x, progress=progress)
        return {**classification_metrics(probs, data.y, data.labels), "predictions": probs}

    def format_metrics(self, result: dict[str, Any]) -> list[str]:
        lines = [
            f"  top-1 {100 * result['top1']:.2f}%"
            + (f"  top-5 {100 * result['top5']:.2f}%" if "top5" in result else "")
        ]
        per_class = "  ".join(f"{k}:{100 * v:.0f}%" for k, v in result["per_class"].items() if v is not None)
        lines.append(f"  per class: {per_class}")
        return lines

    def agreement(self, keras_result: dict[str, Any], tflite_result: dict[str, Any]) -> dict[str, float]:
        a, b = keras_result["predictions"], tflite_result["predictions"]
        return {"top1_agreement": round(float((a.argmax(1) == b.argmax(1)).mean()), 4)}

    def metadata_outputs(self, flatbuffer: Any) -> Any:
        from edgecnn.convert.tflite_metadata import classify_outputs  # lazy: conversion imports TensorFlow

        return classify_outputs(flatbuffer)

    def read(
        self, model: DeployedModel | Outputs, frame_shape: tuple[int, ...], top_k: int, threshold: float
    ) -> list[Class]:
        return read_classes(model, top_k)

    def draw(self, frame: np.ndarray, result: list[Class]) -> np.ndarray:
        return draw_classes(frame, result)

    def describe(self, result: list[Class]) -> list[str]:
        return [f"{c.label} {c.score:.2f}" for c in result]
