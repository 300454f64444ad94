"""The one export path: a model + a format row + I/O + calibration (+ float layers, all-int8, per-tensor) -> bytes.

Every file edgecnn writes goes through :func:`export`: ``edgecnn convert`` (.tflite and .onnx), ``edgecnn
optimize`` (its int8 is the same recipe as ``convert --int8``, so the file it benchmarks is the file a user
ships), ``edgecnn quant-debug`` (it calibrates once and quantizes many variants through :func:`tflite_graph`,
:func:`~edgecnn.convert.tflite.calibrate` and :func:`~edgecnn.convert.tflite.quantize`, the stages of this
function), ``convert/export_zoo.py`` and ``edgecnn check``.

The steps, each decided once:

1. the row and its options are checked (:func:`check_export`): one-line errors before any work;
2. the row's backend writes the bytes (:data:`WRITERS`): a .tflite through the one ``TFLiteConverter``
   (:mod:`edgecnn.convert.tflite`), with the exact average-pool rewrite and XNNPACK's float fallback where the
   row asks for them (:func:`keeps_xnnpack_float`) and the ``--float-layers`` nodes kept float; an .onnx
   through tf2onnx (and ONNX Runtime's QDQ quantizer for ``onnx-int8``);
3. edgecnn's record goes in (and, in a .tflite, the standard TFLite metadata MediaPipe reads).

What depends on the task is asked of the ``task`` object (an :class:`ExportTask`, e.g. a
:class:`edgecnn.tasks.base.Task`): the graph the converter sees (the detection postprocess op), the
ONNX function (the detection decoding and NMS in standard ops) and the metadata's output description.
Nothing here looks a task up by its name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgecnn.convert.formats import Format, check_request, get_format, resolve_format
from edgecnn.convert.nodes import layer_names, nodes_for_layers
from edgecnn.convert.onnx import DEFAULT_OPSET, keras_to_onnx, tail_nodes
from edgecnn.convert.onnx_int8 import quantize_qdq
from edgecnn.convert.tflite import calibrate, quantize, to_tflite
from edgecnn.convert.tflite_metadata import Outputs, embed_standard_metadata
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.graph import Graph, exact_rewrites
from edgecnn.core.metadata import ModelInfo, embed_tflite_info


class ExportTask(Protocol):
    """What :func:`export` asks of a task (:class:`edgecnn.tasks.base.Task` implements it)."""

    def export_graph(self, model: Any, info: ModelInfo) -> Graph:
        """The graph the TFLite converter turns into a .tflite."""
        ...

    def onnx_function(self, model: Any, info: ModelInfo) -> Any:
        """The batch-1 ``tf.function`` tf2onnx turns into an .onnx."""
        ...

    def metadata_outputs(self, flatbuffer: Any) -> Outputs:
        """The standard metadata's description of a .tflite's outputs."""
        ...


@dataclass(frozen=True)
class Request:
    """What to write: the row, the resolved I/O type and the options (checked by :func:`check_export`)."""

    format: Format
    io: str
    calib_images: np.ndarray | None = None  # (N, H, W, C) uint8; needed by calibrated rows
    float_layers: tuple[str, ...] = ()  # Keras layers kept float in the CPU int8 .tflite
    all_int8: bool = False  # the int8 row without XNNPACK's float fallback (and without the exact rewrites)
    per_tensor: bool = False  # one weight scale per tensor instead of per output channel
    opset: int | None = None  # .onnx rows: the ONNX opset (None: edgecnn.convert.onnx.DEFAULT_OPSET)


@dataclass(frozen=True)
class Exported:
    """The bytes of the file and what the reports say about them."""

    blob: bytes
    request: Request
    record: ModelInfo  # the edgecnn record embedded in the file
    float_nodes: tuple[str, ...] = ()  # .tflite: the converter's nodes ``float_layers`` kept float
    kept_float: dict[str, int] = field(default_factory=dict)  # .onnx int8: nodes left float, by op type


def check_export(
    name: str,
    io: str | None = None,
    onnx: bool = False,
    all_int8: bool = False,
    float_layers: tuple[str, ...] = (),
) -> tuple[Format, str]:
    """The row a format flag means (``--onnx --int8``: ``onnx-int8``) and its I/O type, with every option
    checked against the row: one-line errors, before a model is loaded."""
    fmt = get_format(resolve_format(name, onnx), None)[0]
    check_request(fmt, all_int8, float_layers)
    return get_format(fmt.name, io)


def keeps_xnnpack_float(fmt: Format, all_int8: bool) -> bool:
    """Whether the row keeps float the ops XNNPACK runs only in float (and rewrites average pools exactly):
    the CPU int8 row, unless ``--all-int8``."""
    return fmt.float_fallback and not all_int8


def tflite_graph(model: Any, task: ExportTask, info: ModelInfo, fmt: Format, all_int8: bool = False) -> Graph:
    """The graph a .tflite row converts: the task's graph of ``model``, with non-overlapping average pools as
    exact depthwise convolutions where the row keeps XNNPACK's float ops float (XNNPACK runs int8 depthwise,
    not int8 AVERAGE_POOL_2D; :func:`edgecnn.core.graph.exact_rewrites`)."""
    return task.export_graph(exact_rewrites(model) if keeps_xnnpack_float(fmt, all_int8) else model, info)


Written = tuple[bytes, tuple[str, ...], dict[str, int]]  # the bytes, float nodes, float ops by type
Writer = Callable[[Any, ExportTask, ModelInfo, Request], Written]


def _write_tflite(model: Any, task: ExportTask, record: ModelInfo, req: Request) -> Written:
    fmt = req.format
    graph = tflite_graph(model, task, record, fmt, req.all_int8)
    if not keeps_xnnpack_float(fmt, req.all_int8):
        blob = to_tflite(graph, fmt, req.io, req.calib_images, req.per_tensor)
        return embed_standard_metadata(embed_tflite_info(blob, record), record, task.metadata_outputs), (), {}
    assert req.calib_images is not None  # checked by export()
    known = layer_names(model) if req.float_layers else None
    calibrated = calibrate(graph, fmt, req.io, req.calib_images, known)
    nodes = tuple(nodes_for_layers(calibrated.nodes, req.float_layers)) if req.float_layers else ()
    blob = quantize(calibrated, nodes, req.per_tensor)
    return embed_standard_metadata(embed_tflite_info(blob, record), record, task.metadata_outputs), nodes, {}


def _write_onnx(model: Any, task: ExportTask, record: ModelInfo, req: Request) -> Written:
    proto = keras_to_onnx(task.onnx_function(model, record), record, req.opset or DEFAULT_OPSET)
    blob = proto.SerializeToString()
    if not req.format.needs_calibration:
        return blob, (), {}
    quantized = quantize_qdq(blob, req.calib_images, tail_nodes)  # the detection decoding stays float
    return quantized.model, (), quantized.float_ops


WRITERS: dict[str, Writer] = {"tflite": _write_tflite, "onnx": _write_onnx}  # Format.backend -> its writer


def export(
    model: Any,
    task: ExportTask,
    info: ModelInfo,
    fmt: Format | str,
    io: str | None = None,
    calib_images: np.ndarray | None = None,
    *,
    float_layers: tuple[str, ...] = (),
    all_int8: bool = False,
    per_tensor: bool = False,
    opset: int | None = None,
) -> Exported:
    """``model`` (Keras) as the bytes of format row ``fmt`` (a name or a row of
    :data:`edgecnn.convert.formats.FORMATS`), at batch 1, with ``info`` as its record.

    ``io``: the input/output type (None: the row's default). ``calib_images``: (N, H, W, C) uint8 images the
    calibrated rows need (:func:`edgecnn.convert.calibration.calibration_images`). ``float_layers``: Keras
    layers kept float in the CPU int8 .tflite (``edgecnn quant-debug`` ranks them). ``all_int8``: the int8
    row quantizes every op, XNNPACK's float-only ops too (for NPUs and microcontrollers). ``per_tensor``: one
    weight scale per tensor (clustered kernels then compress better). ``opset``: .onnx rows' ONNX opset.
    """
    fmt, io = check_export(fmt if isinstance(fmt, str) else fmt.name, io, False, all_int8, tuple(float_layers))
    if fmt.needs_calibration and (calib_images is None or not len(calib_images)):
        raise EdgecnnError(f"{fmt.name} needs calibration images; pass --calib DIR (real images of the scenes)")
    req = Request(fmt, io, calib_images, tuple(float_layers), all_int8, per_tensor, opset)
    record = dataclasses.replace(info, quantization=fmt.record_quantization, extra={**info.extra, "io": io})
    blob, float_nodes, kept_float = WRITERS[fmt.backend](model, task, record, req)
    return Exported(blob, req, record, float_nodes, kept_float)
