"""A light reader of a .tflite flatbuffer: operators in execution order, tensors, op versions.

What the Edge TPU check needs and nothing more, built on :func:`edgecnn.runtime.validate.read_model`
(the bounds-checked reader the runtime validates models with: no TensorFlow, no interpreter; a damaged
file is the one-line corrupt-model error, never a traceback). Field slots follow
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

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import F32, I32, U8, FlatbufferError, _tflite_bytes, corrupt_model
from edgecnn.runtime.validate import CUSTOM, TENSOR_TYPES, ModelFile, OpCode, OperatorRecord, TensorRecord, read_model

# ActivationFunctionType enum of schema.fbs.
ACTIVATIONS: tuple[str, ...] = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")

# Builtin options decoded per op: (field, slot index in the options table, scalar flags, default).
_I32, _U8, _BOOL, _F32 = I32, U8, struct.Struct("<?"), F32
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
def read_graph(source: str | os.PathLike | bytes, name: str = "the converted model") -> TFLiteGraph:
    """Parse a .tflite file (path) or its bytes (called ``name`` in errors) into a :class:`TFLiteGraph`."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise EdgecnnError("not a valid .tflite model (no TFL3 identifier); convert one with: edgecnn convert")
    else:
        data, name = _tflite_bytes(source), str(source)
    model = read_model(data, name)
    try:
        return _graph(model)
    except FlatbufferError as exc:
        raise corrupt_model(name, str(exc)) from None


def _graph(model: ModelFile) -> TFLiteGraph:
    graph = model.subgraphs[0]
    return TFLiteGraph(
        operators=[_graph_operator(op, model.opcode(op)) for op in graph.operators],
        tensors=[_graph_tensor(t, model) for t in graph.tensors],
        inputs=graph.inputs,
        outputs=graph.outputs,
        subgraphs=len(model.subgraphs),
        size=len(model.data),
    )


def _graph_tensor(record: TensorRecord, model: ModelFile) -> Tensor:
    start, size = model.buffers[record.buffer]
    return Tensor(
        index=record.index,
        name=record.name,
        type=record.type_name,
        shape=record.shape,
        shape_signature=record.signature or None,
        quantization=_quantization(record),
        data=model.data[start : start + size] if record.buffer > 0 else b"",
    )


def _quantization(record: TensorRecord) -> Quantization | None:
    arrays = record.quantization_arrays()
    if arrays is None:
        return None
    scales, zero_points, dimension = arrays
    return Quantization(tuple(scales.tolist()), tuple(zero_points.tolist()), dimension)


def _graph_operator(record: OperatorRecord, code: OpCode) -> Operator:
    name = code.name
    options: dict[str, Any] = {}
    fields = OPTION_FIELDS.get(name, ())
    opts = record.options() if fields else None
    for key, slot, kind, default in fields:
        options[key] = opts.scalar(slot, kind, default) if opts is not None else default
    if "fused_activation" in options:
        activation = options["fused_activation"]
        options["fused_activation"] = ACTIVATIONS[activation] if activation < len(ACTIVATIONS) else str(activation)
    return Operator(
        index=record.index,
        name=name,
        version=code.version,
        inputs=record.inputs,
        outputs=record.outputs,
        options=options,
        custom=code.code == CUSTOM,
    )
