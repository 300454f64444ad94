"""The conversion formats as one table: name, file suffix, the I/O types and options it allows, its settings.

Every file edgecnn writes (.tflite and .onnx) is one row; :func:`edgecnn.convert.export.export` is the one
function that turns a model into a row's bytes. A .tflite row is a small registered function that configures
the ``TFLiteConverter`` (plus, where a format needs it, a step on the written file); an .onnx row names its
backend and precision. Nothing dispatches on flag positions or model names. The CLI builds its format flags
from this table (``--int8``, ``--int16x8``; an .onnx row is ``--onnx`` plus its precision, ``--onnx --int8``,
through :func:`resolve_format`), so this module stays importable without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.edgetpu.compiler import convert_for_edgetpu

IO_TYPES = ("uint8", "int8", "float32")  # every --io value some row allows


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
    backend: str = "tflite"  # which writer of edgecnn.convert.export makes the bytes: tflite or onnx
    quantization: str = ""  # the record's "quantization" (default: the name; an .onnx row: its precision)
    title: str = ""  # how errors name the row (default: the name)
    io_note: str = ""  # what a refused --io error says instead of the list of allowed types
    refuses: tuple[tuple[str, str], ...] = ()  # (option, the one-line error) for options this row refuses

    @property
    def extension(self) -> str:
        return Path(self.suffix).suffix

    @property
    def label(self) -> str:
        return self.title or self.name

    @property
    def record_quantization(self) -> str:
        return self.quantization or self.name


FORMATS: dict[str, Format] = {}


def register_format(name: str, suffix: str, help: str, **row: Any) -> Callable[[Configure], Configure]:
    """Add a row; ``row`` holds the :class:`Format` fields after ``help`` (defaults as declared there)."""

    def wrap(fn: Configure) -> Configure:
        row.setdefault("needs_calibration", False)
        row.setdefault("io_types", ("float32",))
        refuses = dict(row.pop("refuses", ()))
        if not row.get("float_fallback"):  # --float-layers mixes float into the CPU int8 .tflite only
            refuses.setdefault("float_layers", _NO_FLOAT_LAYERS.format(name=name))
        FORMATS[name] = Format(name, suffix, help, configure=fn, refuses=tuple(refuses.items()), **row)
        return fn

    return wrap


_NO_FLOAT_LAYERS = (
    "--float-layers keeps layers float inside an int8 model for the CPU; it does not apply to {name}: use --int8"
)


def get_format(name: str, io: str | None) -> tuple[Format, str]:
    """Validate a format and --io once; returns the format and the resolved I/O type."""
    if name not in FORMATS:
        raise EdgecnnError(f"unknown format {name!r}; use one of: {', '.join(FORMATS)}")
    fmt = FORMATS[name]
    io = io or fmt.io_types[0]
    if io not in fmt.io_types:
        why = fmt.io_note or f"{fmt.label} allows: {', '.join(fmt.io_types)}"
        raise EdgecnnError(f"--io {io} does not apply to {fmt.label}; {why}")
    return fmt, io


def resolve_format(name: str, onnx: bool) -> str:
    """The row a format flag means: ``--onnx --int8`` is the .onnx row of precision int8 (``onnx-int8``)."""
    rows = [f for f in FORMATS.values() if f.backend == "onnx"]
    if not onnx or name in {f.name for f in rows}:
        return name
    for fmt in rows:
        if fmt.quantization == name:
            return fmt.name
    raise EdgecnnError(
        f"--onnx exports {' or '.join(f.quantization for f in rows)} (--onnx, or --onnx --int8); drop --{name} "
        "(float16, dynamic, int16x8 and Edge TPU models are .tflite only)"
    )


def check_request(fmt: Format, all_int8: bool, float_layers: tuple[str, ...] | list[str]) -> None:
    """The options a row refuses, and the pair that contradicts itself: one-line errors before any work."""
    asked = {"all_int8": all_int8, "float_layers": bool(float_layers)}
    for option, message in fmt.refuses:
        if asked[option]:
            raise EdgecnnError(message)
    if all_int8 and float_layers:
        raise EdgecnnError("--float-layers keeps layers float and --all-int8 quantizes every op; use one of them")


@register_format("float32", "_float32.tflite", "float32 weights and activations (reference)")
def _float32(converter: Any, io: str, calib: Any) -> None:
    return None


@register_format("float16", "_float16.tflite", "float16 weights, float32 compute (half the size; GPU delegates)")
def _float16(converter: Any, io: str, calib: Any) -> None:
    from edgecnn.core.keras_env import tf  # lazy: the CLI reads this table on the light install

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


@register_format("dynamic", "_dynamic.tflite", "int8 weights, float activations quantized on the fly")
def _dynamic(converter: Any, io: str, calib: Any) -> None:
    from edgecnn.core.keras_env import tf  # lazy: the CLI reads this table on the light install

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
    from edgecnn.core.keras_env import tf  # lazy: the CLI reads this table on the light install

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
    refuses=(
        (
            "float_layers",
            "--float-layers keeps layers float inside an int8 model for the CPU; it does not apply to edgetpu "
            "(the Edge TPU runs int8 only): use --int8",
        ),
    ),
)
def _edgetpu(converter: Any, io: str, calib: Any) -> None:
    _int8(converter, io, calib)


# Measured (convert/results/int16x8.md, U-Net MobileNet v2 0.35 on shapes-seg 64x64, 2 threads): mIoU 37.30% against
# int8's 37.23% and Keras's 37.25%, 821 KiB against 729, but XNNPACK runs none of its ops: p50 14 ms against 0.8.
@register_format(
    "int16x8",
    "_int16x8.tflite",
    "int16 activations, int8 weights, calibrated (closer to float than int8; runs on the reference kernels)",
    needs_calibration=True,
    io_types=("float32",),
    # TFLite's 16x8 mode takes float32 or int16 I/O only ("inference_input_type and inference_output_type must
    # be in ['tf.float32', 'tf.int16']", TF 2.21); edgecnn's runtime feeds uint8, int8 or float32: float32 here.
    io_note="int16x8 keeps float32 input and output (TFLite's 16x8 mode has no uint8/int8 I/O); drop --io",
)
def _int16x8(converter: Any, io: str, calib: Any) -> None:
    from edgecnn.core.keras_env import tf  # lazy: the CLI reads this table on the light install

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calib
    converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]


# ------------------------------------------------------------------------------------------- .onnx
def _no_converter(converter: Any, io: str, calib: Any) -> None:
    raise EdgecnnError("an .onnx row has no TFLite converter settings")  # export() sends .onnx rows to tf2onnx


_ONNX_ROW: dict[str, Any] = {
    "backend": "onnx",
    "title": "--onnx",
    "io_note": (
        "an .onnx model takes float32 pixels 0..255 and gives float32 outputs (the int8 body sits between "
        "QuantizeLinear/DequantizeLinear nodes); drop --io"
    ),
    "refuses": (
        (
            "all_int8",
            "--all-int8 applies to .tflite models; an --onnx --int8 model quantizes every op ONNX "
            "Runtime has an int8 kernel for; drop --all-int8",
        ),
        ("float_layers", "--float-layers applies to .tflite models (LiteRT's quantizer); drop it with --onnx"),
    ),
}
register_format(
    "onnx-float32",
    "_float32.onnx",
    "an .onnx for ONNX Runtime (tf2onnx), float32 (= --onnx)",
    quantization="float32",
    **_ONNX_ROW,
)(_no_converter)
register_format(
    "onnx-int8",
    "_int8.onnx",
    "an .onnx for ONNX Runtime, int8 QDQ calibrated on real images (= --onnx --int8)",
    needs_calibration=True,
    quantization="int8",
    **_ONNX_ROW,
)(_no_converter)
