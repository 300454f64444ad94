"""int8 that XNNPACK runs whole: the CPU int8 format keeps in float the few ops XNNPACK runs only in float.

XNNPACK (the CPU delegate of every LiteRT build, Pi included) runs convolutions, depthwise, dense, adds
and muls in int8, but HARD_SWISH, GELU, LayerNorm's pieces (SQUARED_DIFFERENCE, RSQRT, SUB), SOFTMAX and
AVERAGE_POOL_2D only in float. Each int8 op it leaves out runs on the plain kernels and cuts the
delegate's graph in two, so a fully int8 MobileNet v3 ran 2.3-4.4x slower than its float32 model and
ConvNeXt-Atto 2.4x (``benchmarks/results/int8_every_classifier.md``). Here those ops stay float between
a DEQUANTIZE and a QUANTIZE, which XNNPACK runs, so the whole graph is one delegate partition.

Mechanism: TensorFlow's own quantizer with a node denylist, the route of its QuantizationDebugger
(``tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=...)``). The debugger itself cannot be
used as is: it quantizes with float32 I/O, and our models take uint8 pixels.

Only the ops XNNPACK leaves out stay float, not the cheap ops between them: floating whole LayerNorms
(one DEQUANTIZE in, one QUANTIZE out) made ConvNeXt-Atto slower, 14.3 against 12.6 ms (measured).

The Edge TPU format and ``--all-int8`` keep every op int8 (accelerators and NPUs take nothing else).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.quiet import native_stderr_silenced
from edgecnn.runtime.interpreter import TFLiteModel

# Ops at the model's edges: the uint8 <-> int8 (de)quantization of I/O and the custom detection tail.
EDGE_OPS = frozenset({"QUANTIZE", "DEQUANTIZE", "CUSTOM", "TFLite_Detection_PostProcess"})
ROUNDS = 3  # keeping a node float can change what XNNPACK accepts next to it; measured: one round suffices


@dataclass(frozen=True)
class FloatOp:
    op: str
    tensor: str  # its output tensor's name, as the quantizer's denylist names nodes


def xnnpack_left_out(blob: bytes) -> list[FloatOp]:
    """The int8 ops XNNPACK leaves to the plain kernels (edges aside), by output tensor name."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "int8.tflite"
        path.write_bytes(blob)
        model = TFLiteModel(path, threads=1)
    names = {d["index"]: d["name"] for d in model.interpreter.get_tensor_details()}
    ops = {op["index"]: op for op in model.interpreter._get_ops_details()}  # the public API lists no ops
    return [
        FloatOp(ops[i]["op_name"], names[int(ops[i]["outputs"][0])])
        for i in model.undelegated_op_indices()
        if ops[i]["op_name"] not in EDGE_OPS and len(ops[i]["outputs"])
    ]


def quantize_for_xnnpack(
    calibrated: bytes, input_type: Any, output_type: Any, per_tensor: bool, keep_float: Sequence[str] = ()
) -> bytes:
    """Quantize a calibrated model to int8, keeping float the ops XNNPACK would leave out in int8 (the
    conversion report lists them from the written file: :func:`float_ops`), and the nodes (op output
    tensor names) in ``keep_float``: the layers ``--float-layers`` names (:mod:`edgecnn.insight.quant_debug`)."""
    kept: set[str] = set(keep_float)
    blob = _quantize(calibrated, input_type, output_type, per_tensor, sorted(kept))
    for _ in range(ROUNDS):
        left = {f.tensor for f in xnnpack_left_out(blob)} - kept  # some ops the quantizer keeps int8 regardless
        if not left:
            break
        kept |= left
        blob = _quantize(calibrated, input_type, output_type, per_tensor, sorted(kept))
    return blob


def _quantize(calibrated: bytes, input_type: Any, output_type: Any, per_tensor: bool, nodes: list[str]) -> bytes:
    # TensorFlow's quantizer entry point, the one TFLiteConverter and QuantizationDebugger call; the only
    # API that takes a node denylist together with uint8/int8 I/O types.
    from tensorflow.lite.python import convert as tflite_convert  # lazy: private module, TensorFlow only

    try:
        with native_stderr_silenced():  # it prints its settings on every call
            return tflite_convert.mlir_quantize(
                calibrated,
                disable_per_channel=per_tensor,
                fully_quantize=False,  # as TFLiteConverter: I/O get the requested types via QUANTIZE ops
                input_data_type=input_type,
                output_data_type=output_type,
                denylisted_nodes=nodes or None,
            )
    except Exception as exc:  # the MLIR quantizer raises RuntimeError / ConverterError with long logs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EdgecnnError(f"int8 quantization failed: {first}") from exc


def float_ops(model: TFLiteModel) -> dict[str, int]:
    """The ops of a quantized model that compute in float (the (de)quantize edges aside)."""
    dtypes = {d["index"]: d["dtype"] for d in model.interpreter.get_tensor_details()}
    counts: Counter[str] = Counter()
    for op in model.interpreter._get_ops_details():  # the public API lists no ops
        outputs = [int(t) for t in op["outputs"]]
        if op["op_name"] not in EDGE_OPS and outputs and dtypes.get(outputs[0]) == np.float32:
            counts[op["op_name"]] += 1
    return dict(counts)
