"""The conversion formats as one table: name, file suffix, the I/O types it allows, its settings.

Each format is a small registered function that configures a ``TFLiteConverter``; nothing
dispatches on flag positions or model names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edgecnn.errors import EdgecnnError

IO_TYPES = ("uint8", "int8", "float32")


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    help: str
    needs_calibration: bool
    io_types: tuple[str, ...]  # allowed --io values; the first is the default
    configure: Callable[[Any, str, Callable[[], Iterator[list[Any]]] | None], None]


FORMATS: dict[str, Format] = {}


def register_format(
    name: str, suffix: str, help: str, needs_calibration: bool = False, io_types: tuple[str, ...] = ("float32",)
) -> Callable:
    def wrap(fn: Callable) -> Callable:
        FORMATS[name] = Format(name, suffix, help, needs_calibration, io_types, fn)
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
    from edgecnn.keras_env import tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


@register_format("dynamic", "_dynamic.tflite", "int8 weights, float activations quantized on the fly")
def _dynamic(converter: Any, io: str, calib: Any) -> None:
    from edgecnn.keras_env import tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]


@register_format(
    "int8",
    "_int8.tflite",
    "full-integer int8, calibrated on real images (Edge TPU, fastest on CPUs)",
    needs_calibration=True,
    io_types=("uint8", "int8", "float32"),
)
def _int8(converter: Any, io: str, calib: Any) -> None:
    from edgecnn.keras_env import tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calib
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io != "float32":
        converter.inference_input_type = getattr(tf, io)
        converter.inference_output_type = getattr(tf, io)
