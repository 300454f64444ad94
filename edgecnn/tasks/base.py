"""The Task interface: what differs between classification, detection and segmentation along the path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import ModelInfo
from edgecnn.runtime.interpreter import DeployedModel, Outputs

Progress = Callable[[int], None] | None


class Task:
    """What differs between classification, detection and segmentation along the path.

    ``data`` objects are the task's containers (:class:`~edgecnn.data.base.ImageData`,
    :class:`~edgecnn.data.base.DetectionData`, :class:`~edgecnn.data.base.SegmentationData`):
    each has ``x`` (N, H, W, C) uint8, ``labels``, ``pixel_format``, ``subset`` and ``len``. ``x`` is a numpy
    array or, for folders, :class:`~edgecnn.data.files.ImageFiles` (decoded when read): whole-set passes go
    through :func:`~edgecnn.data.files.image_batches`, training through ``dataset``.
    Methods marked (TF) import TensorFlow; the others run on the light runtime. Data loading is the
    dataset table's (:mod:`edgecnn.data.registry`), whose rows name the task they serve. Conversion asks the
    task for its graph, ONNX function and metadata outputs (:func:`edgecnn.convert.export.export`).
    """

    name: str = ""
    metric: str = ""  # the headline metric's key in a metrics dict
    metric_title: str = ""  # how reports name it
    reference_classes: int = 1000  # classes for sizing an architecture out of context (ImageNet, COCO, VOC)
    onnx_output: str = "logits"  # the .onnx output's name when the task exports its deployable model as it is

    def num_outputs(self, data: Any) -> int:
        """The ``num_classes`` the architecture is built with."""
        return len(data.labels)

    # -- training (TF) ---------------------------------------------------------------------
    def compile(self, model: Any, info: ModelInfo, lr: Any, total_steps: int | None) -> None:
        """Loss, optimizer (cosine decay of ``lr`` over ``total_steps``; None: constant; a schedule as ``lr``,
        as ``edgecnn train`` passes with warmup, is used as it is) and training metrics."""
        raise NotImplementedError

    def dataset(self, info: ModelInfo, data: Any, batch: int, seed: int, augment: bool, train: bool) -> Any:
        """A tf.data pipeline of (float pixels, targets); ``info.extra`` has what targets need (anchors)."""
        raise NotImplementedError

    # -- metrics ----------------------------------------------------------------------------
    def evaluate_keras(self, model: Any, info: ModelInfo, data: Any) -> dict[str, Any]:
        """Metrics of a Keras model on ``data`` (TF)."""
        raise NotImplementedError

    def evaluate_tflite(self, runner: DeployedModel, data: Any, progress: Progress = None) -> dict[str, Any]:
        """Metrics of a .tflite (an :class:`~edgecnn.runtime.interpreter.TFLiteModel`) on ``data``."""
        raise NotImplementedError

    def format_metrics(self, result: dict[str, Any]) -> list[str]:
        """Report lines for a metrics dict (eval, train)."""
        raise NotImplementedError

    def agreement(self, keras_result: dict[str, Any], tflite_result: dict[str, Any]) -> dict[str, float]:
        """How often the .tflite and the Keras model give the same answer ('*_agreement' keys, 0..1)."""
        return {}

    # -- conversion (TF) ----------------------------------------------------------------------
    def deployable(self, model: Any) -> Any:
        """The Keras graph that becomes the .tflite (and that the Edge TPU check judges)."""
        return model

    def export_graph(self, model: Any, info: ModelInfo) -> Any:
        """The :class:`~edgecnn.core.graph.Graph` the converter turns into a .tflite (TF)."""
        from edgecnn.core.graph import keras_graph  # lazy: conversion imports TensorFlow

        return keras_graph(self.deployable(model))

    def onnx_function(self, model: Any, info: ModelInfo) -> Any:
        """The batch-1 ``tf.function`` tf2onnx turns into the .onnx (TF): the deployable model as it is, its
        output named :attr:`onnx_output`."""
        from edgecnn.convert.onnx import plain_function  # lazy: conversion imports TensorFlow

        return plain_function(self.deployable(model), self.onnx_output)

    def metadata_outputs(self, flatbuffer: Any) -> Any:
        """The standard TFLite metadata's description of a .tflite's outputs (an
        :class:`edgecnn.convert.tflite_metadata.Outputs`; ``flatbuffer`` is the model as a ``ModelT``)."""
        raise EdgecnnError(f"no standard TFLite metadata for task {self.name!r}")

    # -- the demo (light) -----------------------------------------------------------------------
    def read(self, model: DeployedModel | Outputs, frame_shape: tuple[int, ...], top_k: int, threshold: float) -> Any:
        """The task's result of the model's last run on a frame of ``frame_shape`` (classes, detections or
        a mask): the demo's postprocess stage, after the runtime's ``prepare`` and ``invoke``."""
        raise NotImplementedError

    def draw(self, frame: np.ndarray, result: Any) -> np.ndarray:
        """The task's overlay of :meth:`read`'s result on the frame."""
        raise NotImplementedError

    def describe(self, result: Any) -> list[str]:
        """:meth:`read`'s result in words, one line each (the live view's stats)."""
        raise NotImplementedError

    def summary(self, result: dict[str, Any]) -> str:
        """The headline metric as text, e.g. 'top-1 97.77%'."""
        value = result.get(self.metric)
        return f"{self.metric_title} {100 * value:.2f}%" if value is not None else f"{self.metric_title} n/a"


def check_task(requested: str | None, actual: str, what: str) -> None:
    """``--task`` is optional everywhere; when given it must agree with the model or architecture."""
    if requested is not None and requested != actual:
        raise EdgecnnError(f"--task {requested} does not match {what}, which is a {actual} model; drop --task")
