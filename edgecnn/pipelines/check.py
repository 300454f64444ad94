"""``edgecnn check --edgetpu``: will a model run on the Coral Edge TPU, whatever form the user has it in.

A .tflite is checked op by op without TensorFlow. A Keras model (edgecnn's, keras.applications', any)
or an architecture name is judged on what the Edge TPU would really get: the graph its task deploys,
converted to full-integer int8 (synthetic pixels calibrate it: where an op runs does not depend on
calibration quality), checked op by op, each op tied back to the Keras layer it came from. So the
verdict is never a guess about a layer edgecnn's table does not know (``TFOpLambda``,
``Normalization``, a nested backbone), and it is the verdict of the model's own .tflite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.config import IMAGE_SIZE, Range, check_options, opt
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import ModelInfo
from edgecnn.edgetpu.check import CheckReport, check_tflite
from edgecnn.edgetpu.ops import DEFAULT_RUNTIME
from edgecnn.pipelines.options import CHANNELS, CLASSES
from edgecnn.tasks import get_task

PLACEMENT_SAMPLES = 8  # calibration images for op placement (uniform noise, seeded)


@dataclass(frozen=True)
class CheckOptions:
    edgetpu: bool = field(  # the only check today; required so that later checks get their own flag
        default=False, metadata=opt("check that every op maps to the Coral Edge TPU")
    )
    runtime: int = field(
        default=DEFAULT_RUNTIME,
        metadata=opt("Edge TPU runtime version to check for; the default is the last public release", range=Range(1)),
    )
    img: int | None = field(  # default: the architecture's own size
        default=None, metadata=opt("input size when MODEL is an architecture name", range=IMAGE_SIZE)
    )
    channels: int = field(default=3, metadata=CHANNELS)
    classes: int = field(default=1000, metadata=CLASSES)

    def validate(self) -> None:
        if not self.edgetpu:
            raise EdgecnnError("nothing to check; add --edgetpu (the Coral Edge TPU check)")
        check_options(self)


def check_model(target: str, options: CheckOptions = CheckOptions(edgetpu=True)) -> CheckReport:
    """Check a .tflite (no TensorFlow), a .keras model or run folder, or an architecture built at ``img``."""
    options.validate()
    path = Path(target)
    if path.suffix == ".tflite":
        return check_tflite(path, options.runtime)
    if path.suffix in (".keras", ".h5") or path.is_dir():
        from edgecnn.trainer.load import load_keras  # lazy: a .tflite is checked without TensorFlow

        model, info = load_keras(path)
        return check_keras_model(model, info or ModelInfo(), options.runtime, str(path))
    from edgecnn.archs import create, get_arch  # lazy: a .tflite is checked without TensorFlow

    spec = get_arch(target)  # an unknown name is a one-line error with close matches
    size = options.img or spec.default_size
    model = create(target, options.classes, size, options.channels)
    info = ModelInfo(task=spec.task, extra=dict(model.edgecnn_extra))
    return check_keras_model(model, info, options.runtime, f"{target} at {size}x{size}")


def check_keras_model(model: Any, info: ModelInfo, runtime: int = DEFAULT_RUNTIME, source: str = "") -> CheckReport:
    """The Edge TPU check of a Keras model's int8 conversion, each op named by the Keras layer it came from."""
    from edgecnn.convert.export import export  # lazy: a .tflite is checked without TensorFlow

    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise EdgecnnError(
            f"{source or model.name} has input shape {list(model.input_shape)}; the Edge TPU needs a fixed "
            "(H, W, C) input: rebuild the model with one, e.g. input_shape=(224, 224, 3)"
        )
    pixels = np.random.default_rng(0).integers(0, 256, (PLACEMENT_SAMPLES, *shape), dtype=np.uint8)
    blob = export(model, get_task(info.task), info, "edgetpu", "uint8", pixels).blob  # what convert --edgetpu writes
    report = check_tflite(blob, runtime)
    report.source, report.kind = source or model.name, "keras-int8"
    layer_of = keras_layer_names(model)
    previous = None
    for op in report.ops:  # graph order
        # An op whose output carries no layer name (the signature's outputs, e.g. the final softmax) ends
        # the layer before it.
        op.layer = previous = layer_of(op.name) or previous
    return report


def keras_layer_names(model: Any) -> Any:
    """A function: TFLite tensor name -> the Keras layer it belongs to, or None. Layer names are found as
    whole path pieces of the name (keras.applications names contain '/' themselves, so a piece may span
    several), the deepest one wins, and a model's own name only when no layer inside it matches."""
    layers, containers = set(), set()
    stack = [model]
    while stack:
        layer = stack.pop()
        inner = getattr(layer, "layers", None)
        (containers if inner else layers).add(layer.name)
        stack.extend(inner or [])
    ordered = sorted(layers | containers, key=len, reverse=True)  # the longest name first at a position
    pattern = re.compile("(?:^|(?<=/))(" + "|".join(re.escape(n) for n in ordered) + ")(?=/|$)")

    def layer_of(tensor_name: str) -> str | None:
        found = [m.group(1) for m in pattern.finditer(tensor_name)]
        inside = [name for name in found if name not in containers]
        return (inside or found or [None])[-1]

    return layer_of
