"""float .onnx -> int8 .onnx: ONNX Runtime's static quantization in QDQ form, calibrated on real images.

The calibration images follow the .tflite path's rules (:func:`edgecnn.convert.calibration.calibration_images`:
the run's validation split by default, ``--calib digits|DIR``, random noise only when asked). Weights are
int8 per output channel (symmetric, 7-bit range: see ``reduce_range``), activations uint8 per tensor from
min/max calibration, the layout ONNX
Runtime's x86 and Arm int8 kernels (U8S8) and TensorRT's explicit quantization read. QDQ keeps the model's
float32 input and outputs: QuantizeLinear/DequantizeLinear pairs around each int8 op, which ONNX Runtime
fuses into QLinearConv, QLinearMatMul and friends when it loads the model. The detection decoding
(:func:`edgecnn.convert.onnx.tail_nodes`) stays float, as the .tflite keeps its postprocess op float.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.convert.onnx import INPUT_NAME, INSTALL
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.quiet import native_stderr_silenced


def _quantization() -> Any:
    try:
        from onnxruntime import quantization  # the optional extra, only for --onnx --int8
    except ImportError as exc:
        raise EdgecnnError(f"--onnx --int8 needs ONNX Runtime ({exc}); install it with: {INSTALL}") from None
    return quantization


def calibration_reader(images: np.ndarray, quantization: Any) -> Any:
    """A ``CalibrationDataReader`` feeding each (H, W, C) uint8 image as one (1, H, W, C) float32 batch."""

    class Reader(quantization.CalibrationDataReader):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self._batches: Iterator[dict[str, np.ndarray]] = iter(
                {INPUT_NAME: image[None].astype(np.float32)} for image in images
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    return Reader()


@dataclass(frozen=True)
class QuantizedOnnx:
    model: bytes  # the int8 QDQ .onnx
    float_ops: dict[str, int]  # nodes left float on purpose, by op type (the report's "float" line)


def quantize_qdq(
    float_model: bytes, calib_images: np.ndarray, keep_float: Callable[[Any], list[str]] | None = None
) -> QuantizedOnnx:
    """The int8 QDQ model of a float .onnx (bytes), calibrated on (N, H, W, C) uint8 ``calib_images``.
    ``keep_float`` picks, from the pre-processed model (whose node names the quantizer sees), the nodes to
    leave in float (the detection decoding)."""
    quantization = _quantization()
    import onnx  # the optional extra, as above

    if calib_images is None or len(calib_images) == 0:
        raise EdgecnnError("--onnx --int8 needs calibration images; pass --calib DIR (real images of the scenes)")
    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-") as tmp:
        source, prepared, target = Path(tmp, "float.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        source.write_bytes(float_model)
        try:
            with native_stderr_silenced():
                # shape inference and graph cleanup first, as ONNX Runtime's quantization guide asks
                quantization.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
                graph = onnx.load(str(prepared)).graph
                kept = set(keep_float(graph) if keep_float else [])
                quantization.quantize_static(
                    str(prepared),
                    str(target),
                    calibration_reader(calib_images, quantization),
                    quant_format=quantization.QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=quantization.QuantType.QUInt8,
                    weight_type=quantization.QuantType.QInt8,
                    # 7-bit weights: on x86 CPUs without VNNI (AVX2, AVX-512F) ONNX Runtime's U8S8 kernels add
                    # pairs of u8*s8 products in 16 bits, which saturate with full-range weights (LeNet-5 on
                    # digits, AMD EPYC AVX2: 93.59% against Keras 98.05%; with reduce_range 98.05%, measured).
                    # The file is converted once and run on any CPU, so it is always written this way.
                    reduce_range=True,
                    calibrate_method=quantization.CalibrationMethod.MinMax,
                    nodes_to_exclude=sorted(kept),
                )
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise EdgecnnError(f"ONNX int8 quantization failed: {first}") from exc
        float_ops = Counter(node.op_type for node in graph.node if node.name in kept)
        return QuantizedOnnx(target.read_bytes(), dict(sorted(float_ops.items())))
