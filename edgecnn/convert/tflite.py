"""Graph -> .tflite bytes: the one place the ``TFLiteConverter`` is built and run.

A task hands over a :class:`Graph` (a traced batch-1 function with a static input, what the Edge TPU
compiler and most edge runtimes want, plus the variables it reads and what its tail needs); the
format row from :mod:`edgecnn.convert.formats` configures the converter. Detection differs only in its
graph (the postprocess op at its end), not in a second conversion body. Two ways through:

- :func:`to_tflite`: the converter as the row configures it (every calibrated op int8: ``--all-int8``,
  the Edge TPU, int16x8);
- :func:`calibrate` then :func:`quantize`: the converter stops after calibration and TensorFlow's quantizer
  runs with a node denylist (the CPU int8 row: ops XNNPACK runs only in float, and ``--float-layers``).
  ``edgecnn quant-debug`` calibrates once and quantizes many times through the same two functions.

Callers go through :func:`edgecnn.convert.export.export`, which picks the way, the graph rewrites and the
metadata; these are its stages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.convert.calibration import representative_dataset
from edgecnn.convert.formats import Format, get_format
from edgecnn.convert.nodes import Node, model_nodes
from edgecnn.convert.xnnpack import quantize_for_xnnpack
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.graph import Graph, keras_graph
from edgecnn.core.keras_env import tf
from edgecnn.core.quiet import native_stderr_silenced


def _converter(graph: Graph, fmt: Format, io: str, calib_images: np.ndarray | None, per_tensor: bool) -> Any:
    """The one ``TFLiteConverter``: the row's settings plus what the graph's tail needs.

    ``per_tensor`` quantizes each kernel with one scale instead of one per output channel: a clustered
    kernel then keeps exactly its N centroids as N int8 codes file-wide, which compresses better
    (LeNet-5, 16 clusters: gzip 44 -> 39 KB, measured)."""
    if fmt.needs_calibration and calib_images is None:
        raise EdgecnnError(f"{fmt.name} needs calibration images; pass --calib DIR (real images of the scenes)")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([graph.function], graph.variables)
    calib = representative_dataset(calib_images) if fmt.needs_calibration else None
    fmt.configure(converter, io, calib)
    if graph.custom_ops:
        converter.allow_custom_ops = True  # e.g. the detection postprocess (every TFLite runtime registers it)
    if graph.float_outputs and fmt.needs_calibration:
        # The quantized op set stays strict (an op that cannot be quantized fails the conversion instead of
        # staying float); the converter still puts DEQUANTIZE in front of a float tail op, whose outputs
        # must stay float32 (a uint8/int8 output type would quantize boxes, scores and count).
        converter.inference_output_type = tf.float32
    # The converter exposes per-tensor quantization only through this attribute (no public flag).
    converter._experimental_disable_per_channel = per_tensor
    return converter


def to_tflite(
    source: Graph | Any, fmt: Format | str, io: str | None, calib_images: np.ndarray | None, per_tensor: bool = False
) -> bytes:
    """A :class:`Graph` (or a Keras model, taken as it is) as ``fmt`` at batch 1, converted as the row
    configures it: a calibrated row quantizes every op it can (no float fallback, no rewrites, no metadata;
    :func:`edgecnn.convert.export.export` adds those)."""
    fmt, io = get_format(fmt if isinstance(fmt, str) else fmt.name, io)
    graph = source if isinstance(source, Graph) else keras_graph(source)
    return run_converter(_converter(graph, fmt, io, calib_images, per_tensor), fmt.name)


@dataclass(frozen=True)
class Calibrated:
    """A model calibrated but not yet quantized (the quantizer's input), its I/O types and its ops."""

    blob: bytes
    input_type: Any
    output_type: Any
    nodes: list[Node] = field(default_factory=list)  # named by the Keras layers given to calibrate()


def calibrate(
    graph: Graph,
    fmt: Format,
    io: str,
    calib_images: np.ndarray,
    known_layers: Mapping[str, int] | None = None,
) -> Calibrated:
    """Calibrate ``graph`` with ``fmt``'s converter settings, stopping before quantization so the quantizer
    can run with any node denylist (:func:`quantize`). ``known_layers`` (Keras layer names -> graph order,
    :func:`edgecnn.convert.nodes.layer_names`) names the ops for ``--float-layers``."""
    converter = _converter(graph, fmt, io, calib_images, per_tensor=False)  # per-tensor is the quantizer's
    input_type, output_type = converter.inference_input_type, converter.inference_output_type
    converter._experimental_calibrate_only = True  # the converter exposes this only as an attribute
    blob = run_converter(converter, fmt.name)
    return Calibrated(blob, input_type, output_type, model_nodes(blob, known_layers or {}))


def quantize(calibrated: Calibrated, float_nodes: Sequence[str] = (), per_tensor: bool = False) -> bytes:
    """The deployable int8 model: the ops XNNPACK runs only in float kept float, ``float_nodes`` (op output
    tensor names, :func:`edgecnn.convert.nodes.nodes_for_layers`) too."""
    return quantize_for_xnnpack(
        calibrated.blob, calibrated.input_type, calibrated.output_type, per_tensor, keep_float=float_nodes
    )


def run_converter(converter: Any, fmt_name: str) -> bytes:
    """``converter.convert()`` with its native log silenced and its failure as one line."""
    try:
        with native_stderr_silenced():
            return converter.convert()
    except Exception as exc:  # the MLIR converter raises ConverterError / RuntimeError with long logs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EdgecnnError(f"TFLite conversion to {fmt_name} failed: {first}") from exc
