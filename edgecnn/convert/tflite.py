"""Keras -> .tflite bytes: the one conversion path every task and format goes through.

A task hands over a :class:`Graph` (a traced batch-1 function with a static input, what the Edge TPU
compiler and most edge runtimes want, plus the variables it reads and what its tail needs); the
format from :mod:`edgecnn.convert.formats` configures the converter. Detection differs only in its
graph (the postprocess op at its end), not in a second conversion body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.convert.calibration import representative_dataset
from edgecnn.convert.formats import Format, get_format
from edgecnn.convert.xnnpack import quantize_for_xnnpack
from edgecnn.errors import EdgecnnError
from edgecnn.keras_env import tf
from edgecnn.quiet import native_stderr_silenced


@dataclass(frozen=True)
class Graph:
    """What the converter turns into a .tflite."""

    function: Any  # a concrete function with a static (1, H, W, C) float input
    variables: Any  # a trackable holding the variables it reads
    custom_ops: bool = False  # the graph ends in a custom op (the detection postprocess)
    float_outputs: bool = False  # outputs stay float32 even when the body is int8


def trace_batch1(model: Any) -> Any:
    """A concrete function with a static (1, H, W, C) float input."""
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32, name="pixels")
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def variables_only(model: Any) -> Any:
    """A trackable holding just the model's variables, for the converter's SavedModel step: the .tflite
    gets the same signature and weights, without the converter tracing every layer's call functions
    (SSDLite MobileNet v2 0.35: 4 s instead of 25-35 s; measured)."""
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return holder


def keras_graph(model: Any) -> Graph:
    """The plain graph of a Keras model: its outputs as they are."""
    return Graph(trace_batch1(model), variables_only(model))


def to_tflite(
    source: Graph | Any,
    fmt: Format | str,
    io: str | None,
    calib_images: np.ndarray | None,
    per_tensor: bool = False,
    float_fallback: bool = False,
) -> bytes:
    """Convert a :class:`Graph` (or a Keras model, taken as it is) to ``fmt`` at batch 1.

    ``per_tensor`` quantizes each kernel with one scale instead of one per output channel: a clustered
    kernel then keeps exactly its N centroids as N int8 codes file-wide, which compresses better
    (LeNet-5, 16 clusters: gzip 44 -> 39 KB, measured).

    ``float_fallback`` (calibrated formats): keep float the ops XNNPACK runs only in float
    (:mod:`edgecnn.convert.xnnpack`), so the CPU runs the int8 graph as one delegate partition.
    """
    if isinstance(fmt, str):
        fmt, io = get_format(fmt, io)
    graph = source if isinstance(source, Graph) else keras_graph(source)
    if fmt.needs_calibration and calib_images is None:
        raise EdgecnnError(f"{fmt.name} needs calibration images; pass --calib DIR (real images of the scenes)")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([graph.function], graph.variables)
    calib = representative_dataset(calib_images) if fmt.needs_calibration else None
    fmt.configure(converter, io or fmt.io_types[0], calib)
    if graph.custom_ops:
        converter.allow_custom_ops = True  # e.g. the detection postprocess (every TFLite runtime registers it)
    if graph.float_outputs and fmt.needs_calibration:
        # The int8 op set stays strict (an op that cannot be quantized fails the conversion instead of
        # staying float); the converter still puts DEQUANTIZE in front of a float tail op, whose outputs
        # must stay float32 (a uint8/int8 output type would quantize boxes, scores and count).
        converter.inference_output_type = tf.float32
    # The converter exposes per-tensor quantization only through this attribute (no public flag).
    converter._experimental_disable_per_channel = per_tensor
    if not (float_fallback and fmt.needs_calibration):
        return run_converter(converter, fmt.name)
    input_type, output_type = converter.inference_input_type, converter.inference_output_type
    converter._experimental_calibrate_only = True  # the calibrated float model; quantized below
    calibrated = run_converter(converter, fmt.name)
    return quantize_for_xnnpack(calibrated, input_type, output_type, per_tensor)


def run_converter(converter: Any, fmt_name: str) -> bytes:
    """``converter.convert()`` with its native log silenced and its failure as one line."""
    try:
        with native_stderr_silenced():
            return converter.convert()
    except Exception as exc:  # the MLIR converter raises ConverterError / RuntimeError with long logs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EdgecnnError(f"TFLite conversion to {fmt_name} failed: {first}") from exc
