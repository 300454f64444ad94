"""The conversion formats as one table: name, file suffix, the I/O types it allows, its settings.

Each format is a small registered function that configures a ``TFLiteConverter`` (plus, where a
format needs it, a step on the written file); nothing dispatches on flag positions or model names.
The CLI builds its format flags from this table, so this module stays importable without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.edgetpu.compiler import convert_for_edgetpu
from edgecnn.errors import EdgecnnError

IO_TYPES = ("uint8", "int8", "float32")


Configure = Callable[[Any, str, Callable[[], Iterator[list[Any]]] | None], None]
After = Callable[[Path], Any]  # a step on the written .tflite; returns a report with as_dict()


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    help: str
    needs_calibration: bool
    io_types: tuple[str, ...]  # allowed --io values; the first is the default
    configure: Configure
    after: After | None = None  # e.g. the Edge TPU check and compile of the int8 file
    float_fallback: bool = False  # keep float the ops XNNPACK runs only in float (edgecnn.convert.xnnpack)


FORMATS: dict[str, Format] = {}


def register_format(
    name: str,
    suffix: str,
    help: str,
    needs_calibration: bool = False,
    io_types: tuple[str, ...] = ("float32",),
    after: After | None = None,
    float_fallback: bool = False,
) -> Callable[[Configure], Configure]:
    def wrap(fn: Configure) -> Configure:
        FORMATS[name] = Format(name, suffix, help, needs_calibration, io_types, fn, after, float_fallback)
        return fn

    return wrap


def get_format(name: str, io: str | None) -> tuple[Format, str]:
    """Validate a format and --io once; returns the format and the resolved I/O type."""
    if name not in FORMATS:
        raise EdgecnnError(f"unknown format {name!r}; use one of: {', '.join(FORMATS)}")
    fmt = FORMATS[name]
    io = io or fmt.io_types[0]
    if io not in fmt.io_types:
        raise EdgecnnError(f"--io {io} does not apply to {name}; {name} allows: {', '.join(fmt.io_types)}")
    return fmt, io


@register_format("float32", "_float32.tflite", "float32 weights and activations (reference)")
def _float32(converter: Any, io: str, calib: Any) -> None:
    return None


@register_format("float16", "_float16.tflite", "float16 weights, float32 compute (half the size; GPU delegates)")
def _float16(converter: Any, io: str, calib: Any) -> None:
    from edgecnn.keras_env import tf  # lazy: the CLI reads this table on the light install

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


@register_format("dynamic", "_dynamic.tflite", "int8 weights, float activations quantized on the fly")
def _dynamic(converter: Any, io: str, calib: Any) -> None:
    from edgecnn.keras_env import tf  # lazy: the CLI reads this table on the light install

    converter.optimizations = [tf.lite.Optimize.DEFAULT]


@register_format(
    "int8",
    "_int8.tflite",
    "int8, calibrated on real images, for CPUs: ops XNNPACK runs only in float stay float (--all-int8: none)",
    needs_calibration=True,
    io_types=("uint8", "int8", "float32"),
    float_fallback=True,
)
def _int8(converter: Any, io: str, calib: Any) -> None:
    from edgecnn.keras_env import tf  # lazy: the CLI reads this table on the light install

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calib
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float32":
        converter.inference_input_type = getattr(tf, io)
        converter.inference_output_type = getattr(tf, io)


def _edgetpu_after(path: Path) -> Any:
    """Check every op, then ``edgetpu_compiler`` if installed, else the exact command to compile elsewhere."""
    return convert_for_edgetpu(path, path)


@register_format(
    "edgetpu",
    "_int8.tflite",
    "int8 for the Coral Edge TPU (uint8 I/O): check every op, then edgetpu_compiler if installed -> *_edgetpu.tflite",
    needs_calibration=True,
    io_types=("uint8", "int8"),
    after=_edgetpu_after,
)
def _edgetpu(converter: Any, io: str, calib: Any) -> None:
    _int8(converter, io, calib)
