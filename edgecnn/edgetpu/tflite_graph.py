"""A light reader of a .tflite flatbuffer: operators in execution order, tensors, op versions.

What the Edge TPU check needs and nothing more, read with the ``flatbuffers`` package alone (no
TensorFlow, no interpreter), as :mod:`edgecnn.metadata` does. Field slots follow
``tensorflow/compiler/mlir/lite/schema/schema.fbs``: a field's vtable offset is ``4 + 2 * index``.

* ``OperatorCode``: the builtin code is ``max(deprecated_builtin_code, builtin_code)``: models
  written before code 127 only fill the int8 ``deprecated_builtin_code``, newer ones fill both.
* ``Tensor``: type, shape, ``shape_signature`` (-1 marks a dynamic dimension), the constant data of
  its buffer, and its quantization (scales, zero points, quantized dimension).
* ``Operator``: inputs, outputs (-1 = optional input left out) and, for the ops whose limits the
  Edge TPU check looks at, the decoded builtin options (:data:`OPTION_FIELDS`).

Operators of subgraph 0 are stored in execution order (the TFLite interpreter runs them in that
order), which is the order the Edge TPU compiler walks when it looks for the first unsupported op.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import flatbuffers
import numpy as np
from flatbuffers import number_types as nt
from flatbuffers import table as fb_table

from edgecnn.errors import EdgecnnError
from edgecnn.metadata import _buffer_bytes, _tflite_bytes  # the same validation and buffer rules

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
}  # fmt: skip

# ActivationFunctionType enum of schema.fbs.
ACTIVATIONS: tuple[str, ...] = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")

# Builtin options decoded per op: (field, slot index in the options table, scalar flags, default).
_I32, _U8, _BOOL, _F32 = nt.Int32Flags, nt.Uint8Flags, nt.BoolFlags, nt.Float32Flags
_CONV = (("padding", 0, _U8, 0), ("stride_w", 1, _I32, 0), ("stride_h", 2, _I32, 0))
_POOL = (*_CONV, ("filter_width", 3, _I32, 0), ("filter_height", 4, _I32, 0), ("fused_activation", 5, _U8, 0))
_REDUCER = (("keep_dims", 0, _BOOL, False),)
OPTION_FIELDS: dict[str, tuple[tuple[str, int, Any, Any], ...]] = {
    "CONV_2D": (*_CONV, ("fused_activation", 3, _U8, 0), ("dilation_w", 4, _I32, 1), ("dilation_h", 5, _I32, 1)),
    "DEPTHWISE_CONV_2D": (
        *_CONV,
        ("depth_multiplier", 3, _I32, 0),
        ("fused_activation", 4, _U8, 0),
        ("dilation_w", 5, _I32, 1),
        ("dilation_h", 6, _I32, 1),
    ),
    "TRANSPOSE_CONV": (*_CONV, ("fused_activation", 3, _U8, 0)),
    "AVERAGE_POOL_2D": _POOL,
    "MAX_POOL_2D": _POOL,
    "CONCATENATION": (("axis", 0, _I32, 0), ("fused_activation", 1, _U8, 0)),
    "FULLY_CONNECTED": (("fused_activation", 0, _U8, 0), ("weights_format", 1, _U8, 0), ("keep_num_dims", 2, _BOOL, 0)),
    "ADD": (("fused_activation", 0, _U8, 0),),
    "SUB": (("fused_activation", 0, _U8, 0),),
    "MUL": (("fused_activation", 0, _U8, 0),),
    "MEAN": _REDUCER,
    "SUM": _REDUCER,
    "REDUCE_MAX": _REDUCER,
    "REDUCE_MIN": _REDUCER,
    "STRIDED_SLICE": (
        ("begin_mask", 0, _I32, 0),
        ("end_mask", 1, _I32, 0),
        ("ellipsis_mask", 2, _I32, 0),
        ("new_axis_mask", 3, _I32, 0),
        ("shrink_axis_mask", 4, _I32, 0),
    ),
    "PACK": (("values_count", 0, _I32, 0), ("axis", 1, _I32, 0)),
    "SPLIT": (("num_splits", 0, _I32, 0),),
    "RESIZE_BILINEAR": (("align_corners", 2, _BOOL, False), ("half_pixel_centers", 3, _BOOL, False)),
    "RESIZE_NEAREST_NEIGHBOR": (("align_corners", 0, _BOOL, False), ("half_pixel_centers", 1, _BOOL, False)),
    "SOFTMAX": (("beta", 0, _F32, 0.0),),
    "GELU": (("approximate", 0, _BOOL, False),),
}


def _slot(index: int) -> int:
    """vtable offset of the field with this index."""
    return 4 + 2 * index


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = scale * (q - zero_point), per tensor or per channel."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int = 0


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    type: str  # TensorType name: INT8, UINT8, FLOAT32, ...
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None  # -1 = dynamic; None when the model does not store one
    quantization: Quantization | None
    data: bytes = field(default=b"", repr=False)  # constant contents; empty for activations

    @property
    def is_constant(self) -> bool:
        return bool(self.data)

    @property
    def is_quantized(self) -> bool:
        return self.quantization is not None and bool(self.quantization.scale)

    @property
    def is_dynamic(self) -> bool:
        return self.shape_signature is not None and any(d < 0 for d in self.shape_signature)

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def values(self) -> np.ndarray | None:
        """The constant's values as an array of its shape; None for an activation or an unreadable type."""
        dtype = TENSOR_TYPES.get(_TYPE_CODES.get(self.type, -1), ("", None))[1]
        if not self.data or dtype is None:
            return None
        array = np.frombuffer(self.data, dtype=dtype)
        return array.reshape(self.shape) if array.size == self.elements else array


_TYPE_CODES = {name: code for code, (name, _) in TENSOR_TYPES.items()}


@dataclass(frozen=True)
class Operator:
    index: int  # position in execution order
    name: str  # builtin name (CONV_2D) or, for CUSTOM, the custom code
    version: int
    inputs: tuple[int, ...]  # tensor indices; -1 = optional input left out
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    custom: bool = False


@dataclass
class TFLiteGraph:
    """Subgraph 0 of a .tflite model (the one the interpreter and the Edge TPU compiler run)."""

    operators: list[Operator]
    tensors: list[Tensor]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraphs: int  # how many subgraphs the model has (control flow adds more)
    size: int  # bytes of the .tflite file

    def input_tensors(self, op: Operator) -> list[Tensor | None]:
        return [self.tensors[i] if i >= 0 else None for i in op.inputs]

    def output_tensors(self, op: Operator) -> list[Tensor]:
        return [self.tensors[i] for i in op.outputs]

    @cached_property
    def constant_bytes(self) -> int:
        """Bytes of all constant tensors (weights, biases, tables) as stored in the file."""
        return sum(len(t.data) for t in self.tensors)


# ------------------------------------------------------------------------------------- readers
def read_graph(source: str | os.PathLike | bytes) -> TFLiteGraph:
    """Parse a .tflite file (path) or its bytes into a :class:`TFLiteGraph`."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise EdgecnnError("not a valid .tflite model (no TFL3 identifier); convert one with: edgecnn convert")
    else:
        data = _tflite_bytes(source)
    buf = bytearray(data)
    try:
        return _read(buf, data)
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as exc:  # truncated or hand-edited
        raise EdgecnnError(f"cannot read the .tflite flatbuffer ({exc}); re-export it with edgecnn convert") from exc


def _read(buf: bytearray, data: bytes) -> TFLiteGraph:
    model = fb_table.Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    codes = [_op_code(t) for t in _tables(model, 1)]
    buffers = [_buffer_bytes(b, data) for b in _tables(model, 4)]
    subgraphs = _tables(model, 2)
    if not subgraphs:
        raise EdgecnnError("the .tflite model has no subgraph; re-export it with edgecnn convert")
    graph = subgraphs[0]
    tensors = [_tensor(i, t, buffers) for i, t in enumerate(_tables(graph, 0))]
    operators = [_operator(i, t, codes) for i, t in enumerate(_tables(graph, 3))]
    return TFLiteGraph(
        operators=operators,
        tensors=tensors,
        inputs=tuple(_ints(graph, 1)),
        outputs=tuple(_ints(graph, 2)),
        subgraphs=len(subgraphs),
        size=len(data),
    )


def _tables(table: fb_table.Table, index: int) -> list[fb_table.Table]:
    """The tables of a vector-of-tables field."""
    off = table.Offset(_slot(index))
    if not off:
        return []
    start = table.Vector(off)
    return [fb_table.Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(table.VectorLen(off))]


def _ints(table: fb_table.Table, index: int, flags: Any = nt.Int32Flags) -> list[Any]:
    """A vector-of-scalars field as a list."""
    off = table.Offset(_slot(index))
    if not off:
        return []
    start, size = table.Vector(off), flags.bytewidth
    return [table.Get(flags, start + size * i) for i in range(table.VectorLen(off))]


def _scalar(table: fb_table.Table, index: int, flags: Any, default: Any) -> Any:
    off = table.Offset(_slot(index))
    return table.Get(flags, off + table.Pos) if off else default


def _string(table: fb_table.Table, index: int) -> str:
    off = table.Offset(_slot(index))
    return table.String(off + table.Pos).decode() if off else ""


def _subtable(table: fb_table.Table, index: int) -> fb_table.Table | None:
    off = table.Offset(_slot(index))
    return fb_table.Table(table.Bytes, table.Indirect(off + table.Pos)) if off else None


def _op_code(table: fb_table.Table) -> tuple[str, int, bool]:
    """(name, version, custom) of an OperatorCode."""
    deprecated = _scalar(table, 0, nt.Int8Flags, 0)
    builtin = _scalar(table, 3, nt.Int32Flags, 0)
    code = max(deprecated, builtin)
    version = _scalar(table, 2, nt.Int32Flags, 1)
    if code == BUILTIN_OPS.index("CUSTOM"):
        return _string(table, 1) or "CUSTOM", version, True
    name = BUILTIN_OPS[code] if 0 <= code < len(BUILTIN_OPS) else f"BUILTIN_{code}"
    return name, version, False


def _tensor(index: int, table: fb_table.Table, buffers: list[bytes]) -> Tensor:
    type_code = _scalar(table, 1, nt.Int8Flags, 0)
    buffer = _scalar(table, 2, nt.Uint32Flags, 0)
    signature = _ints(table, 7)
    quant = _subtable(table, 4)
    quantization = None
    if quant is not None:
        quantization = Quantization(
            scale=tuple(_ints(quant, 2, nt.Float32Flags)),
            zero_point=tuple(_ints(quant, 3, nt.Int64Flags)),
            quantized_dimension=_scalar(quant, 6, nt.Int32Flags, 0),
        )
    return Tensor(
        index=index,
        name=_string(table, 3),
        type=TENSOR_TYPES.get(type_code, (f"TYPE_{type_code}", None))[0],
        shape=tuple(_ints(table, 0)),
        shape_signature=tuple(signature) if signature else None,
        quantization=quantization,
        data=buffers[buffer] if 0 < buffer < len(buffers) else b"",
    )


def _operator(index: int, table: fb_table.Table, codes: list[tuple[str, int, bool]]) -> Operator:
    name, version, custom = codes[_scalar(table, 0, nt.Uint32Flags, 0)]
    options: dict[str, Any] = {}
    fields = OPTION_FIELDS.get(name, ())
    opts = _subtable(table, 4) if fields else None
    for key, slot, flags, default in fields:
        options[key] = _scalar(opts, slot, flags, default) if opts is not None else default
    if "fused_activation" in options:
        code = options["fused_activation"]
        options["fused_activation"] = ACTIVATIONS[code] if code < len(ACTIVATIONS) else str(code)
    return Operator(
        index=index,
        name=name,
        version=version,
        inputs=tuple(_ints(table, 1)),
        outputs=tuple(_ints(table, 2)),
        options=options,
        custom=custom,
    )
