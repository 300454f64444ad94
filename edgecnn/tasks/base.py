"""The Task interface and its registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.metadata import ModelInfo

Progress = Callable[[int], None] | None


class Task:
    """What differs between classification, detection and segmentation along the path.

    ``data`` objects are the task's containers (:class:`~edgecnn.data.base.ImageData`,
    :class:`~edgecnn.data.detection.DetectionData`, :class:`~edgecnn.data.segmentation.SegmentationData`):
    each has ``x`` (N, H, W, C) uint8, ``labels``, ``pixel_format``, ``subset`` and ``len``.
    Methods marked (TF) import TensorFlow; the others run on the light runtime.
    """

    name: str = ""
    metric: str = ""  # the headline metric's key in a metrics dict
    metric_title: str = ""  # how reports name it
    default_data: str = ""  # the built-in dataset the task trains on by default
    reference_classes: int = 1000  # classes for sizing an architecture out of context (ImageNet, COCO, VOC)

    @property
    def builtins(self) -> tuple[str, ...]:
        """Names ``--data`` and ``--calib`` accept besides folders."""
        return (self.default_data,)

    # -- data ----------------------------------------------------------------------------
    def load(self, spec: str, img: int, channels: int | None, seed: int, val_fraction: float) -> Any:
        """A split with ``train`` and ``val`` containers, resized to ``img`` x ``img``."""
        raise NotImplementedError

    def num_outputs(self, data: Any) -> int:
        """The ``num_classes`` the architecture is built with."""
        return len(data.labels)

    # -- training (TF) ---------------------------------------------------------------------
    def compile(self, model: Any, info: ModelInfo, lr: float, total_steps: int | None) -> None:
        """Loss, optimizer (cosine decay of ``lr`` over ``total_steps``; None: constant) and training metrics."""
        raise NotImplementedError

    def dataset(self, info: ModelInfo, data: Any, batch: int, seed: int, augment: bool, train: bool) -> Any:
        """A tf.data pipeline of (float pixels, targets); ``info.extra`` has what targets need (anchors)."""
        raise NotImplementedError

    # -- metrics ----------------------------------------------------------------------------
    def evaluate_keras(self, model: Any, info: ModelInfo, data: Any) -> dict[str, Any]:
        """Metrics of a Keras model on ``data`` (TF)."""
        raise NotImplementedError

    def evaluate_tflite(self, runner: Any, data: Any, progress: Progress = None) -> dict[str, Any]:
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

    def to_tflite(self, model: Any, info: ModelInfo, fmt: str, io: str, calib: np.ndarray | None) -> bytes:
        from edgecnn.convert.tflite import to_tflite

        return to_tflite(self.deployable(model), fmt, io, calib)

    def summary(self, result: dict[str, Any]) -> str:
        """The headline metric as text, e.g. 'top-1 97.77%'."""
        value = result.get(self.metric)
        return f"{self.metric_title} {100 * value:.2f}%" if value is not None else f"{self.metric_title} n/a"


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def _load_tasks() -> None:
    from edgecnn.tasks import classify, detect, segment  # noqa: F401  (each registers itself)


def get_task(name: str | None) -> Task:
    """A task by name; None is classification (models and runs from before tasks existed)."""
    _load_tasks()
    name = name or "classify"
    if name not in TASKS:
        raise EdgecnnError(f"unknown task {name!r}; use one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_of_arch(arch: str) -> Task:
    from edgecnn.archs import get_arch

    return get_task(get_arch(arch).task)


def check_task(requested: str | None, actual: str, what: str) -> None:
    """``--task`` is optional everywhere; when given it must agree with the model or architecture."""
    if requested is not None and requested != actual:
        raise EdgecnnError(f"--task {requested} does not match {what}, which is a {actual} model; drop --task")
