"""``edgecnn check --edgetpu``: will a model run on the Coral Edge TPU, whatever form the user has it in.

A .tflite is checked without TensorFlow; a Keras model or an architecture name is judged through
the graph its task deploys (:meth:`~edgecnn.tasks.base.Task.deployable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecnn.edgetpu.check import CheckReport, check_keras, check_tflite
from edgecnn.edgetpu.ops import DEFAULT_RUNTIME
from edgecnn.errors import EdgecnnError
from edgecnn.tasks import get_task


@dataclass(frozen=True)
class CheckOptions:
    edgetpu: bool = False  # the only check today; required so that later checks get their own flag
    runtime: int = DEFAULT_RUNTIME  # Edge TPU runtime version to check against
    img: int | None = None  # for an architecture name (default: its own size)
    channels: int = 3
    classes: int = 1000

    def validate(self) -> None:
        if not self.edgetpu:
            raise EdgecnnError("nothing to check; add --edgetpu (the Coral Edge TPU check)")
        if self.runtime < 1:
            raise EdgecnnError(f"--runtime must be 1 or more, got {self.runtime}")


def check_model(target: str, options: CheckOptions = CheckOptions(edgetpu=True)) -> CheckReport:
    """Check a .tflite (no TensorFlow), a .keras model or run folder, or an architecture built at ``img``."""
    options.validate()
    path = Path(target)
    if path.suffix == ".tflite":
        return check_tflite(path, options.runtime)
    if path.suffix in (".keras", ".h5") or path.is_dir():
        from edgecnn.training.keras_io import load_keras  # lazy: a .tflite is checked without TensorFlow

        model, info = load_keras(path)
        deployable = get_task(info.task if info else None).deployable(model)
        return check_keras(deployable, options.runtime, source=str(path))
    from edgecnn.archs import create, get_arch  # lazy: a .tflite is checked without TensorFlow

    spec = get_arch(target)  # an unknown name is a one-line error with close matches
    size = options.img or spec.default_size
    model = get_task(spec.task).deployable(create(target, options.classes, size, options.channels))
    return check_keras(model, options.runtime, source=f"{target} at {size}x{size}")
