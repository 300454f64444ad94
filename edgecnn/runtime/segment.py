"""Segmentation adapter: frame in, a class id per frame pixel out (no TensorFlow), as pycoral's ``segment``.

The model's scores are reduced to class ids at the model's resolution (one argmax over the class
axis); the frame-sized mask is the id map resized with nearest-neighbour interpolation (ids are never
blended into other ids), made only when asked for: drawing and class shares work on the small map,
which keeps the demo's decode and draw stages off the inference core's budget (640x480: 1.0 + 1.5 ms
at frame size). Works with a model ending in the per-pixel softmax or in logits (the Edge TPU
deployment): the argmax is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime.image import prepare
from edgecnn.runtime.interpreter import DeployedModel, Outputs


@dataclass(frozen=True)
class Segmentation:
    ids: np.ndarray  # (h, w) uint8 class ids at the model's resolution, 0 = background
    labels: list[str]  # name of each class id
    frame_hw: tuple[int, int] | None = None  # the frame's (height, width); None: ``ids`` is frame-sized

    @cached_property
    def mask(self) -> np.ndarray:
        """(frame_h, frame_w) uint8 class ids."""
        if self.frame_hw is None or self.ids.shape == tuple(self.frame_hw):
            return self.ids
        h, w = self.frame_hw
        return cv2.resize(self.ids, (w, h), interpolation=cv2.INTER_NEAREST)

    @cached_property
    def counts(self) -> np.ndarray:
        """Pixels of each class id in the id map (its share of the frame, at the model's resolution)."""
        return np.bincount(self.ids.reshape(-1), minlength=len(self.labels))


def class_ids(scores: np.ndarray) -> np.ndarray:
    """(H, W, C) per-pixel scores -> (H, W) uint8 class ids (the first of equal best scores, as argmax)."""
    if scores.ndim != 3:
        raise EdgecnnError(f"a segmentation model outputs (1, H, W, classes); this one outputs {scores.shape}")
    if scores.shape[-1] > 256:
        raise EdgecnnError(f"{scores.shape[-1]} classes do not fit a uint8 mask; use 256 classes or fewer")
    if scores.dtype in (np.int8, np.uint8) and scores.shape[-1] <= PACKED_MAX_CLASSES:
        return _packed_argmax(scores)
    return scores.argmax(-1).astype(np.uint8)


# numpy's argmax over a short last axis walks pixel by pixel (224x224x21 int8: 1.75 ms, holding up
# the demo's second core). 8-bit scores instead pack score and class into one int16 key, ``score << 7 |
# (C - 1 - c)``, and one vectorized maximum over the class-major copy finds score and first class at
# once (0.30 ms). Seven index bits: up to 128 classes; more, and wider scores, take argmax.
PACKED_MAX_CLASSES = 128


def _packed_argmax(scores: np.ndarray) -> np.ndarray:
    h, w, c = scores.shape
    dtype = scores.dtype
    major = cv2.transpose(np.ascontiguousarray(scores).reshape(h * w, c).view(np.uint8)).view(dtype)  # (C, H*W)
    keys = np.left_shift(major, 7, dtype=np.int16)
    keys |= np.arange(c - 1, -1, -1, dtype=np.int16)[:, None]
    best = np.maximum.reduce(keys, axis=0)
    best &= 127
    return np.subtract(c - 1, best, dtype=np.int16).astype(np.uint8).reshape(h, w)


def model_labels(model: DeployedModel | Outputs, num_classes: int) -> list[str]:
    """The model's class names, or the class ids as text when it carries no edgecnn record."""
    labels = list(model.info.labels) if model.info and model.info.labels else []
    return labels if len(labels) == num_classes else [str(i) for i in range(num_classes)]


def segment(model: DeployedModel, frame: np.ndarray, src: str = "bgr") -> Segmentation:
    """Resize and colour-convert a frame for the model, run it, return the class of every frame pixel."""
    prepare(model, frame, src)
    model.invoke()
    return read_segmentation(model, frame.shape)


def read_segmentation(model: DeployedModel | Outputs, frame_shape: tuple[int, ...]) -> Segmentation:
    """The last run's class of every pixel of a frame of ``frame_shape`` (the postprocess stage)."""
    scores = model.scores(0)[0]  # stored integers of an int8 model: the same argmax, no float conversion
    h, w = frame_shape[:2]
    return Segmentation(class_ids(scores), model_labels(model, scores.shape[-1]), (int(h), int(w)))


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB colours of the PASCAL VOC colormap: class 0 (background) black, then
    (128, 0, 0), (0, 128, 0), (128, 128, 0), ... The bits of the class id are spread over the high
    bits of R, G and B in turn, so neighbouring ids get very different colours. Reverse for BGR frames."""
    if n < 0:
        raise EdgecnnError(f"palette size must be 0 or more, got {n}")
    ids = np.arange(n)
    colours = np.zeros((n, 3), np.int64)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.astype(np.uint8)
