"""Per-layer int8 error in Keras layer names, and which layers a selective mixed int8/float model should keep float.

Analysis only: the conversion (calibrate once, quantize with a node denylist) is the export path's
(:func:`edgecnn.convert.tflite.calibrate`, :func:`edgecnn.convert.tflite.quantize`, the stages of
:func:`edgecnn.convert.export.export`), so every variant measured here is the file ``convert --int8
--float-layers`` writes. The pieces:

- **Names.** TensorFlow's converter names each op's output tensor after the Keras layers fused into it:
  :func:`edgecnn.convert.nodes.keras_layers` reads them back, so every row and every ``--float-layers NAME``
  speaks the user's layer names.
- **Local error.** TensorFlow's ``tf.lite.experimental.QuantizationDebugger`` runs a debug model in which
  each int8 op is paired with its float twin fed the same (quantized) input; per op it gives the error
  statistics and, through ``layer_direct_compare_metrics``, the SQNR and cosine below.
- **Mixed int8/float.** The quantizer edgecnn's int8 path already uses keeps named nodes float
  (:func:`edgecnn.convert.tflite.quantize` with ``float_nodes``; :func:`edgecnn.convert.nodes.nodes_for_layers`
  maps layer names to those nodes), and :func:`sensitivity` measures, one unit at a time, how much closer to the
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
import io
import warnings
from collections.abc import Callable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.convert.nodes import Node, keras_layers, layer_names, nodes_for_layers
from edgecnn.convert.tflite import Calibrated, quantize
from edgecnn.core.keras_env import tf
from edgecnn.core.quiet import native_stderr_silenced

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

    # Not an export: the quantizer's numeric-verify mode writes a debug model (each int8 op paired with its
    # float twin) that only the QuantizationDebugger reads; deployable int8 is edgecnn.convert.tflite.quantize.
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
