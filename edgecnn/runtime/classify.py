"""Classification adapter: frame in, top-k (class id, label, score) out, as pycoral's ``classify``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from edgecnn.runtime.image import prepare
from edgecnn.runtime.interpreter import DeployedModel, Outputs


class Class(NamedTuple):
    id: int
    label: str
    score: float


def top_k(scores: np.ndarray, labels: list[str], k: int = 3, threshold: float = 0.0) -> list[Class]:
    order = np.argsort(-scores)[:k]
    return [
        Class(int(i), labels[i] if i < len(labels) else str(i), float(scores[i]))
        for i in order
        if scores[i] >= threshold
    ]


def read_classes(model: DeployedModel | Outputs, k: int = 3) -> list[Class]:
    """The last run's k best classes (the postprocess stage)."""
    return top_k(model.output(0).reshape(-1), model.labels, k)


def classify(model: DeployedModel, frame: np.ndarray, k: int = 3, src: str = "bgr") -> list[Class]:
    """Resize and colour-convert a frame for the model, run it, return the k best classes."""
    prepare(model, frame, src)
    model.invoke()
    return read_classes(model, k)
