"""Check a .tflite before an interpreter loads it: a model LiteRT can crash on becomes a one-line error.

LiteRT's flatbuffer verifier checks that the file is a well-formed flatbuffer, not that its contents agree
with each other; a model whose operator reads the wrong tensor or -1, whose constant is shorter than its
shape, whose quantization scale is 0 or whose input is float16 passes it and then kills the process with a
segfault while loading (XNNPACK's graph analysis), at ``allocate_tensors`` or at the first ``set_tensor``.
This module reads the whole file with the bounds-checked :class:`~edgecnn.core.metadata.FlatTable` (the
``flatbuffers``-free reader the Edge TPU check's :mod:`edgecnn.edgetpu.tflite_graph` builds on too; no tensor
data is copied) and turns each such model into ``corrupt .tflite model: PATH (what); convert it again``:

* :func:`read_model`: every offset inside the file; every operator tensor index, subgraph input/output,
  opcode index, buffer index and signature index in range (-1 only as an operator input);
* :func:`check_operators`: -1 (an optional input left out) only where the op has optional inputs, and at
  least the op's required number of inputs;
* :func:`check_dataflow`: no subgraph input is a constant; every tensor an operator reads is a constant,
  a subgraph input, a variable or written by an earlier operator; no operator writes a constant, a subgraph
  input or a tensor another one writes; every subgraph output is written or constant;
* :func:`check_tensors`: a UTF-8 name, a known type, no negative dimension (-1 only in ``shape_signature``,
  which agrees with ``shape``), at most :func:`element_limit` elements and under 2 GiB, constants exactly
  elements x item size bytes, quantization with finite positive scales, as many zero points in the type's
  range, one scale per tensor or per channel of an existing dimension;
* :func:`check_elementwise`: QUANTIZE, DEQUANTIZE and CAST keep their input's shape;
* :func:`check_runtime`: what :class:`~edgecnn.runtime.interpreter.TFLiteModel` feeds and reads: one
  (1, height, width, channels) input of uint8, int8 or float32, and numeric outputs;
* :func:`check_record`, after loading: the edgecnn record agrees with the allocated tensors.

Cost (``benchmarks/fuzz_models.py`` measures it, ``benchmarks/results/fuzz_models.md``): 1.2 ms for
MobileNetV2 224 float32 (13.3 MiB, 137 tensors) of an 11.8 ms load, 2.7 ms for its int8 version (whose
per-channel quantization is read too) of an 8.0 ms load, on a busy 2-core machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from edgecnn.core.metadata import (
    I8,
    I32,
    MODEL_BUFFERS,
    U8,
    U32,
    FlatbufferError,
    FlatTable,
    ModelInfo,
    buffer_span,
    corrupt_model,
)

# BuiltinOperator enum of schema.fbs, by code (0..209 as of TFLite 2.21).
BUILTIN_OPS: tuple[str, ...] = (
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE",
    "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D",
    "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU",
    "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH",
    "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD",
    "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB",
    "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP",
    "TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM",
    "ARG_MAX", "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT", "SLICE", "SIN",
    "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT",
    "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT",
    "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE", "FILL",
    "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS",
    "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS", "WHERE", "RANK", "ELU",
    "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF", "WHILE",
    "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM",
    "BATCH_MATMUL", "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D", "CONV_3D",
    "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "REDUCE_ALL",
    "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "BROADCAST_ARGS",
    "RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM", "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE",
    "RELU_0_TO_1", "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "ATAN2",
    "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT", "STABLEHLO_LOGISTIC", "STABLEHLO_ADD",
    "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY", "STABLEHLO_MAXIMUM", "STABLEHLO_RESHAPE", "STABLEHLO_CLAMP",
    "STABLEHLO_CONCATENATE", "STABLEHLO_BROADCAST_IN_DIM", "STABLEHLO_CONVOLUTION", "STABLEHLO_SLICE",
    "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE", "STABLEHLO_ABS", "STABLEHLO_AND", "STABLEHLO_COSINE",
    "STABLEHLO_EXPONENTIAL", "STABLEHLO_FLOOR", "STABLEHLO_LOG", "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE",
    "STABLEHLO_OR", "STABLEHLO_POWER", "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT", "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE", "STABLEHLO_CONVERT",
    "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE", "STABLEHLO_PAD", "STABLEHLO_IOTA",
    "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW", "STABLEHLO_SORT", "STABLEHLO_WHILE", "STABLEHLO_GATHER",
    "STABLEHLO_TRANSPOSE", "DILATE", "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE",
    "STABLEHLO_SHIFT_LEFT", "STABLEHLO_CBRT", "STABLEHLO_CASE",
)  # fmt: skip

# TensorType enum of schema.fbs -> (name, numpy dtype of its stored values or None).
TENSOR_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("FLOAT32", "<f4"), 1: ("FLOAT16", "<f2"), 2: ("INT32", "<i4"), 3: ("UINT8", "u1"), 4: ("INT64", "<i8"),
    5: ("STRING", None), 6: ("BOOL", "?"), 7: ("INT16", "<i2"), 8: ("COMPLEX64", "<c8"), 9: ("INT8", "i1"),
    10: ("FLOAT64", "<f8"), 11: ("COMPLEX128", "<c16"), 12: ("UINT64", "<u8"), 13: ("RESOURCE", None),
    14: ("VARIANT", None), 15: ("UINT32", "<u4"), 16: ("UINT16", "<u2"), 17: ("INT4", None), 18: ("BFLOAT16", None),
    19: ("INT2", None), 20: ("UINT4", None), 21: ("FLOAT8_E4M3FN", None), 22: ("FLOAT8_E5M2", None),
}  # fmt: skip

MAX_TENSOR_BYTES = 2**31 - 1  # TFLite sizes tensors with int32 arithmetic in places
MIN_ELEMENT_LIMIT = 2**26  # any model may hold a 8192 x 8192 tensor ...
ELEMENTS_PER_FILE_BYTE = 1024  # ... and a larger one only when the file is not tiny in comparison
FEEDABLE_INPUTS = ("UINT8", "INT8", "FLOAT32")  # what TFLiteModel.set_input quantizes pixels to
UNREADABLE_OUTPUTS = ("STRING", "RESOURCE", "VARIANT")  # no numpy array to dequantize

# Bits per element of the packed types (the others take their numpy dtype's size).
PACKED_BITS = {"INT4": 4, "UINT4": 4, "INT2": 2}
# Inputs an op needs before any optional one (-1) may appear; every input of the ALL_INPUTS ops.
# Ops not listed need their first input; the others are left to the op's kernel.
REQUIRED_INPUTS: dict[str, int] = {
    **dict.fromkeys(("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"), 2),  # (input, filter[, bias])
    "TRANSPOSE_CONV": 3,  # (output shape, filter, input[, bias])
    **dict.fromkeys(
        (
            "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU", "BATCH_MATMUL",
            "PAD", "PADV2", "MIRROR_PAD", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "TRANSPOSE",
            "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SPLIT", "GATHER", "FLOOR_DIV", "FLOOR_MOD", "POW",
            "LESS", "GREATER", "EQUAL", "NOT_EQUAL", "LESS_EQUAL", "GREATER_EQUAL", "SPACE_TO_BATCH_ND",
            "BATCH_TO_SPACE_ND", "TILE", "EXPAND_DIMS", "BROADCAST_TO",
        ),
        2,
    ),
    **dict.fromkeys(("SLICE", "SPLIT_V", "SELECT", "SELECT_V2"), 3),
    "STRIDED_SLICE": 4,
}  # fmt: skip
ALL_INPUTS = ("CONCATENATION", "PACK", "ADD_N")
ELEMENTWISE = ("QUANTIZE", "DEQUANTIZE", "CAST")  # output shape == input shape
INTEGER_RANGES = {"UINT8": (0, 255), "INT8": (-128, 127), "INT16": (-32768, 32767), "UINT16": (0, 65535)}
CUSTOM = BUILTIN_OPS.index("CUSTOM")


class ModelProblem(ValueError):
    """One inconsistency in a model file; :func:`validate_tflite` names the file."""


def validate_tflite(data: bytes, path: str | os.PathLike) -> ModelFile:
    """Every rule of this module on a .tflite's bytes; raises the one-line corrupt-model error."""
    model = read_model(data, path)
    try:
        for rule in RULES:
            rule(model)
    except (ModelProblem, FlatbufferError) as exc:  # the rules read names and quantization lazily
        raise corrupt_model(path, str(exc)) from None
    return model


# --------------------------------------------------------------------------------- reading the file
# Field indices of schema.fbs tables (a field's vtable slot is 4 + 2 * index; Model's buffers: edgecnn.core.metadata).
_MODEL_OPCODES, _MODEL_SUBGRAPHS, _MODEL_SIGNATURES = 1, 2, 7
_CODE_DEPRECATED, _CODE_CUSTOM, _CODE_VERSION, _CODE_BUILTIN = 0, 1, 2, 3
_GRAPH_TENSORS, _GRAPH_INPUTS, _GRAPH_OUTPUTS, _GRAPH_OPERATORS = 0, 1, 2, 3
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_BUFFER, _TENSOR_NAME, _TENSOR_QUANT = 0, 1, 2, 3, 4
_TENSOR_VARIABLE, _TENSOR_SPARSITY, _TENSOR_SIGNATURE, _TENSOR_EXTERNAL = 5, 6, 7, 10
_QUANT_SCALE, _QUANT_ZERO_POINT, _QUANT_DIMENSION = 2, 3, 6
_OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS, _OP_OPTIONS = 0, 1, 2, 4
_SIGNATURE_INPUTS, _SIGNATURE_OUTPUTS, _SIGNATURE_SUBGRAPH, _TENSOR_MAP_INDEX = 0, 1, 4, 1


@dataclass(frozen=True)
class OpCode:
    code: int  # BuiltinOperator: max(deprecated_builtin_code, builtin_code)
    custom: str  # the custom code of a CUSTOM op
    version: int

    @property
    def name(self) -> str:
        if self.code == CUSTOM:
            return self.custom or "CUSTOM"
        return BUILTIN_OPS[self.code] if 0 <= self.code < len(BUILTIN_OPS) else f"BUILTIN_{self.code}"


@dataclass(slots=True, eq=False)
class TensorRecord:
    """A tensor as the file stores it, read without copying its data; its name and quantization are
    decoded only when asked for."""

    index: int
    type: int  # TensorType code
    type_name: str  # its name: INT8, FLOAT32, ... (TYPE_<code> for an unknown code)
    shape: tuple[int, ...]
    signature: tuple[int, ...] | None
    buffer: int
    variable: bool
    sparse: bool
    external: bool  # data in an external weights file
    table: FlatTable = field(repr=False)

    @property
    def name(self) -> str:
        return self.table.string(_TENSOR_NAME)

    def quantization_arrays(self) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(scales, zero points, quantized dimension) as arrays viewing the file: a model's per-channel
        scales are checked in numpy, not element by element."""
        quant = self.table.table(_TENSOR_QUANT)
        if quant is None:
            return None
        scales, zero_points = quant.array(_QUANT_SCALE, "<f4"), quant.array(_QUANT_ZERO_POINT, "<i8")
        return scales, zero_points, quant.scalar(_QUANT_DIMENSION, I32)

    def label(self) -> str:
        """'tensor 5 (name)' for messages; a damaged name does not hide the real problem."""
        try:
            name = self.name
        except FlatbufferError:
            name = ""
        return f"tensor {self.index} ({name[:60]})" if name else f"tensor {self.index}"


@dataclass(slots=True, eq=False)
class OperatorRecord:
    index: int
    opcode: int  # index into ModelFile.opcodes
    inputs: tuple[int, ...]  # -1 = optional input left out
    outputs: tuple[int, ...]
    table: FlatTable = field(repr=False)

    def options(self) -> FlatTable | None:
        """The builtin options table (its type depends on the op)."""
        return self.table.table(_OP_OPTIONS)


@dataclass(frozen=True)
class SubgraphRecord:
    tensors: list[TensorRecord]
    operators: list[OperatorRecord]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Signature:
    subgraph: int
    tensors: tuple[int, ...]  # of its inputs and outputs


@dataclass(frozen=True)
class ModelFile:
    """Every subgraph, opcode, buffer span and signature of a .tflite, with every index in range: an
    operator's tensors (-1 allowed for an input), a subgraph's inputs and outputs, opcode and buffer indices.
    Whatever is damaged below that is :func:`read_model`'s one-line corrupt-model error."""

    path: str
    data: bytes = field(repr=False)
    opcodes: list[OpCode]
    buffers: list[tuple[int, int]]  # (start, size) of each buffer's bytes in ``data``
    subgraphs: list[SubgraphRecord]
    signatures: list[Signature]

    def opcode(self, op: OperatorRecord) -> OpCode:
        return self.opcodes[op.opcode]

    def buffer_size(self, tensor: TensorRecord) -> int:
        return self.buffers[tensor.buffer][1]


def read_model(data: bytes, path: str | os.PathLike) -> ModelFile:
    """Read a .tflite's bytes into a :class:`ModelFile`; any damaged field or index out of range is
    ``corrupt .tflite model: PATH (what); convert it again``."""
    try:
        return _read_model(data, str(path))
    except FlatbufferError as exc:
        raise corrupt_model(path, str(exc)) from None


def _read_model(data: bytes, path: str) -> ModelFile:
    root = FlatTable.root(data)
    opcodes = [_opcode(t) for t in root.tables(_MODEL_OPCODES)]
    buffers = [buffer_span(t) for t in root.tables(MODEL_BUFFERS)]
    subgraphs = [_subgraph(i, t, len(opcodes), len(buffers)) for i, t in enumerate(root.tables(_MODEL_SUBGRAPHS))]
    if not subgraphs:
        raise FlatbufferError("it has no subgraph")
    signatures = [_signature(t, subgraphs) for t in root.tables(_MODEL_SIGNATURES)]
    return ModelFile(path, data, opcodes, buffers, subgraphs, signatures)


def _opcode(table: FlatTable) -> OpCode:
    code = max(table.scalar(_CODE_DEPRECATED, I8), table.scalar(_CODE_BUILTIN, I32))
    custom = table.string(_CODE_CUSTOM) if code == CUSTOM else ""
    return OpCode(code, custom, table.scalar(_CODE_VERSION, I32, 1))


def _count(n: int, noun: str) -> str:
    """'1 input', '2 inputs'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _owner(number: int) -> str:
    return f"subgraph {number}'s" if number else "the model's"


def _where(number: int) -> str:
    """'' for subgraph 0 (the model), ' of subgraph N' for the others."""
    return f" of subgraph {number}" if number else ""


def _in_range(what: str, index: int, count: int, optional: bool = False) -> int:
    if not (0 <= index < count or (optional and index == -1)):
        raise FlatbufferError(f"{what} is tensor {index}, but the subgraph has {count} tensors")
    return index


def _subgraph(number: int, table: FlatTable, opcodes: int, buffers: int) -> SubgraphRecord:
    tensors = [_tensor(i, t, buffers) for i, t in enumerate(table.tables(_GRAPH_TENSORS))]
    operators = [_operator(i, t, opcodes, len(tensors)) for i, t in enumerate(table.tables(_GRAPH_OPERATORS))]
    where = _owner(number)
    io = {
        side: tuple(_in_range(f"{where} {side[:-1]} {j}", t, len(tensors)) for j, t in enumerate(table.numbers(i, "i")))
        for side, i in (("inputs", _GRAPH_INPUTS), ("outputs", _GRAPH_OUTPUTS))
    }
    return SubgraphRecord(tensors, operators, io["inputs"], io["outputs"])


def _tensor(index: int, table: FlatTable, buffers: int) -> TensorRecord:
    buffer = table.scalar(_TENSOR_BUFFER, U32)
    if buffer >= buffers:
        raise FlatbufferError(f"tensor {index} uses buffer {buffer}, but the model has {buffers}")
    signature = table.numbers(_TENSOR_SIGNATURE, "i")
    code = table.scalar(_TENSOR_TYPE, I8)
    return TensorRecord(
        index=index,
        type=code,
        type_name=TENSOR_TYPES[code][0] if code in TENSOR_TYPES else f"TYPE_{code}",
        shape=table.numbers(_TENSOR_SHAPE, "i"),
        signature=signature if table.has(_TENSOR_SIGNATURE) else None,
        buffer=buffer,
        variable=bool(table.scalar(_TENSOR_VARIABLE, U8)),
        sparse=table.has(_TENSOR_SPARSITY),
        external=bool(table.scalar(_TENSOR_EXTERNAL, U32)),
        table=table,
    )


def _operator(index: int, table: FlatTable, opcodes: int, tensors: int) -> OperatorRecord:
    opcode = table.scalar(_OP_OPCODE, U32)
    if opcode >= opcodes:
        raise FlatbufferError(f"operator {index} uses opcode {opcode}, but the model has {opcodes}")
    inputs = table.numbers(_OP_INPUTS, "i")
    outputs = table.numbers(_OP_OUTPUTS, "i")
    for side, indices in (("input", inputs), ("output", outputs)):
        for j, t in enumerate(indices):
            _in_range(f"operator {index} {side} {j}", t, tensors, optional=side == "input")
    return OperatorRecord(index, opcode, inputs, outputs, table)


def _signature(table: FlatTable, subgraphs: list[SubgraphRecord]) -> Signature:
    number = table.scalar(_SIGNATURE_SUBGRAPH, U32)
    if number >= len(subgraphs):
        raise FlatbufferError(f"a signature names subgraph {number}, but the model has {len(subgraphs)}")
    count = len(subgraphs[number].tensors)
    indices = []
    for side in (_SIGNATURE_INPUTS, _SIGNATURE_OUTPUTS):
        for entry in table.tables(side):
            index = entry.scalar(_TENSOR_MAP_INDEX, U32)
            indices.append(_in_range("a signature's tensor", index, count))
    return Signature(number, tuple(indices))


# ------------------------------------------------------------------------------------------ rules
def _op_name(model: ModelFile, graph: SubgraphRecord, i: int) -> str:
    return f"operator {i} ({model.opcode(graph.operators[i]).name})"


def check_operators(model: ModelFile) -> None:
    """-1 only where an op's inputs are optional: XNNPACK's graph analysis indexes every input it expects."""
    for number, graph in enumerate(model.subgraphs):
        for op in graph.operators:
            name = model.opcode(op).name
            required = len(op.inputs) if name in ALL_INPUTS else REQUIRED_INPUTS.get(name, 1)
            if len(op.inputs) < required:
                raise ModelProblem(
                    f"{_op_name(model, graph, op.index)}{_where(number)} has {_count(len(op.inputs), 'input')}; "
                    f"it needs at least {required}"
                )
            for j in range(required):
                if op.inputs[j] == -1:
                    raise ModelProblem(
                        f"{_op_name(model, graph, op.index)}{_where(number)} input {j} is missing (-1), "
                        "but that input is required"
                    )


def is_constant(model: ModelFile, tensor: TensorRecord) -> bool:
    return tensor.external or (tensor.buffer > 0 and model.buffer_size(tensor) > 0)


def _elements(shape: Iterable[int]) -> int:
    return math.prod(shape)


def check_dataflow(model: ModelFile) -> None:
    """Operators read what exists and write fresh activations: a read of a never-written tensor fails in
    invoke ("lacks data"), a write into a constant writes into the read-only mapped file."""
    for number, graph in enumerate(model.subgraphs):
        inputs = set(graph.inputs)
        ready = inputs | {
            t.index for t in graph.tensors if t.variable or is_constant(model, t) or _elements(t.shape) == 0
        }
        for j, t in enumerate(graph.inputs):
            if is_constant(model, graph.tensors[t]):
                raise ModelProblem(f"{_owner(number)} input {j} is {graph.tensors[t].label()}, a constant")
        writer: dict[int, int] = {}
        for op in graph.operators:
            for t in op.inputs:
                if t != -1 and t not in ready:
                    tensor = graph.tensors[t]
                    raise ModelProblem(
                        f"{_op_name(model, graph, op.index)}{_where(number)} reads {tensor.label()} before "
                        "anything writes it"
                    )
            for t in op.outputs:
                tensor = graph.tensors[t]
                if t in writer:
                    raise ModelProblem(
                        f"{tensor.label()}{_where(number)} is written by operators {writer[t]} and {op.index}"
                    )
                if t in inputs or is_constant(model, tensor):
                    kind = ("an input of the model" if not number else "an input") if t in inputs else "a constant"
                    raise ModelProblem(
                        f"{_op_name(model, graph, op.index)}{_where(number)} writes {tensor.label()}, {kind}"
                    )
                writer[t] = op.index
                ready.add(t)
        for j, t in enumerate(graph.outputs):
            if t not in ready:
                raise ModelProblem(f"{_owner(number)} output {j} is {graph.tensors[t].label()}, which nothing writes")


def element_limit(model: ModelFile) -> int:
    """The most elements one tensor may hold: 2**26, or 1024 per byte of a larger file."""
    return max(MIN_ELEMENT_LIMIT, ELEMENTS_PER_FILE_BYTE * len(model.data))


def check_tensors(model: ModelFile) -> None:
    """Types, shapes, constant sizes and quantization of every tensor (see the module docstring)."""
    limit = element_limit(model)
    for number, graph in enumerate(model.subgraphs):
        for tensor in graph.tensors:
            problem = (
                _name_problem(tensor)
                or _type_problem(tensor)
                or _shape_problem(tensor, limit)
                or _data_problem(model, tensor)
                or _quantization_problem(tensor)
            )
            if problem:
                raise ModelProblem(f"{tensor.label()}{_where(number)} {problem}")


def _name_problem(tensor: TensorRecord) -> str | None:
    """A name that is not UTF-8 fails LiteRT's Python API (``get_tensor_details``) with a UnicodeDecodeError."""
    try:
        tensor.name  # noqa: B018 (decoding is the check)
    except FlatbufferError:
        return "has a name that is not UTF-8"
    return None


def _type_problem(tensor: TensorRecord) -> str | None:
    return None if tensor.type in TENSOR_TYPES else f"has unknown type {tensor.type}"


# Bytes per element by type name; the types whose size is not fixed (strings, resources, variants) are absent.
ITEMSIZE: dict[str, float] = {
    **{name: np.dtype(dtype).itemsize for name, dtype in TENSOR_TYPES.values() if dtype is not None},
    **{name: bits / 8 for name, bits in PACKED_BITS.items()},
    "BFLOAT16": 2,
    "FLOAT8_E4M3FN": 1,
    "FLOAT8_E5M2": 1,
}


def _shape_problem(tensor: TensorRecord, limit: int) -> str | None:
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        return f"has shape {shape}; a dimension cannot be negative"
    signature = tensor.signature
    if signature is not None and (
        len(signature) != len(shape) or any(s != d and s != -1 for s, d in zip(signature, shape, strict=False))
    ):
        return f"has shape {shape} but shape_signature {list(signature)}"
    elements = _elements(shape)
    size = ITEMSIZE.get(tensor.type_name, 1)
    if elements > limit or elements * size > MAX_TENSOR_BYTES:
        return f"has shape {shape}: {elements:,} elements, more than the {min(limit, MAX_TENSOR_BYTES):,} allowed"
    return None


def _data_problem(model: ModelFile, tensor: TensorRecord) -> str | None:
    if not is_constant(model, tensor) or tensor.external or tensor.sparse:
        return None
    itemsize = ITEMSIZE.get(tensor.type_name)
    if itemsize is None:
        return None
    elements = _elements(tensor.shape)
    needed = math.ceil(elements * itemsize)
    stored = model.buffer_size(tensor)
    if stored == needed or (tensor.type_name in PACKED_BITS and stored == elements):  # also unpacked int4
        return None
    return f"holds {stored} bytes, but its shape {list(tensor.shape)} of {tensor.type_name} needs {needed}"


def _quantization_problem(tensor: TensorRecord) -> str | None:
    if tensor.type_name not in INTEGER_RANGES and tensor.type_name not in ("INT32", "INT64"):
        return None
    arrays = tensor.quantization_arrays()
    if arrays is None or not arrays[0].size:
        return None
    scales, zero_points, dim = arrays
    if scales.size <= 16:  # per tensor: plain Python is several times faster than numpy calls on tiny arrays
        bad_scale = next((v for v in scales.tolist() if not (v > 0 and math.isfinite(v))), None)
        points = zero_points.tolist()
        low_point, high_point = (min(points), max(points)) if points else (0, 0)
    else:
        ok = (scales > 0) & np.isfinite(scales)  # NaN is not > 0
        bad_scale = None if ok.all() else float(scales[~ok][0])
        low_point, high_point = (int(zero_points.min()), int(zero_points.max())) if zero_points.size else (0, 0)
    if bad_scale is not None:
        return f"has quantization scale {bad_scale}; a scale must be a positive number"
    if zero_points.size != scales.size:
        return f"has {_count(scales.size, 'quantization scale')} but {_count(zero_points.size, 'zero point')}"
    if scales.size > 1 and not (0 <= dim < len(tensor.shape) and tensor.shape[dim] == scales.size):
        return f"has {scales.size} per-channel scales along dimension {dim} of its shape {list(tensor.shape)}"
    low, high = INTEGER_RANGES.get(tensor.type_name, (-(2**63), 2**63 - 1))
    if not low <= low_point <= high_point <= high:
        bad = low_point if low_point < low else high_point
        return f"has zero point {bad}, outside the {low}..{high} of {tensor.type_name}"
    return None


def check_elementwise(model: ModelFile) -> None:
    """QUANTIZE, DEQUANTIZE and CAST map each element: XNNPACK copies a constant input into the output's
    declared shape, so a larger declared output reads past the end of the constant."""
    for number, graph in enumerate(model.subgraphs):
        for op in graph.operators:
            if model.opcode(op).name in ELEMENTWISE and op.inputs and op.outputs:
                source, result = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
                if source.shape != result.shape:
                    raise ModelProblem(
                        f"{_op_name(model, graph, op.index)}{_where(number)} turns shape {list(source.shape)} "
                        f"into {list(result.shape)}"
                    )


def check_runtime(model: ModelFile) -> None:
    """What TFLiteModel feeds and reads: the first input one (1, H, W, C) image of uint8, int8 or float32
    (a float16 input crashes ``set_tensor``), and outputs numpy can hold."""
    graph = model.subgraphs[0]
    if not graph.inputs or not graph.outputs:
        raise ModelProblem(
            f"the model has {_count(len(graph.inputs), 'input')} and {_count(len(graph.outputs), 'output')}"
        )
    tensor = graph.tensors[graph.inputs[0]]
    if tensor.type_name not in FEEDABLE_INPUTS:
        raise ModelProblem(
            f"its input {tensor.label()} is {tensor.type_name}; edgecnn feeds uint8, int8 or float32 inputs"
        )
    if len(tensor.shape) != 4 or tensor.shape[0] != 1:
        raise ModelProblem(
            f"its input {tensor.label()} has shape {list(tensor.shape)}; edgecnn feeds one image "
            "(1, height, width, channels)"
        )
    for t in graph.outputs:
        output = graph.tensors[t]
        if output.type_name in UNREADABLE_OUTPUTS:
            raise ModelProblem(f"its output {output.label()} is {output.type_name}, not numbers")


RULES: tuple[Callable[[ModelFile], None], ...] = (
    check_operators,
    check_dataflow,
    check_tensors,
    check_elementwise,
    check_runtime,
)


# ---------------------------------------------------------------------------------- after loading
def check_record(info: ModelInfo | None, input_shape: Iterable[int], output_shapes: list[Iterable[int]]) -> str | None:
    """Where the model's edgecnn record contradicts the tensors the interpreter allocated (its input size and
    channels; a classifier's (1, classes) output, as many classes as labels), or None. The tasks size images
    and read outputs by the record: a contradiction would fail later, as a reshape or index error."""
    if info is None:
        return None
    shape = [int(d) for d in input_shape]
    if shape[1:] != [*info.input_size, info.channels]:
        height, width = info.input_size
        return f"its edgecnn metadata says {height}x{width}x{info.channels} images, but its input has shape {shape}"
    if info.task == "classify":
        output = [int(d) for d in output_shapes[0]]
        labels = len(info.labels)
        if len(output) != 2 or output[0] != 1 or output[1] < 1 or (labels and output[1] != labels):
            what = f"lists {labels} labels" if labels else "says it is a classifier"
            return f"its edgecnn metadata {what}, but its output 0 has shape {output}"
    return None
