"""The Edge TPU's supported operations as data, and what to use instead of what it cannot run.

Source: Coral, "TensorFlow models on the Edge TPU", section *Supported operations*
(https://coral.ai/docs/edgetpu/models-intro/#supported-operations). One :class:`OpRule` per row of
its table: the TFLite op, the Edge TPU runtime versions the row applies to (the doc's "Runtime
version" column: *All*, *≤12*, *13+*, *14+*), the doc's "Known limitations" text, and the part of it
that can be checked from the .tflite as small functions (:data:`Limit`).

The same page states the model-wide requirements that :mod:`edgecnn.edgetpu.check` applies to every op:

* tensor parameters are quantized 8-bit (int8 or uint8); float, int16 and 32-bit activations are not;
* tensor sizes are constant at compile time (no dynamic sizes; the batch is 1);
* tensors are 1-, 2- or 3-dimensional; a tensor with more dimensions may only have its 3 innermost
  dimensions larger than 1 (:data:`MAX_INNER_DIMS`);
* "the Edge TPU compiler cannot partition the model more than once, so as soon as an unsupported
  operation occurs, that operation and everything after it executes on the CPU".

Op versions. The doc does not list TFLite op versions, but the compiler rejects versions newer than
the TFLite it was built with ("Operation version not supported"; google-coral/edgetpu issues #631:
CONV_2D version 6 and #845: TRANSPOSE_CONV version 4 with compiler 16.0). ``max_version`` is the
newest version of each op that TFLite 2.6 reads (tensorflow/lite/tools/versioning/runtime_version.cc);
2.6 is our inference of the TFLite inside compiler 16.0 (built mid-2021), consistent with both issues.

Runtime. Rows depend on the Edge TPU runtime; :data:`DEFAULT_RUNTIME` is 14, the runtime of the last
public release (libedgetpu 16.0, compiler 16.0). The compiler's ``-m`` option targets older runtimes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgecnn.edgetpu.tflite_graph import Operator, TFLiteGraph

DOC_URL = "https://coral.ai/docs/edgetpu/models-intro/#supported-operations"
COMPILER_DOC_URL = "https://coral.ai/docs/edgetpu/compiler/#parameter-data-caching"
DEFAULT_RUNTIME = 14
MAX_INNER_DIMS = 3  # only the 3 innermost dimensions of a tensor may be larger than 1
ALL, UP_TO_12, FROM_13, FROM_14 = (1, None), (1, 12), (13, None), (14, None)

# A limit returns the violated limitation in words, or None when the op satisfies it.
Limit = Callable[[Operator, TFLiteGraph], str | None]


@dataclass(frozen=True)
class OpRule:
    """One row of Coral's supported-operations table, for one TFLite op."""

    op: str  # TFLite builtin op name
    doc_name: str  # the op's name in the Coral table
    runtime: tuple[int, int | None]  # Edge TPU runtime versions the row applies to: (first, last or None)
    max_version: int  # newest TFLite op version compiler 16.0 reads (see the module docstring)
    limitation: str = ""  # the doc's "Known limitations" text
    limits: tuple[Limit, ...] = ()  # the checkable part of the limitation
    caution: str = ""  # a documented case that may still not map and that cannot be checked statically

    def applies_to(self, runtime: int) -> bool:
        first, last = self.runtime
        return first <= runtime and (last is None or runtime <= last)

    @property
    def runtime_label(self) -> str:
        first, last = self.runtime
        return "All" if self.runtime == ALL else f"≤{last}" if first == 1 else f"{first}+"


# ------------------------------------------------------------------------------ limit helpers
def _input_values(op: Operator, graph: TFLiteGraph, i: int) -> np.ndarray | None:
    """Values of the op's i-th input when it is a constant (axes, paddings, strides, weights)."""
    if i >= len(op.inputs) or op.inputs[i] < 0:
        return None
    return graph.tensors[op.inputs[i]].values()


def _input_rank(op: Operator, graph: TFLiteGraph) -> int:
    return len(graph.tensors[op.inputs[0]].shape)


def _axes(op: Operator, graph: TFLiteGraph, i: int = 1) -> set[int] | None:
    """Non-negative axes held by constant input ``i`` (reductions, split) or None if not constant."""
    values = _input_values(op, graph, i)
    if values is None:
        return None
    rank = _input_rank(op, graph)
    return {int(a) % rank for a in np.ravel(values)} if rank else set()


def _batch_axis(rank: int) -> int | None:
    """Axis 0 is the batch of a 4-D NHWC tensor; lower-rank tensors have none we can name."""
    return 0 if rank >= 4 else None


def no_fused_activation(op: Operator, graph: TFLiteGraph) -> str | None:
    act = op.options.get("fused_activation", "NONE")
    return None if act == "NONE" else f"has a fused {act} activation (none allowed)"


def same_dilation(op: Operator, graph: TFLiteGraph) -> str | None:
    w, h = op.options.get("dilation_w", 1), op.options.get("dilation_h", 1)
    return None if w == h else f"dilation {h}x{w} differs in y and x"


def no_dilation(op: Operator, graph: TFLiteGraph) -> str | None:
    w, h = op.options.get("dilation_w", 1), op.options.get("dilation_h", 1)
    return None if w == h == 1 else f"dilation {h}x{w} (dilated kernels are not supported)"


def default_weights_format(op: Operator, graph: TFLiteGraph) -> str | None:
    return None if op.options.get("weights_format", 0) == 0 else "weights are not in the default format"


def one_dimensional_output(op: Operator, graph: TFLiteGraph) -> str | None:
    shape = graph.tensors[op.outputs[0]].shape
    return None if sum(d > 1 for d in shape) <= 1 else f"output shape {list(shape)} is not one-dimensional"


def constant_inputs_are_zero_pad(op: Operator, graph: TFLiteGraph) -> str | None:
    constants = [graph.tensors[i] for i in op.inputs if i >= 0 and graph.tensors[i].is_constant]
    if not constants:
        return None
    if len(op.inputs) != 2:
        return f"{len(op.inputs)} inputs with a constant one (only 2 allowed then)"
    for tensor in constants:
        values, q = tensor.values(), tensor.quantization
        zero = q.zero_point[0] if q and q.zero_point else 0
        if values is None or np.any(values != zero):
            return f"constant input {tensor.name or tensor.index} is not all zeros"
    return None


def reduce_not_batch(op: Operator, graph: TFLiteGraph) -> str | None:
    axes, batch = _axes(op, graph), _batch_axis(_input_rank(op, graph))
    if axes is None:
        return "reduction axes are not constant"
    return f"reduces over the batch dimension (axes {sorted(axes)})" if batch in axes else None


def reduce_xy_only(op: Operator, graph: TFLiteGraph) -> str | None:
    axes, rank = _axes(op, graph), _input_rank(op, graph)
    if axes is None:
        return "reduction axes are not constant"
    xy = {rank - 3, rank - 2} if rank >= 3 else set()
    return None if axes <= xy else f"reduces over axes {sorted(axes)}, not only x and y"


def z_reduction_multiple_of_4(op: Operator, graph: TFLiteGraph) -> str | None:
    axes, shape = _axes(op, graph), graph.tensors[op.inputs[0]].shape
    if axes is None or not shape or len(shape) - 1 not in axes:
        return None
    depth = shape[-1]
    return None if depth % 4 == 0 else f"reduces over z (channels) of depth {depth}, not a multiple of 4"


def _paddings(op: Operator, graph: TFLiteGraph) -> np.ndarray | None:
    values = _input_values(op, graph, 1)
    return None if values is None else np.asarray(values).reshape(-1, 2)


def pad_xy_only(op: Operator, graph: TFLiteGraph) -> str | None:
    pads = _paddings(op, graph)
    if pads is None:
        return "paddings are not constant"
    rank = len(pads)
    padded = {i for i, row in enumerate(pads) if np.any(row)}
    xy = {rank - 3, rank - 2} if rank >= 3 else set()
    return None if padded <= xy else f"pads dimensions {sorted(padded)}, not only x and y"


def pad_not_batch(op: Operator, graph: TFLiteGraph) -> str | None:
    pads = _paddings(op, graph)
    if pads is None:
        return "paddings are not constant"
    batch = _batch_axis(len(pads))
    return f"pads the batch dimension by {pads[0].tolist()}" if batch is not None and np.any(pads[batch]) else None


def prelu_alpha_innermost(op: Operator, graph: TFLiteGraph) -> str | None:
    alpha = graph.tensors[op.inputs[1]].shape
    return None if all(d == 1 for d in alpha[:-1]) else f"alpha of shape {list(alpha)} is not one-dimensional"


def softmax_1d_16000(op: Operator, graph: TFLiteGraph) -> str | None:
    tensor = graph.tensors[op.inputs[0]]
    if sum(d > 1 for d in tensor.shape) > 1:
        return f"input shape {list(tensor.shape)} is not one-dimensional"
    return None if tensor.elements <= 16000 else f"input has {tensor.elements} elements (max 16,000)"


def split_not_batch(op: Operator, graph: TFLiteGraph) -> str | None:
    axis = _input_values(op, graph, 0)  # SPLIT(axis, input)
    if axis is None:
        return "split axis is not constant"
    rank = len(graph.tensors[op.inputs[1]].shape)
    return "splits the batch dimension" if rank >= 4 and int(np.ravel(axis)[0]) % rank == 0 else None


def pack_not_batch(op: Operator, graph: TFLiteGraph) -> str | None:
    return "packs along the batch dimension" if op.options.get("axis", 0) == 0 else None


def strided_slice_unit_strides(op: Operator, graph: TFLiteGraph) -> str | None:
    strides = _input_values(op, graph, 3)
    if strides is None or np.any(np.asarray(strides) != 1):
        return "strides are not all 1"
    masks = [k for k in ("ellipsis_mask", "new_axis_mask") if op.options.get(k, 0)]
    return f"{' and '.join(masks)} set" if masks else None


# ------------------------------------------------------------------------------------- table
_RESIZE_CAUTION = (
    "Depending on input/output size, this operation may not be mapped to the Edge TPU to avoid loss in precision."
)
_NO_FUSED = "No fused activation function."
_NO_BATCH = "Cannot operate on the batch dimension."

OP_TABLE: tuple[OpRule, ...] = (
    OpRule("ADD", "Add", ALL, 4),
    OpRule("AVERAGE_POOL_2D", "AveragePool2d", ALL, 3, _NO_FUSED, (no_fused_activation,)),
    OpRule(
        "CONCATENATION",
        "Concatenation",
        ALL,
        3,
        _NO_FUSED + " If any input is a compile-time constant tensor, there must be only 2 inputs, and this "
        "constant tensor must be all zeroes (effectively, a zero-padding op).",
        (no_fused_activation, constant_inputs_are_zero_pad),
    ),
    OpRule("CONV_2D", "Conv2d", ALL, 5, "Must use the same dilation in x and y dimensions.", (same_dilation,)),
    OpRule(
        "DEPTHWISE_CONV_2D", "DepthwiseConv2d", UP_TO_12, 6, "Dilated conv kernels are not supported.", (no_dilation,)
    ),
    OpRule(
        "DEPTHWISE_CONV_2D",
        "DepthwiseConv2d",
        FROM_13,
        6,
        "Must use the same dilation in x and y dimensions.",
        (same_dilation,),
    ),
    OpRule("EXPAND_DIMS", "ExpandDims", FROM_13, 1),
    OpRule(
        "FULLY_CONNECTED",
        "FullyConnected",
        ALL,
        9,
        "Only the default format is supported for fully-connected weights. Output tensor is one-dimensional.",
        (default_weights_format, one_dimensional_output),
    ),
    OpRule("L2_NORMALIZATION", "L2Normalization", ALL, 2),
    OpRule("LOGISTIC", "Logistic", ALL, 3),
    OpRule("LSTM", "LSTM", FROM_14, 4, "Unidirectional LSTM only."),
    OpRule("UNIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", FROM_14, 3, "Unidirectional LSTM only."),
    OpRule("MAXIMUM", "Maximum", ALL, 4),
    OpRule("MAX_POOL_2D", "MaxPool2d", ALL, 3, _NO_FUSED, (no_fused_activation,)),
    OpRule(
        "MEAN",
        "Mean",
        UP_TO_12,
        3,
        "No reduction in batch dimension. Supports reduction along x- and/or y-dimensions only.",
        (reduce_not_batch, reduce_xy_only),
    ),
    OpRule(
        "MEAN",
        "Mean",
        FROM_13,
        3,
        "No reduction in batch dimension. If a z-reduction, the z-dimension must be multiple of 4.",
        (reduce_not_batch, z_reduction_multiple_of_4),
    ),
    OpRule("MINIMUM", "Minimum", ALL, 4),
    OpRule("MUL", "Mul", ALL, 5),
    OpRule("PACK", "Pack", FROM_13, 3, "No packing in batch dimension.", (pack_not_batch,)),
    OpRule("PAD", "Pad", UP_TO_12, 4, "Supports padding along x- and/or y-dimensions only.", (pad_xy_only,)),
    OpRule("PAD", "Pad", FROM_13, 4, "No padding in batch dimension.", (pad_not_batch,)),
    OpRule(
        "PRELU",
        "PReLU",
        FROM_13,
        1,
        "Alpha must be 1-dimensional (only the innermost dimension can be >1 size). If using Keras PReLU with "
        "4D input (batch, height, width, channels), then shared_axes must be [1,2] so each filter has only one "
        "set of parameters.",
        (prelu_alpha_innermost,),
    ),
    OpRule("QUANTIZE", "Quantize", FROM_13, 2),
    OpRule("REDUCE_MAX", "ReduceMax", FROM_14, 3, _NO_BATCH, (reduce_not_batch,)),
    OpRule("REDUCE_MIN", "ReduceMin", FROM_14, 3, _NO_BATCH, (reduce_not_batch,)),
    OpRule("RELU", "ReLU", ALL, 3),
    OpRule("RELU6", "ReLU6", ALL, 3),
    OpRule("RELU_N1_TO_1", "ReLUN1To1", ALL, 1),
    OpRule(
        "RESHAPE",
        "Reshape",
        ALL,
        1,
        "Certain reshapes might not be mapped for large tensor sizes.",
        caution="certain reshapes might not be mapped for large tensor sizes",
    ),
    OpRule(
        "RESIZE_BILINEAR",
        "ResizeBilinear",
        ALL,
        4,
        "Input/output is a 3-dimensional tensor. " + _RESIZE_CAUTION,
        caution="may not be mapped, depending on input/output size, to avoid loss in precision",
    ),
    OpRule(
        "RESIZE_NEAREST_NEIGHBOR",
        "ResizeNearestNeighbor",
        ALL,
        4,
        "Input/output is a 3-dimensional tensor. " + _RESIZE_CAUTION,
        caution="may not be mapped, depending on input/output size, to avoid loss in precision",
    ),
    OpRule("RSQRT", "Rsqrt", FROM_14, 2),
    OpRule("SLICE", "Slice", ALL, 5),
    OpRule(
        "SOFTMAX",
        "Softmax",
        ALL,
        3,
        "Supports only 1-D input tensor with a max of 16,000 elements.",
        (softmax_1d_16000,),
    ),
    OpRule("SPACE_TO_DEPTH", "SpaceToDepth", ALL, 2),
    OpRule("SPLIT", "Split", ALL, 4, "No splitting in batch dimension.", (split_not_batch,)),
    OpRule("SQUARED_DIFFERENCE", "SquaredDifference", FROM_14, 2),
    OpRule("SQUEEZE", "Squeeze", ALL, 2),
    OpRule(
        "STRIDED_SLICE",
        "StridedSlice",
        ALL,
        6,
        "Supported only when all strides are equal to 1 (that is, effectively a Stride op), and with "
        "ellipsis-axis-mask == 0, and new-axis-max == 0.",
        (strided_slice_unit_strides,),
    ),
    OpRule("SUB", "Sub", ALL, 5),
    OpRule("SUM", "Sum", FROM_13, 2, _NO_BATCH, (reduce_not_batch,)),
    OpRule("TANH", "Tanh", ALL, 3),
    OpRule("TRANSPOSE", "Transpose", FROM_14, 5),
    OpRule("TRANSPOSE_CONV", "TransposeConv", ALL, 3),
)


def rules_for(op: str) -> list[OpRule]:
    """Every row of the table for a TFLite op (several when the limits changed with the runtime)."""
    return [rule for rule in OP_TABLE if rule.op == op]


def find_rule(op: str, runtime: int = DEFAULT_RUNTIME) -> OpRule | None:
    """The row that applies to ``op`` on Edge TPU runtime ``runtime``, or None if it is not supported."""
    return next((rule for rule in rules_for(op) if rule.applies_to(runtime)), None)


# ---------------------------------------------------------------------------- substitutions
@dataclass(frozen=True)
class Substitute:
    """What to build instead of a construct the Edge TPU cannot run (or runs poorly), and why."""

    instead: str  # an imperative: "replace with ReLU6", "remove the block"
    why: str


# Keyed by Keras layer class, Keras activation name or TFLite op name (whatever the check finds).
_RELU = "fuses into the preceding convolution and its fixed 0..6 range quantizes well"
_BN = "a constant per-channel affine map at inference, folded into the adjacent convolution"
SUBSTITUTES: dict[str, Substitute] = {
    "HardSwish": Substitute("replace with ReLU6", _RELU),
    "HARD_SWISH": Substitute("replace with ReLU6", _RELU),
    "hard_swish": Substitute("replace with ReLU6", _RELU),
    "swish": Substitute(
        "replace with ReLU6", "one fused op instead of LOGISTIC + MUL, and it quantizes better (EfficientNet-Lite)"
    ),
    "silu": Substitute(
        "replace with ReLU6", "one fused op instead of LOGISTIC + MUL, and it quantizes better (EfficientNet-Lite)"
    ),
    "SqueezeExcite": Substitute(
        "remove the block", "saves a MEAN, two 1x1 convs and a MUL per block (EfficientNet-Lite)"
    ),
    "gelu": Substitute("replace with ReLU or ReLU6", _RELU),
    "GELU": Substitute("replace with ReLU or ReLU6", _RELU),
    "LayerNormalization": Substitute("replace with BatchNormalization", _BN),
    "elu": Substitute("replace with ReLU", _RELU),
    "selu": Substitute("replace with ReLU", _RELU),
    "ELU": Substitute("replace with ReLU", _RELU),
    "LeakyReLU": Substitute(
        "ReLU, or PReLU with shared_axes=[1, 2]", "both are in the op table (PReLU from runtime 13)"
    ),
    "LEAKY_RELU": Substitute(
        "ReLU, or PReLU with shared_axes=[1, 2]", "both are in the op table (PReLU from runtime 13)"
    ),
    "softplus": Substitute("replace with ReLU", _RELU),
    "exponential": Substitute("replace with ReLU", _RELU),
    "EXP": Substitute("replace with ReLU", _RELU),
    "GlobalMaxPooling2D": Substitute(
        "replace with GlobalAveragePooling2D", "MEAN maps on every runtime, REDUCE_MAX from 14"
    ),
    "DEQUANTIZE": Substitute("convert with uint8 I/O (edgecnn convert --int8 --io uint8)", "keeps the graph 8-bit"),
}


def substitute_for(*keys: str) -> Substitute | None:
    """The first substitution known for any of ``keys`` (layer class, activation, TFLite op)."""
    return next((SUBSTITUTES[k] for k in keys if k in SUBSTITUTES), None)
