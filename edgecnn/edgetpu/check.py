"""Will it run on the Edge TPU? Per op (or Keras layer): can the Edge TPU run it, and if not, why.

:func:`check_tflite` reads the .tflite flatbuffer (no TensorFlow) and applies Coral's rules
(:mod:`edgecnn.edgetpu.ops`) to every operator in execution order. :func:`check_keras` maps each
Keras layer to the TFLite ops the int8 converter makes of it (:data:`KERAS_LAYERS`, measured with
TensorFlow 2.21) and applies the same rules, so a model can be checked before training or conversion.

Both apply the compiler's partitioning rule: the compiler maps one Edge TPU subgraph, so the first
op it cannot map and every op after it run on the CPU. A QUANTIZE or DEQUANTIZE that only converts a
graph input or output is the exception: it stays on the CPU at the edge of the graph (float I/O).

Parameter memory is estimated at int8 (weights 1 byte, int32 biases 4 bytes) against the Edge TPU's
on-chip SRAM: "The Edge TPU has roughly 8 MB of SRAM that can cache the model's parameter data"
(Coral, Edge TPU Compiler, Parameter data caching); a small part of it is first reserved for the
model's executable. Parameters that do not fit are streamed from host memory on every inference.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edgecnn.edgetpu.ops import (
    COMPILER_DOC_URL,
    DEFAULT_RUNTIME,
    DOC_URL,
    MAX_INNER_DIMS,
    OpRule,
    Substitute,
    find_rule,
    rules_for,
    substitute_for,
)
from edgecnn.edgetpu.tflite_graph import Operator, Tensor, TFLiteGraph, read_graph
from edgecnn.runtime.detect import POSTPROCESS_OP as DETECTION_POSTPROCESS

SRAM_BYTES = 8 * 1024 * 1024  # "roughly 8 MB of SRAM" for parameter caching (Coral compiler docs)
QUANTIZED_TYPES = ("INT8", "UINT8")
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"  # what edgetpu_compiler puts in place of the mapped ops
# The detection tail: decoding + NMS run on the CPU by design, after the mapped graph, exactly as in
# Coral's own SSD models; the DEQUANTIZE ops that feed it go with it.
IO_NOTE = "an input/output conversion: it stays on the CPU without splitting the Edge TPU graph"
TAIL_NOTE = "the detection postprocess (decode + NMS) runs on the CPU after the Edge TPU graph, as in Coral's SSDs"

# Per-op statuses, in the words of the compiler's operation log where it has one.
MAPPED = "Mapped to Edge TPU"
NOT_SUPPORTED = "Operation not supported"
BAD_TYPE = "Operation is working on an unsupported data type"
BAD_VERSION = "Operation version not supported"
BAD_RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
LIMITATION = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
AFTER_FALLBACK = "More than one subgraph is not supported"
DYNAMIC = "Tensor has a dynamic size"  # edgecnn's words, as are the three below: sizes must be static
BOUNDARY = "Runs on CPU at the graph's input/output"
COMPILED = "Already compiled for Edge TPU"
UNKNOWN = "Unknown layer: not in edgecnn's Keras table"


@dataclass
class OpCheck:
    """The verdict for one TFLite op or one Keras layer."""

    index: int
    op: str  # TFLite op name, or Keras layer class
    name: str  # output tensor name, or layer name
    tflite_ops: list[str]  # the TFLite ops it is (one) or becomes (Keras: zero or more)
    supported: bool | None  # can the Edge TPU run it by itself; None: unknown (Keras layer not in the table)
    status: str
    reasons: list[str] = field(default_factory=list)  # why the Edge TPU cannot run it
    notes: list[str] = field(default_factory=list)  # what the converter makes of a Keras layer
    cautions: list[str] = field(default_factory=list)  # documented cases where a supported op may still not map
    version: int | None = None
    on_edgetpu: bool = False  # after the one-subgraph rule
    boundary: bool = False  # an unsupported I/O conversion that stays on the CPU without cutting the graph
    note: str | None = None  # why a boundary op is fine where it is
    suggestion: str | None = None  # what to use instead, for an op that does not map
    advice: str | None = None  # a known better substitute for an op that maps
    layer: str | None = None  # the Keras layer the op came from, when a Keras model was converted to check it


@dataclass
class CheckReport:
    source: str
    kind: str  # "tflite" | "keras"
    runtime: int  # Edge TPU runtime version the rules were applied for
    ops: list[OpCheck]
    first_fallback: int | None  # index in ``ops`` of the op from which everything runs on the CPU
    problems: list[str]  # model-wide findings
    param_bytes: int  # parameter memory at int8
    sram_bytes: int = SRAM_BYTES

    @property
    def mapped(self) -> int:
        return sum(op.on_edgetpu for op in self.ops)

    @property
    def on_cpu(self) -> int:
        return sum(not op.on_edgetpu and bool(op.tflite_ops) for op in self.ops)

    @property
    def counted(self) -> int:
        """Ops (or layers that become ops) the verdict counts; folded Keras layers are not among them."""
        return sum(bool(op.tflite_ops) for op in self.ops)

    @property
    def fully_mapped(self) -> bool:
        """Every op runs on the Edge TPU (I/O conversions at the graph's edge aside)."""
        return self.first_fallback is None and not self.problems

    @property
    def fits_sram(self) -> bool:
        return self.param_bytes <= self.sram_bytes

    @property
    def after_fallback(self) -> int:
        """How many ops follow the first CPU op (they all run on the CPU)."""
        if self.first_fallback is None:
            return 0
        return sum(bool(op.tflite_ops) for op in self.ops[self.first_fallback + 1 :])

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(
            mapped=self.mapped,
            counted=self.counted,
            on_cpu=self.on_cpu,
            fully_mapped=self.fully_mapped,
            after_fallback=self.after_fallback,
            fits_sram=self.fits_sram,
            doc=DOC_URL,
        )
        return out


# ------------------------------------------------------------------------------- tflite check
def check_tflite(source: str | os.PathLike | bytes, runtime: int = DEFAULT_RUNTIME) -> CheckReport:
    """Check a .tflite model (path or bytes) op by op against the Edge TPU's rules."""
    graph = read_graph(source)
    checks = [_check_op(op, graph, runtime) for op in graph.operators]
    for check, op in zip(checks, graph.operators, strict=True):
        if check.status in (BAD_TYPE, NOT_SUPPORTED) and _is_io_conversion(op, graph):
            check.boundary, check.status = True, BOUNDARY
        elif check.status in (BAD_TYPE, NOT_SUPPORTED) and _is_cpu_tail(op, graph):
            check.boundary, check.status, check.note = True, BOUNDARY, TAIL_NOTE
    first = _place(checks)
    return CheckReport(
        source=str(source) if not isinstance(source, bytes | bytearray) else "<bytes>",
        kind="tflite",
        runtime=runtime,
        ops=checks,
        first_fallback=first,
        problems=_graph_problems(graph),
        param_bytes=sum(_int8_bytes(t) for t in graph.tensors if t.is_constant),
    )


def _check_op(op: Operator, graph: TFLiteGraph, runtime: int) -> OpCheck:
    """Apply, in order: op in the table, op version, 8-bit types, static shapes, rank, op limits."""
    name = graph.tensors[op.outputs[0]].name.split(";")[0] if op.outputs else ""  # fused ops join names with ';'
    check = OpCheck(op.index, op.name, name, [op.name], supported=True, status=MAPPED, version=op.version)
    if op.custom and op.name == EDGETPU_CUSTOM_OP:
        check.status = COMPILED
        return check
    rule = find_rule(op.name, runtime)
    if rule is None:
        return _reject(check, NOT_SUPPORTED, _not_in_table(op.name, runtime))
    if op.version > rule.max_version:
        return _reject(
            check,
            BAD_VERSION,
            f"{op.name} version {op.version} is newer than Edge TPU compiler 16.0 reads (up to {rule.max_version})",
        )
    tensors = [t for t in graph.input_tensors(op) + graph.output_tensors(op) if t is not None]
    for status, find in ((BAD_TYPE, _type_problem), (DYNAMIC, _dynamic_problem), (BAD_RANK, _rank_problem)):
        problems = list(dict.fromkeys(p for p in (find(t) for t in tensors) if p))  # one line per kind
        if problems:
            return _reject(check, status, *problems)
    limits = [reason for reason in (limit(op, graph) for limit in rule.limits) if reason]
    if limits:
        return _reject(check, LIMITATION, *(f"{rule.doc_name}: {reason}" for reason in limits))
    if rule.caution:
        check.cautions.append(f"{rule.doc_name}: {rule.caution}")
    return check


def _reject(check: OpCheck, status: str, *reasons: str) -> OpCheck:
    check.supported, check.status = False, status
    check.reasons.extend(reasons)
    sub = substitute_for(check.op)
    check.suggestion = _fix(sub)
    return check


def _fix(sub: Substitute | None) -> str | None:
    return f"{sub.instead}: {sub.why}" if sub else None


def _not_in_table(op: str, runtime: int) -> str:
    rows = rules_for(op)
    if rows:
        needs = ", ".join(sorted({r.runtime_label for r in rows}))
        return f"{op} needs Edge TPU runtime {needs} (checking for runtime {runtime})"
    return f"{op} is not in the Edge TPU's supported-op table"


def _type_problem(tensor: Tensor) -> str | None:
    """Activations must be int8/uint8 with quantization; constants may also be int32 (biases, indices)."""
    allowed = QUANTIZED_TYPES + ("INT32",) if tensor.is_constant else QUANTIZED_TYPES
    if tensor.type not in allowed:
        return f"has {tensor.type} tensors (the Edge TPU needs 8-bit quantized tensors)"
    if tensor.type in QUANTIZED_TYPES and not tensor.is_quantized:
        return f"has {tensor.type} tensors without quantization parameters"
    return None


def _dynamic_problem(tensor: Tensor) -> str | None:
    if tensor.is_dynamic and not tensor.is_constant:
        return f"has tensors of dynamic shape {list(tensor.shape_signature or ())}"
    return None


def _rank_problem(tensor: Tensor) -> str | None:
    return _leading_dims_problem(tensor.shape, tensor.name or str(tensor.index)) if not tensor.is_constant else None


def _leading_dims_problem(shape: Iterable[int], name: str) -> str | None:
    """Only the 3 innermost dimensions may be larger than 1 (so the batch must be 1)."""
    shape = list(shape)
    leading = shape[:-MAX_INNER_DIMS]
    if not any(d > 1 for d in leading):
        return None
    if len(shape) == 4 and shape[0] > 1 and not any(d > 1 for d in leading[1:]):
        return f"tensor {name} has batch {shape[0]} (the Edge TPU runs batch 1)"
    return f"tensor {name} has shape {shape}: only the 3 innermost dimensions may be larger than 1"


def _is_io_conversion(op: Operator, graph: TFLiteGraph) -> bool:
    """A QUANTIZE/DEQUANTIZE that reads a graph input or writes a graph output (float or other I/O types)."""
    if op.name not in ("QUANTIZE", "DEQUANTIZE"):
        return False
    return all(i in graph.inputs for i in op.inputs if i >= 0) or all(o in graph.outputs for o in op.outputs)


def _is_cpu_tail(op: Operator, graph: TFLiteGraph) -> bool:
    """The detection postprocess op, or a DEQUANTIZE whose outputs only feed it."""
    if op.custom and op.name == DETECTION_POSTPROCESS:
        return True
    if op.name != "DEQUANTIZE":
        return False
    readers = [o for o in graph.operators if set(o.inputs) & set(op.outputs)]
    return bool(readers) and all(o.custom and o.name == DETECTION_POSTPROCESS for o in readers)


def _place(checks: list[OpCheck]) -> int | None:
    """Apply the one-subgraph rule; returns the index of the first op that sends the rest to the CPU."""
    first: int | None = None
    for i, check in enumerate(checks):
        if first is None and check.supported is not True and not check.boundary and check.tflite_ops:
            first = i
        check.on_edgetpu = first is None and check.supported is True and bool(check.tflite_ops)
        if first is not None and i > first and check.supported and check.tflite_ops:
            check.status = AFTER_FALLBACK
    return first


def _graph_problems(graph: TFLiteGraph) -> list[str]:
    problems: list[str] = []
    if not graph.operators:
        problems.append("the model has no operators")
    if not any(t.type in QUANTIZED_TYPES for t in graph.tensors):
        problems.append("the model is not quantized (no int8/uint8 tensors); convert it with: edgecnn convert --int8")
    for i in graph.inputs:
        tensor = graph.tensors[i]
        if tensor.is_dynamic:
            problems.append(
                f"input {tensor.name} has a dynamic shape {list(tensor.shape_signature or ())}; "
                "the Edge TPU needs a fixed batch-1 input (edgecnn convert traces one)"
            )
    if graph.subgraphs > 1:
        problems.append(f"the model has {graph.subgraphs} subgraphs (control flow); only subgraph 0 was checked")
    return problems


def _int8_bytes(tensor: Tensor) -> int:
    """Bytes a constant takes in an int8 model: 4 per int32/int64 element (biases), 1 otherwise."""
    return tensor.elements * (4 if tensor.type in ("INT32", "INT64") else 1)


# -------------------------------------------------------------------------------- keras check
@dataclass(frozen=True)
class LayerOps:
    """What the int8 converter makes of one Keras layer."""

    ops: tuple[str, ...]  # TFLite ops, in order; empty when the layer folds away or is a no-op
    reasons: tuple[str, ...] = ()  # limitations of those ops that this layer's config or shapes violate
    note: str = ""


LayerMap = Callable[[Any, int], LayerOps | None]  # (layer, runtime) -> ops, or None when unknown

# Keras activation name -> TFLite ops (checked by converting tiny models with TensorFlow 2.21).
ACTIVATION_OPS: dict[str, tuple[str, ...]] = {
    "linear": (),
    "relu": ("RELU",),
    "relu6": ("RELU6",),
    "sigmoid": ("LOGISTIC",),
    "tanh": ("TANH",),
    "softmax": ("SOFTMAX",),
    "swish": ("LOGISTIC", "MUL"),
    "silu": ("LOGISTIC", "MUL"),
    "hard_sigmoid": ("MUL", "ADD", "MINIMUM", "RELU"),
    "gelu": ("GELU",),
    "elu": ("ELU",),
    "selu": ("ELU", "MUL"),
    "exponential": ("EXP",),
    "leaky_relu": ("LEAKY_RELU",),
}


def _activation_name(layer: Any, key: str = "activation") -> str:
    act = layer.get_config().get(key, "linear")
    if isinstance(act, dict):  # serialized activation object
        act = act.get("config", {}).get("name") or act.get("class_name", "")
    return str(getattr(act, "__name__", act)).lower()


def _output_shape(layer: Any) -> tuple[Any, ...]:
    shape = layer.output_shape
    return tuple(shape[0] if isinstance(shape, list) else shape)


def _input_shape(layer: Any) -> tuple[Any, ...]:
    shape = layer.input_shape
    return tuple(shape[0] if isinstance(shape, list) else shape)


def _with_activation(ops: tuple[str, ...], layer: Any, *reasons: str, note: str = "") -> LayerOps | None:
    """A layer's own ops plus those of its ``activation`` (None when the activation is unknown)."""
    act = _activation_name(layer)
    if act not in ACTIVATION_OPS:
        return None
    extra = [*reasons]
    if act == "softmax":
        extra.extend(r for r in [_softmax_problem(_output_shape(layer))] if r)
    return LayerOps(ops + ACTIVATION_OPS[act], tuple(extra), note)


def _softmax_problem(shape: tuple[Any, ...]) -> str | None:
    dims = [1 if d is None else int(d) for d in shape[1:]]
    if sum(d > 1 for d in dims) > 1:
        return f"Softmax: input shape {list(shape[1:])} is not one-dimensional"
    n = max(dims, default=1)
    return None if n <= 16000 else f"Softmax: input has {n} elements (max 16,000)"


def _dilation_problem(layer: Any, runtime: int, depthwise: bool) -> tuple[str, ...]:
    h, w = layer.get_config().get("dilation_rate", (1, 1))
    if depthwise and runtime <= 12 and (h, w) != (1, 1):
        return (f"DepthwiseConv2d: dilation {h}x{w} (dilated kernels are not supported on runtime ≤12)",)
    return (f"Conv2d: dilation {h}x{w} differs in y and x",) if h != w else ()


def _conv(layer: Any, runtime: int) -> LayerOps | None:
    return _with_activation(("CONV_2D",), layer, *_dilation_problem(layer, runtime, False))


def _depthwise(layer: Any, runtime: int) -> LayerOps | None:
    return _with_activation(("DEPTHWISE_CONV_2D",), layer, *_dilation_problem(layer, runtime, True))


def _dense(layer: Any, runtime: int) -> LayerOps | None:
    shape = _output_shape(layer)
    inner = [d for d in shape[1:-1] if d is None or d > 1]
    reason = (f"FullyConnected: output shape {list(shape[1:])} is not one-dimensional",) if inner else ()
    return _with_activation(("FULLY_CONNECTED",), layer, *reason)


def _relu(layer: Any, runtime: int) -> LayerOps | None:
    config = layer.get_config()
    if config.get("threshold"):
        return None
    if config.get("negative_slope"):
        return LayerOps(("LEAKY_RELU",))
    max_value = config.get("max_value")
    return LayerOps(("RELU",) if max_value is None else ("RELU6",) if max_value == 6 else ("RELU", "MINIMUM"))


def _upsampling(layer: Any, runtime: int) -> LayerOps | None:
    kind = layer.get_config().get("interpolation", "nearest")
    ops = {"nearest": ("RESIZE_NEAREST_NEIGHBOR",), "bilinear": ("RESIZE_BILINEAR",)}.get(kind)
    return LayerOps(ops) if ops else None


def _prelu(layer: Any, runtime: int) -> LayerOps | None:
    alpha = tuple(int(d) for d in layer.alpha.shape)
    bad = any(d > 1 for d in alpha[:-1])
    return LayerOps(("PRELU",), ("PReLU: alpha is not one-dimensional; use shared_axes=[1, 2]",) if bad else ())


def _squeeze_excite(layer: Any, runtime: int) -> LayerOps | None:
    gate = ("MUL",) if layer.gate == "hard_sigmoid" else ("LOGISTIC",)  # relu6 fuses into the expand conv
    return LayerOps(("MEAN", "CONV_2D", "CONV_2D", *gate, "MUL"), note="global mean over x/y, two 1x1 convs, gate")


_LAYER_NORM = LayerOps(
    ("RESHAPE", "MEAN", "SQUARED_DIFFERENCE", "MEAN", "ADD", "RSQRT", "MUL", "MUL", "SUB", "ADD", "RESHAPE"),
    ("Mean: the converter lowers LayerNorm to MEAN over axes that include the batch dimension",),
    note="statistics computed per position at run time",
)


def _fixed(*ops: str, note: str = "") -> LayerMap:
    return lambda layer, runtime: LayerOps(ops, note=note)


def _folded(note: str) -> LayerMap:
    return lambda layer, runtime: LayerOps((), note=note)


KERAS_LAYERS: dict[str, LayerMap] = {
    "InputLayer": _folded(""),
    "Dropout": _folded("no op at inference"),
    "SpatialDropout2D": _folded("no op at inference"),
    "GaussianNoise": _folded("no op at inference"),
    "ActivityRegularization": _folded("no op at inference"),
    "BatchNormalization": _folded("folds into the preceding convolution (else MUL + ADD, both supported)"),
    "Rescaling": _folded("folds into the input quantization or the next convolution (else MUL + ADD)"),
    "LayerScale": _folded("a per-channel MUL that folds into the preceding convolution"),
    "Conv2D": _conv,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": lambda layer, runtime: _with_activation(
        ("DEPTHWISE_CONV_2D", "CONV_2D"), layer, *_dilation_problem(layer, runtime, True)
    ),
    "Conv2DTranspose": lambda layer, runtime: _with_activation(("TRANSPOSE_CONV",), layer),
    "Dense": _dense,
    "Activation": lambda layer, runtime: _with_activation((), layer),
    "ReLU": _relu,
    "LeakyReLU": _fixed("LEAKY_RELU"),
    "ELU": _fixed("ELU"),
    "PReLU": _prelu,
    "Softmax": lambda layer, runtime: LayerOps(
        ("SOFTMAX",), tuple(r for r in [_softmax_problem(_input_shape(layer))] if r)
    ),
    "Add": _fixed("ADD"),
    "Subtract": _fixed("SUB"),
    "Multiply": _fixed("MUL"),
    "Maximum": _fixed("MAXIMUM"),
    "Minimum": _fixed("MINIMUM"),
    "Average": _fixed("ADD", "MUL"),
    "Concatenate": _fixed("CONCATENATION"),
    "AveragePooling2D": _fixed("AVERAGE_POOL_2D"),
    "MaxPooling2D": _fixed("MAX_POOL_2D"),
    "GlobalAveragePooling2D": _fixed("MEAN", note="mean over x and y"),
    "GlobalMaxPooling2D": _fixed("REDUCE_MAX", note="max over x and y"),
    "Flatten": _fixed("RESHAPE"),
    "Reshape": _fixed("RESHAPE"),
    "Permute": _fixed("TRANSPOSE"),
    "ZeroPadding2D": _fixed("PAD", note="pads x and y"),
    "UpSampling2D": _upsampling,
    "LayerNormalization": lambda layer, runtime: _LAYER_NORM,
    # edgecnn's custom layers (edgecnn/archs/layers.py, edgecnn/archs/convnext.py), by class name
    "HardSwish": _fixed("HARD_SWISH"),
    "HardSigmoid": _fixed("ADD", "MUL", note="relu6(x + 3) / 6: the ReLU6 fuses into the ADD"),
    "SqueezeExcite": _squeeze_excite,
}


def check_keras(model: Any, runtime: int = DEFAULT_RUNTIME, source: str = "") -> CheckReport:
    """Check a tf_keras model layer by layer, before conversion (no TensorFlow import of its own)."""
    checks = [_check_layer(i, layer, runtime) for i, layer in enumerate(_flat_layers(model))]
    first = _place(checks)
    return CheckReport(
        source=source or getattr(model, "name", "keras model"),
        kind="keras",
        runtime=runtime,
        ops=checks,
        first_fallback=first,
        problems=_keras_problems(model),
        param_bytes=_keras_param_bytes(model),
    )


def _flat_layers(model: Any) -> list[Any]:
    """Layers in graph order, nested models (Sequential/Functional used as layers) expanded."""
    out: list[Any] = []
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Functional", "Sequential", "Model"):
            out.extend(_flat_layers(layer))
        else:
            out.append(layer)
    return out


def _check_layer(index: int, layer: Any, runtime: int) -> OpCheck:
    kind = type(layer).__name__
    act = _activation_name(layer) if "activation" in layer.get_config() else ""
    mapper = KERAS_LAYERS.get(kind)
    mapped = mapper(layer, runtime) if mapper else None
    if mapped is None:
        detail = f"{kind} ({act})" if act else kind
        reason = f"{detail} is not in edgecnn's Keras table; convert it and run the check on the .tflite"
        return OpCheck(index, kind, layer.name, ["?"], supported=None, status=UNKNOWN, reasons=[reason])
    check = OpCheck(index, kind, layer.name, list(mapped.ops), supported=True, status=MAPPED)
    check.notes.extend([mapped.note] if mapped.note else [])
    missing = [op for op in dict.fromkeys(mapped.ops) if find_rule(op, runtime) is None]
    problems = [(NOT_SUPPORTED, _not_in_table(op, runtime)) for op in missing]
    shape_problem = _keras_shape_problem(layer) if mapped.ops else None
    problems.extend([shape_problem] if shape_problem else [])
    problems.extend((LIMITATION, reason) for reason in mapped.reasons)
    sub = substitute_for(kind, act, *missing)
    if problems:
        check.supported, check.status = False, problems[0][0]
        check.reasons = [reason for _, reason in problems]
        check.suggestion = _fix(sub)
        return check
    check.cautions.extend(_cautions(mapped.ops, runtime))
    check.advice = _fix(sub)  # it maps, but a substitute is known to run faster or quantize better
    return check


def _cautions(ops: Iterable[str], runtime: int) -> list[str]:
    rules = [find_rule(op, runtime) for op in dict.fromkeys(ops)]
    return [f"{r.doc_name}: {r.caution}" for r in rules if isinstance(r, OpRule) and r.caution]


def _keras_shape_problem(layer: Any) -> tuple[str, str] | None:
    """(status, reason) when a layer's output is dynamic beyond the batch or breaks the rank rule."""
    shape = _output_shape(layer)
    if any(d is None for d in shape[1:]):
        return DYNAMIC, f"output of {layer.name} has a dynamic shape {list(shape)}"
    problem = _leading_dims_problem([1 if shape[0] is None else shape[0], *shape[1:]], layer.name)
    return (BAD_RANK, problem) if problem else None


def _keras_problems(model: Any) -> list[str]:
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    problems = []
    for shape in shapes:
        if any(d is None for d in shape[1:]):
            problems.append(
                f"input shape {list(shape)} is dynamic; build the model with a fixed (H, W, C) input for the Edge TPU"
            )
        if shape[0] not in (None, 1):
            problems.append(f"input batch is {shape[0]}; the Edge TPU runs batch 1")
    return problems


def _keras_param_bytes(model: Any) -> int:
    """Kernels at 1 byte per weight, biases at 4 (int32); BatchNorm and other vectors fold into them."""
    # Biases by identity, from the layers that own them (nested models included), not by variable name.
    biases = {id(layer.bias) for layer in model.submodules if getattr(layer, "bias", None) is not None}
    total = 0
    for weight in model.weights:
        shape = [int(d) for d in weight.shape]
        size = 1
        for d in shape:
            size *= d
        if len(shape) >= 2:
            total += size
        elif id(weight) in biases:
            total += 4 * size
    return total


# ----------------------------------------------------------------------------------- format
def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _after(n: int, what: str) -> str:
    if n == 0:
        return "nothing follows it"
    return f"the {what[:-1]} after it runs on the CPU too" if n == 1 else f"the {n} {what} after it run on the CPU too"


# What the fused TFLite ops are in a Keras model's terms (the converter builds them from several layers).
OP_TITLES = {"HARD_SWISH": "hard-swish x * relu6(x + 3) / 6"}


def _label(op: OpCheck) -> str:
    """How a report names an op: its type (and what it is, for fused activations), then where it came from."""
    title = f" [{OP_TITLES[op.op]}]" if op.op in OP_TITLES else ""
    where = f"layer {op.layer}" if op.layer else op.name
    return f"{op.op}{title} ({where})"


def format_check(report: CheckReport) -> str:
    """Human-readable report: verdict, per-op table of what does not map and why, memory."""
    what = "layers" if report.kind == "keras" else "ops"
    lines = [
        f"Edge TPU check of {report.source} ({report.kind}, Edge TPU runtime {report.runtime})",
        f"  {report.mapped} of {report.counted} {what} run on the Edge TPU, {report.on_cpu} on the CPU",
    ]
    if report.first_fallback is not None:
        first = report.ops[report.first_fallback]
        lines.append(
            f"  first CPU fallback: #{first.index} {_label(first)}; "
            + _after(report.after_fallback, what)
            + " (the compiler maps one Edge TPU subgraph)"
        )
    elif report.fully_mapped:
        lines.append(f"  verdict: 100% mapped: every {what[:-1]} runs on the Edge TPU")
    for problem in report.problems:
        lines.append(f"  problem: {problem}")
    groups: dict[tuple[Any, ...], list[OpCheck]] = {}
    for op in report.ops:
        if op.supported is not True or op.advice:
            groups.setdefault((op.op, op.supported, *op.reasons, op.advice), []).append(op)
    for same in groups.values():
        op = same[0]
        mark = "ok " if op.supported else "?  " if op.supported is None else "CPU"
        lines.append(f"  {mark} #{op.index:<3d} {_label(op)}")
        lines.extend(f"        why: {text}" for text in op.reasons)
        if op.suggestion:
            lines.append(f"        fix: {op.suggestion}")
        if op.advice:
            lines.append(f"        tip: {op.advice}")
        if op.boundary:
            lines.append(f"        note: {op.note or IO_NOTE}")
        if len(same) > 1:
            more = ", ".join(f"#{o.index}" for o in same[1:9]) + (", ..." if len(same) > 9 else "")
            lines.append(f"        same for {len(same) - 1} more: {more}")
    cautions = dict.fromkeys(text for op in report.ops if op.on_edgetpu for text in op.cautions)
    lines.extend(f"  caution: {text}" for text in cautions)
    verdict = "fits" if report.fits_sram else "does NOT fit; the rest is streamed from host memory each inference"
    lines.append(
        f"  parameters at int8: {_mib(report.param_bytes)} against ~8 MB of on-chip SRAM: {verdict} "
        f"(Coral: {COMPILER_DOC_URL})"
    )
    lines.append(f"  rules: {DOC_URL}")
    return "\n".join(lines)
