"""The Python API of the light runtime, as pycoral's: one call per task, a BGR frame in, plain results out.

Each function checks that the model was exported for its task (the embedded record says so; a model
without one is a classifier, as before tasks existed), then runs the task's adapter
(:mod:`edgecnn.runtime.classify`, :mod:`~edgecnn.runtime.detect`, :mod:`~edgecnn.runtime.segment`): the
same preprocessing (:func:`edgecnn.runtime.image.prepare`) and decoding the demo, eval and benchmark use.
"""

from __future__ import annotations

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime.classify import Class
from edgecnn.runtime.classify import classify as run_classifier
from edgecnn.runtime.detect import Detection
from edgecnn.runtime.detect import detect as run_detector
from edgecnn.runtime.interpreter import DeployedModel
from edgecnn.runtime.segment import segment as run_segmenter

UNRECORDED_TASK = "classify"  # the task of a model without an edgecnn record (from before tasks existed)


def model_task(model: DeployedModel) -> str:
    """The task the model was exported for, from its embedded record."""
    return model.info.task if model.info else UNRECORDED_TASK


def _require_task(model: DeployedModel, task: str) -> None:
    """A model of another task is a one-line error naming its task and the function that runs it."""
    found = model_task(model)
    if found != task:
        name = getattr(model, "path", "the model")
        raise EdgecnnError(
            f"{name} is a {found} model, not a {task} one; run it with edgecnn.runtime.{found}(model, frame)"
        )


def classify(model: DeployedModel, frame: np.ndarray, top_k: int = 3) -> list[Class]:
    """The ``top_k`` best classes of a BGR uint8 frame (H, W, 3) as OpenCV reads it, best first.

    The frame is resized and converted to the model's pixel format (RGB or gray) here."""
    _require_task(model, "classify")
    return run_classifier(model, frame, k=top_k)


def detect(model: DeployedModel, frame: np.ndarray, threshold: float = 0.5) -> list[Detection]:
    """The objects scoring at least ``threshold`` in a BGR uint8 frame, best first, each with its box
    ``(x0, y0, x1, y1)`` in the frame's pixels."""
    _require_task(model, "detect")
    return run_detector(model, frame, threshold)


def segment(model: DeployedModel, frame: np.ndarray) -> np.ndarray:
    """The class id of every pixel of a BGR uint8 frame: a uint8 array of the frame's (height, width)
    (0 is the background; the model's labels name the ids)."""
    _require_task(model, "segment")
    return run_segmenter(model, frame).mask
