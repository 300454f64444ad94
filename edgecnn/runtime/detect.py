"""Detection adapter: frame in, objects (class id, label, score, pixel box) out, as pycoral's ``detect``.

A detection .tflite ends in the ``TFLite_Detection_PostProcess`` op, whose four float32 outputs are
boxes (1, N, 4) ``[ymin, xmin, ymax, xmax]`` normalized, classes (1, N), scores (1, N) and count (1,).
Converters list them in different orders, so :func:`read_detections` identifies them, in this order
of preference:

1. the signature (edgecnn's exports, TF2 Object Detection API exports): ``output_0`` = count,
   ``output_1`` = scores, ``output_2`` = classes, ``output_3`` = boxes, as pycoral reads them;
2. the position, as pycoral does without a signature: boxes, classes, scores, count when the
   fourth output has one element (TF1 exports), else scores, boxes, count, classes;
3. if the shapes contradict the position: count is the (1,) output, boxes the one whose last
   dimension is 4, and of the two (1, N) outputs the classes are the integer-valued one.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime.image import prepare
from edgecnn.runtime.interpreter import DeployedModel, Outputs

POSTPROCESS_OP = "TFLite_Detection_PostProcess"  # the custom op every detection .tflite ends in
# signature output name -> role (the TF2 Object Detection API layout, which pycoral reads)
SIGNATURE_ROLES = {"output_0": "count", "output_1": "scores", "output_2": "classes", "output_3": "boxes"}
TF1_ORDER = ("boxes", "classes", "scores", "count")
TF2_ORDER = ("scores", "boxes", "count", "classes")


class Detection(NamedTuple):
    """One object: class id, its label, score, and box (x0, y0, x1, y1) in frame pixels (pycoral's Object)."""

    id: int
    label: str
    score: float
    box: tuple[int, int, int, int]


def _signature_positions(model: DeployedModel) -> dict[str, int] | None:
    """role -> position in ``model.outputs`` from a one-signature model named like TF2 exports, else None."""
    full = getattr(model.interpreter, "_get_full_signature_list", None)  # what pycoral uses; no public API
    signatures = full() if full else None
    if not signatures or len(signatures) != 1:
        return None
    outputs = next(iter(signatures.values())).get("outputs", {})
    if set(outputs) != set(SIGNATURE_ROLES):
        return None
    position = {int(d["index"]): i for i, d in enumerate(model.outputs)}
    if not all(int(index) in position for index in outputs.values()):
        return None
    return {SIGNATURE_ROLES[name]: position[int(index)] for name, index in outputs.items()}


def _shapes_fit(shapes: dict[str, tuple[int, ...]]) -> bool:
    boxes, count = shapes["boxes"], shapes["count"]
    n = boxes[1] if len(boxes) == 3 else -1
    return (
        len(boxes) == 3
        and boxes[-1] == 4
        and int(np.prod(count)) == 1
        and shapes["classes"][-1] == n
        and shapes["scores"][-1] == n
    )


# model -> role positions, found once per model from its signature and static output shapes (never per
# frame); None: the shapes contradict both rules and only the values can tell (see _by_shape)
_LAYOUTS: weakref.WeakKeyDictionary[DeployedModel, dict[str, int] | None] = weakref.WeakKeyDictionary()


def _layout(model: DeployedModel | Outputs) -> dict[str, int] | None:
    model = model.model if isinstance(model, Outputs) else model  # one layout per model, not per run
    if model not in _LAYOUTS:
        shapes = [tuple(int(d) for d in detail["shape"]) for detail in model.outputs]
        positions = _signature_positions(model)
        if positions is None:
            order = TF1_ORDER if int(np.prod(shapes[3])) == 1 else TF2_ORDER
            positions = {role: i for i, role in enumerate(order)}
        _LAYOUTS[model] = positions if _shapes_fit({r: shapes[i] for r, i in positions.items()}) else None
    return _LAYOUTS[model]


def _by_shape(values: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Identify the outputs from their shapes and values alone (the last resort)."""
    count = [v for v in values if v.size == 1]
    boxes = [v for v in values if v.ndim == 3 and v.shape[-1] == 4]
    rest = [v for v in values if v.size != 1 and not (v.ndim == 3 and v.shape[-1] == 4)]
    if len(count) != 1 or len(boxes) != 1 or len(rest) != 2:
        shapes = ", ".join(str(tuple(v.shape)) for v in values)
        raise EdgecnnError(
            f"cannot read detections from outputs shaped {shapes}; a detection model ends in "
            "TFLite_Detection_PostProcess (export it with edgecnn convert)"
        )
    n = int(np.clip(count[0].reshape(-1)[0], 0, rest[0].size))
    integral = [bool(np.all(v.reshape(-1)[:n] == np.round(v.reshape(-1)[:n]))) for v in rest]
    classes, scores = (rest[1], rest[0]) if integral[1] and not integral[0] else (rest[0], rest[1])
    return {"boxes": boxes[0], "classes": classes, "scores": scores, "count": count[0]}


def read_detections(model: DeployedModel | Outputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The last run's (boxes (N, 4) yxyx normalized, classes (N,) float ids, scores (N,), count).

    Rows from ``count`` on are set to zero here: the op's fast NMS leaves them unwritten (whatever the
    memory held). See the module docstring for how the outputs are identified."""
    if len(model.outputs) != 4:
        raise EdgecnnError(
            f"{model.path} has {len(model.outputs)} outputs, not the 4 of a detection model "
            "(boxes, classes, scores, count); export it with edgecnn convert"
        )
    values = [model.output(i) for i in range(4)]
    positions = _layout(model)
    arrays = {role: values[i] for role, i in positions.items()} if positions else _by_shape(values)
    boxes = arrays["boxes"].reshape(-1, 4).copy()
    classes = arrays["classes"].reshape(-1).copy()
    scores = arrays["scores"].reshape(-1).copy()
    count = int(np.clip(round(float(arrays["count"].reshape(-1)[0])), 0, len(boxes)))
    for padding in (boxes, classes, scores):
        padding[count:] = 0
    return boxes, classes, scores, count


def to_pixels(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """A normalized ``[ymin, xmin, ymax, xmax]`` box -> (x0, y0, x1, y1) pixels, clipped to the frame."""
    ymin, xmin, ymax, xmax = np.clip(np.asarray(box, np.float64), 0.0, 1.0)
    return int(round(xmin * width)), int(round(ymin * height)), int(round(xmax * width)), int(round(ymax * height))


def detect(model: DeployedModel, frame: np.ndarray, threshold: float = 0.4, src: str = "bgr") -> list[Detection]:
    """Resize and colour-convert a frame for the model, run it, return the objects scoring >= threshold,
    best first, with boxes in the frame's pixels."""
    prepare(model, frame, src)
    model.invoke()
    return read_objects(model, frame.shape, threshold)


def read_objects(
    model: DeployedModel | Outputs, frame_shape: tuple[int, ...], threshold: float = 0.4
) -> list[Detection]:
    """The last run's objects scoring >= threshold, best first, in the pixels of a frame of ``frame_shape``
    (the postprocess stage)."""
    boxes, classes, scores, count = read_detections(model)
    labels: list[str] = list(model.info.labels) if model.info and model.info.labels else []
    height, width = frame_shape[:2]
    found = []
    for box, cls, score in zip(boxes[:count], classes[:count], scores[:count], strict=True):
        if score < threshold:
            continue
        i = int(round(float(cls)))
        label = str(labels[i]) if 0 <= i < len(labels) else str(i)
        found.append(Detection(i, label, float(score), to_pixels(box, width, height)))
    return sorted(found, key=lambda d: -d.score)
