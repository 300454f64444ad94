"""Per-layer int8 error in Keras layer names, and the selective mixed int8/float conversion it suggests.

Three pieces:

- **Names.** TensorFlow's converter names each op's output tensor after the Keras layers fused into it,
  e.g. ``mobilenet_v1_025/conv1_relu/Relu6;mobilenet_v1_025/conv1_bn/FusedBatchNormV3;mobilenet_v1_025/
  conv1/Conv2D``: :func:`keras_layers` reads them back ([conv1, conv1_bn, conv1_relu], nested backbones
  included), so every row and every ``--float-layers NAME`` speaks the user's layer names.
- **Local error.** TensorFlow's ``tf.lite.experimental.QuantizationDebugger`` runs a debug model in which
  each int8 op is paired with its float twin fed the same (quantized) input; per op it gives the error
  statistics and, through ``layer_direct_compare_metrics``, the SQNR and cosine below.
- **Mixed int8/float.** The quantizer edgecnn's int8 path already uses keeps named nodes float
  (:func:`edgecnn.convert.xnnpack.quantize_for_xnnpack` with ``keep_float``); :func:`mixed_int8` maps
  layer names to those nodes, and :func:`sensitivity` measures, one unit at a time, how much closer to the
  float model the output gets when that unit stays float. The local error cannot say that (every layer of a
  MobileNet v1 has ~41-44 dB SQNR, whatever its effect).
- **Units.** A layer kept float alone still has its output quantized for the int8 layer after it, and a
  reader kept float alone still gets the int8 tensor: a tensor's int8 error goes only when the layer that
  writes it and the layers that read it are float together. So the unit is a layer *with its output
  tensor*: the layer, its readers, and through ops that keep their input's int8 scale (pooling, reshapes)
  or pass an outlier channel on, the layers after them (:func:`units`). A tensor whose one int8 scale is
  set by an outlier channel (:func:`channel_ranges`) is found only this way: on a ResNet-20 with one
  channel of ``conv3_block2_1``'s output widened 2000x, keeping its reader ``conv3_block2_2_conv`` float
  removed 24% of int8's output error and the unit removes all of it
  (``benchmarks/results/quant_debug_planted.md``).
"""

from __future__ import annotations

import csv
import difflib
import io
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.convert.calibration import representative_dataset
from edgecnn.convert.formats import Format
from edgecnn.convert.tflite import Graph, run_converter
from edgecnn.convert.xnnpack import EDGE_OPS, quantize_for_xnnpack
from edgecnn.errors import EdgecnnError
from edgecnn.insight.layers import walk
from edgecnn.keras_env import tf
from edgecnn.quiet import native_stderr_silenced
from edgecnn.runtime.interpreter import TFLiteModel


# ------------------------------------------------------------------------------------------- names
def layer_names(model: Any) -> dict[str, int]:
    """Every layer name in ``model`` (nested models' included) and its position in graph order."""
    return {layer.name: i for i, (_, layer) in enumerate(walk(model))}


def keras_layers(tensor_name: str, known: Mapping[str, int]) -> list[str]:
    """The Keras layers an op's output tensor is named after, in graph order (a fused conv + BN + ReLU:
    [conv, bn, relu]; the converter lists them in no fixed order); [] for a tensor named after no layer
    (the signature's output, e.g. 'StatefulPartitionedCall:0')."""
    found: set[str] = set()
    for part in tensor_name.split(";"):
        scopes = part.split("/")[:-1]  # the last component is the TensorFlow op (Conv2D, Relu6, ...)
        names = [s for s in scopes if s in known]
        if names:
            found.add(names[-1])  # the innermost: a nested backbone's layer, not the backbone
    return sorted(found, key=lambda name: known[name])


@dataclass(frozen=True)
class Node:
    """One op of the calibrated model: its type, output tensor (the quantizer's node name), Keras layers."""

    op: str
    tensor: str
    layers: tuple[str, ...]
    inputs: tuple[str, ...] = ()  # the tensors it reads (weights and biases included)

    @property
    def layer(self) -> str:
        """The layer the op is named by: the first of its fused layers (the conv of conv + BN + ReLU)."""
        return self.layers[0] if self.layers else self.tensor


def model_nodes(blob: bytes, known: set[str]) -> list[Node]:
    """The ops of a .tflite (calibrated or quantized) in graph order, edges (QUANTIZE, ...) left out."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(blob)
        interpreter = TFLiteModel(path, threads=1, delegate="none").interpreter
        names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
        ops = interpreter._get_ops_details()  # the public API lists no ops
    nodes = []
    for op in ops:
        if op["op_name"] in EDGE_OPS or not len(op["outputs"]):
            continue
        tensor = names[int(op["outputs"][0])]
        inputs = tuple(names[int(i)] for i in op["inputs"] if int(i) >= 0)  # -1: an optional input left out
        nodes.append(Node(op["op_name"], tensor, tuple(keras_layers(tensor, known)), inputs))
    return nodes


# Ops whose int8 output must keep the int8 scale of their input (TFLite's int8 kernels require it): a
# tensor's bad scale passes through them unchanged to the next layer that computes with it.
SAME_SCALE_OPS = frozenset(
    {
        "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
        "RESHAPE",
        "SQUEEZE",
        "EXPAND_DIMS",
        "TRANSPOSE",
        "PAD",
        "PADV2",
        "SPACE_TO_DEPTH",
        "DEPTH_TO_SPACE",
        "STRIDED_SLICE",
        "SLICE",
        "RESIZE_NEAREST_NEIGHBOR",
        "RESIZE_BILINEAR",
    }
)


def units(nodes: Sequence[Node], carried: Set[str] = frozenset()) -> dict[str, list[str]]:
    """Per Keras layer computed by an op: the layers to keep float so that its output tensor stays float
    too, in graph order: the layer, the layers reading its output, and through :data:`SAME_SCALE_OPS` (and
    readers that pass an outlier channel on: input and output both in ``carried``, e.g. a pooling rewritten
    as a depthwise convolution) the layers reading theirs. Keeping a layer float alone leaves its output quantized
    by the int8 op after it; a reader alone still gets the int8 tensor. Readers named after no layer (the
    signature's output) are left out, because ``--float-layers`` cannot name them."""
    order = {node.tensor: i for i, node in enumerate(nodes)}
    result: dict[str, list[str]] = {}
    for node in nodes:
        if not node.layers or node.layer in result:
            continue
        members = {n.tensor for n in nodes if n.layer == node.layer}
        frontier = set(members)
        while frontier:
            readers = [n for n in nodes if n.tensor not in members and frontier & set(n.inputs)]
            members |= {n.tensor for n in readers}
            outlier = frontier & carried
            frontier = {
                n.tensor
                for n in readers
                if n.op in SAME_SCALE_OPS or (n.tensor in carried and outlier & set(n.inputs))  # still the outlier
            }
        named = sorted((n for n in nodes if n.tensor in members and n.layers), key=lambda n: order[n.tensor])
        result[node.layer] = list(dict.fromkeys([node.layer, *(n.layer for n in named)]))
    return result


def nodes_for_layers(nodes: Sequence[Node], wanted: Sequence[str]) -> list[str]:
    """The node names (output tensors) of the ops that compute any of the ``wanted`` Keras layers; an
    unknown name is a user error naming close ones."""
    named = {layer for node in nodes for layer in node.layers}
    unknown = [name for name in wanted if name not in named]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(named), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "edgecnn quant-debug MODEL lists them"
        raise EdgecnnError(f"--float-layers {unknown[0]}: no int8 op computes a layer of that name; {hint}")
    return [node.tensor for node in nodes if set(node.layers) & set(wanted)]


# ------------------------------------------------------------------------------------- conversion
@dataclass(frozen=True)
class Calibrated:
    """A model calibrated but not yet quantized (the quantizer's input) and its I/O types."""

    blob: bytes
    input_type: Any
    output_type: Any
    nodes: list[Node]


def calibrate(graph: Graph, fmt: Format, io_type: str, calib_images: np.ndarray, model: Any) -> Calibrated:
    """Calibrate ``graph`` as ``fmt`` does (the same converter settings as :func:`edgecnn.convert.tflite.
    to_tflite`), stopping before quantization so the quantizer can be run with any node denylist."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([graph.function], graph.variables)
    fmt.configure(converter, io_type, representative_dataset(calib_images))
    input_type, output_type = converter.inference_input_type, converter.inference_output_type
    converter._experimental_calibrate_only = True  # the converter exposes this only as an attribute
    blob = run_converter(converter, fmt.name)
    return Calibrated(blob, input_type, output_type, model_nodes(blob, layer_names(model)))


def check_float_layers(fmt: Format, all_int8: bool, onnx: bool = False) -> None:
    """``--float-layers`` mixes float into the CPU int8 .tflite; elsewhere it is a user error."""
    if onnx:
        raise EdgecnnError("--float-layers applies to the int8 .tflite; drop it with --onnx")
    if not fmt.float_fallback:
        raise EdgecnnError(
            f"--float-layers keeps layers float inside an int8 model for the CPU; it does not apply to {fmt.name} "
            "(the Edge TPU runs int8 only): use --int8"
        )
    if all_int8:
        raise EdgecnnError("--float-layers keeps layers float and --all-int8 quantizes every op; use one of them")


@dataclass(frozen=True)
class Mixed:
    blob: bytes
    float_nodes: list[str]


def quantize(calibrated: Calibrated, float_nodes: Sequence[str] = (), per_tensor: bool = False) -> bytes:
    """The deployable int8 model (uint8 I/O, XNNPACK's float ops float) with ``float_nodes`` kept float too."""
    return quantize_for_xnnpack(
        calibrated.blob, calibrated.input_type, calibrated.output_type, per_tensor, keep_float=float_nodes
    )


def mixed_int8(
    graph: Graph, fmt: Format, io_type: str, calib_images: np.ndarray, model: Any, float_layers: Sequence[str]
) -> Mixed:
    """``convert --int8 --float-layers NAME...``: int8 with the named Keras layers' ops kept float."""
    calibrated = calibrate(graph, fmt, io_type, calib_images, model)
    nodes = nodes_for_layers(calibrated.nodes, float_layers)
    return Mixed(quantize(calibrated, nodes), nodes)


# ---------------------------------------------------------------------------------- local error
def sqnr_db(float_values: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
    """Signal-to-quantization-noise ratio of one op's int8 output against its float twin, in dB."""
    f = np.asarray(float_values, np.float64)
    q = (np.asarray(quantized, np.int32) - zero_point) * scale
    noise = float(np.sum((f - q) ** 2))
    signal = float(np.sum(f**2))
    return float(10 * np.log10(signal / noise)) if noise > 0 and signal > 0 else float("nan")


def cosine(float_values: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
    """Cosine similarity of one op's int8 output (dequantized) and its float twin (1.0: same direction)."""
    f = np.asarray(float_values, np.float64).ravel()
    q = ((np.asarray(quantized, np.int32) - zero_point) * scale).ravel()
    norm = float(np.linalg.norm(f) * np.linalg.norm(q))
    return float(f @ q / norm) if norm > 0 else float("nan")


@dataclass
class LayerError:
    """The debugger's numbers for one op, named by its Keras layers."""

    op: str
    layers: tuple[str, ...]
    sqnr_db: float
    rmse_scale: float  # RMSE of the int8 output in units of its scale; ~0.29 is pure rounding
    cosine: float
    max_abs_error: float
    scale: float


def local_errors(calibrated: Calibrated, images: np.ndarray, per_tensor: bool, model: Any) -> list[LayerError]:
    """Run TensorFlow's QuantizationDebugger on ``images`` (float32 I/O debug model; same quantizer)."""
    from tensorflow.lite.python import convert as tflite_convert  # lazy: private module, TensorFlow only

    with native_stderr_silenced():
        debug_model = tflite_convert.mlir_quantize(
            calibrated.blob, disable_per_channel=per_tensor, fully_quantize=False, enable_numeric_verify=True
        )
    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"sqnr": sqnr_db, "cosine": cosine}
    )

    def dataset() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None].astype(np.float32)]

    with warnings.catch_warnings(), native_stderr_silenced():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model, debug_dataset=dataset, debug_options=options
        )
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)  # the public view: one CSV row per verified op
    known = layer_names(model)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        rows.append(
            LayerError(
                op=row["op_name"],
                layers=tuple(keras_layers(row["tensor_name"], known)),
                sqnr_db=float(row["sqnr"]),
                rmse_scale=float(np.sqrt(float(row["mean_squared_error"])) / scale) if scale else float("nan"),
                cosine=float(row["cosine"]),
                max_abs_error=float(row["max_abs_error"]),
                scale=scale,
            )
        )
    return rows


# ---------------------------------------------------------------------------------- sensitivity
Predict = Callable[[bytes], np.ndarray]


@dataclass
class Sensitivity:
    """How much closer the int8 model's output gets to the float model's when one layer and its output
    tensor stay float (the layers of :func:`units`)."""

    layer: str
    op: str
    float_layers: list[str] = field(default_factory=list)  # the unit: ``layer`` and the layers reading its output
    error_kept_float: float = 0.0  # mean L1 distance of class probabilities to the float model's
    gain: float = 0.0  # the all-int8 error minus error_kept_float: > 0 helps


def output_error(probs: np.ndarray, reference: np.ndarray) -> float:
    """Mean L1 distance between two models' class probabilities (0: identical; 2: disjoint)."""
    return float(np.abs(np.asarray(probs) - np.asarray(reference)).sum(axis=-1).mean())


def sensitivity(
    calibrated: Calibrated,
    predict: Predict,
    reference: np.ndarray,
    baseline: float,
    progress: Callable[[int], None] | None = None,
    carried: Set[str] = frozenset(),
) -> list[Sensitivity]:
    """For each Keras layer computed by int8 ops: keep it and its output tensor float (its unit), measure the
    output error against the float model (``reference``); ``baseline`` is the all-int8 error. Sorted by
    gain, best first. The model measured is the one ``--float-layers`` with the unit's names writes."""
    first_op = {}
    for node in calibrated.nodes:
        first_op.setdefault(node.layer, node.op)
    rows = []
    for layer, names in units(calibrated.nodes, carried).items():
        row = Sensitivity(layer, first_op[layer], names)
        kept = nodes_for_layers(calibrated.nodes, names)
        row.error_kept_float = output_error(predict(quantize(calibrated, kept)), reference)
        row.gain = baseline - row.error_kept_float
        rows.append(row)
        if progress:
            progress(1)
    return sorted(rows, key=lambda r: -r.gain)


@dataclass(frozen=True)
class ChannelRange:
    """How much wider one tensor's widest channel is than its median channel, in the float model."""

    ratio: float  # the widest channel's range over the median channel's (ranges include 0, as int8's does)
    channel: int  # the widest channel


def channel_ranges(calibrated: Calibrated, images: np.ndarray) -> dict[str, ChannelRange]:
    """Per output tensor of an op named after a layer, on ``images`` run through the calibrated (still float)
    model: the widest channel's range over the median channel's. int8 gives an activation tensor one scale,
    so a ratio of r leaves the median channel about 255 / r of its levels: the outlier-channel failure that
    cross-layer equalization exists to fix (Nagel et al., Data-Free Quantization, 2019)."""
    with warnings.catch_warnings(), native_stderr_silenced():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=calibrated.blob, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    wanted = [node.tensor for node in calibrated.nodes if node.layers and node.tensor in index]
    low: dict[str, np.ndarray] = {}
    high: dict[str, np.ndarray] = {}
    for image in images:
        interpreter.set_tensor(source["index"], image[None].astype(source["dtype"]))
        interpreter.invoke()
        for name in wanted:
            values = interpreter.get_tensor(index[name])
            flat = values.reshape(-1, values.shape[-1] if values.ndim > 1 else 1)
            low[name] = np.minimum(low.get(name, 0.0), flat.min(axis=0))
            high[name] = np.maximum(high.get(name, 0.0), flat.max(axis=0))
    result = {}
    for name in low:
        width = high[name] - low[name]
        live = width[width > 0]
        if len(width) > 1 and len(live):
            result[name] = ChannelRange(float(width.max() / np.median(live)), int(width.argmax()))
    return result


def weight_sqnr(kernel: np.ndarray, channel_axis: int = -1) -> tuple[float, float]:
    """SQNR (dB) of symmetric int8 weights, per output channel and per tensor: how much per-channel
    scales matter for this kernel (TFLite quantizes weights per channel unless told otherwise)."""
    w = np.asarray(kernel, np.float64)

    def sqnr(scale: np.ndarray) -> float:
        q = np.clip(np.round(w / scale), -127, 127) * scale
        noise = float(np.sum((w - q) ** 2))
        return float(10 * np.log10(float(np.sum(w**2)) / noise)) if noise > 0 else float("inf")

    axes = tuple(a for a in range(w.ndim) if a != channel_axis % w.ndim)
    per_channel = np.maximum(np.abs(w).max(axis=axes, keepdims=True), 1e-12) / 127
    per_tensor = np.maximum(np.abs(w).max(), 1e-12) / 127
    return sqnr(per_channel), sqnr(np.asarray(per_tensor))
