"""``edgecnn convert``: Keras model -> .tflite with embedded metadata, written atomically, and a report.

The graph is traced at batch 1 with a static input shape (what the Edge TPU compiler and most
edge runtimes want). After conversion the .tflite is run on the validation images beside the
Keras model, so the report states what quantization cost in accuracy.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.convert.calibration import calibration_images, representative_dataset
from edgecnn.convert.formats import get_format
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import check_output_path, write_bytes
from edgecnn.metadata import ModelInfo, embed_tflite_info
from edgecnn.quiet import native_stderr_silenced


@dataclass
class ConvertOptions:
    format: str = "int8"
    io: str | None = None  # default: the format's first allowed I/O type
    calib: str | None = None  # None: the run's validation images
    calib_samples: int = 200
    data: str | None = None  # evaluation data; None: the run's own dataset
    evaluate: bool = True
    task: str | None = None  # --task: optional, must agree with the model's record


@dataclass
class ConvertReport:
    output: str
    format: str
    bytes: int
    keras_bytes: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    ops: dict[str, int]
    calibration: str | None = None
    accuracy: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_output(model_path: Path, fmt_suffix: str) -> Path:
    stem = model_path.stem if model_path.name != "model.keras" else "model"
    return model_path.with_name(stem + fmt_suffix)


def trace_batch1(model: Any) -> Any:
    """A concrete function with a static (1, H, W, C) float input."""
    from edgecnn.keras_env import tf

    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32, name="pixels")
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def variables_only(model: Any) -> Any:
    """A trackable holding just the model's variables, for the converter's SavedModel step: the .tflite
    gets the same signature and weights, without the converter tracing every layer's call functions
    (SSDLite MobileNet v2 0.35: 4 s instead of 25-35 s; measured)."""
    from edgecnn.keras_env import tf

    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return holder


def to_tflite(model: Any, fmt_name: str, io: str, calib_images: np.ndarray | None, per_tensor: bool = False) -> bytes:
    """Convert at batch 1. ``per_tensor`` quantizes each kernel with one scale instead of one per output
    channel: a clustered kernel then keeps exactly its N centroids as N int8 codes file-wide, which
    compresses better (LeNet-5, 16 clusters: gzip 44 -> 39 KB, measured)."""
    from edgecnn.keras_env import tf

    fmt, io = get_format(fmt_name, io)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([trace_batch1(model)], variables_only(model))
    calib = representative_dataset(calib_images) if fmt.needs_calibration else None
    fmt.configure(converter, io, calib)
    # The converter exposes per-tensor quantization only through this attribute (no public flag).
    converter._experimental_disable_per_channel = per_tensor
    return run_converter(converter, fmt_name)


def run_converter(converter: Any, fmt_name: str) -> bytes:
    """``converter.convert()`` with its native log silenced and its failure as one line."""
    try:
        with native_stderr_silenced():
            return converter.convert()
    except Exception as exc:  # the MLIR converter raises ConverterError / RuntimeError with long logs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EdgecnnError(f"TFLite conversion to {fmt_name} failed: {first}") from exc


def validation_data(info: ModelInfo | None, data: str | None) -> Any | None:
    """The validation split the model was trained against (or of ``data``), at the model's input size."""
    from edgecnn.tasks import get_task

    if info is None or not (data or info.data.get("spec")):
        return None
    split = get_task(info.task).load(
        data or info.data["spec"],
        info.input_size[0],
        info.channels,
        info.data.get("seed", 0),
        info.data.get("val_fraction", 0.2),
    )
    return split.val


def convert(model_path: str | os.PathLike, output: str | os.PathLike | None, options: ConvertOptions) -> ConvertReport:
    from edgecnn.runtime.interpreter import TFLiteModel
    from edgecnn.tasks import get_task
    from edgecnn.tasks.base import check_task
    from edgecnn.training.keras_io import check_keras_path, load_keras

    model_path = check_keras_path(model_path)
    fmt, io = get_format(options.format, options.io)
    out = check_output_path(output or default_output(model_path, fmt.suffix), "output")
    if options.calib_samples < 1:
        raise EdgecnnError(f"--calib-samples must be 1 or more, got {options.calib_samples}")
    model, info = load_keras(model_path)
    info = info or _info_from_model(model)
    task = get_task(info.task)
    check_task(options.task, task.name, str(model_path))
    val = validation_data(info, options.data)
    calib_images, calib_source = None, None
    if fmt.needs_calibration:
        calib_images, calib_source = calibration_images(
            options.calib, info, val.x if val is not None else None, options.calib_samples
        )

    tflite_info = dataclasses.replace(info, quantization=fmt.name, extra={**info.extra, "io": io})
    blob = embed_tflite_info(task.to_tflite(model, info, fmt.name, io, calib_images), tflite_info)
    write_bytes(out, blob)

    runner = TFLiteModel(out)
    report = ConvertReport(
        output=str(out),
        format=fmt.name,
        bytes=len(blob),
        keras_bytes=model_path.stat().st_size,
        inputs=[_tensor_summary(runner.input)],
        outputs=[_tensor_summary(d) for d in runner.outputs],
        ops=TFLiteModel(out, delegate="none").op_counts(),  # before delegation rewrites the graph
        calibration=calib_source,
    )
    if options.evaluate and val is not None:
        k = task.evaluate_keras(model, info, val)
        t = task.evaluate_tflite(runner, val)
        report.accuracy = {
            "images": int(len(val)),
            "metric": task.metric,
            "metric_title": task.metric_title,
            "keras": k[task.metric],
            "tflite": t[task.metric],
            "delta_points": round(100 * (t[task.metric] - k[task.metric]), 2),
            **task.agreement(k, t),
        }
    return report


def _info_from_model(model: Any) -> ModelInfo:
    """A record for a Keras model edgecnn did not train: shapes from the model, labels as indices."""
    _, h, w, c = model.input_shape
    n = int(model.output_shape[-1])
    if h is None or w is None:
        raise EdgecnnError("the model has a dynamic input size; rebuild it with a fixed (H, W, C) input")
    return ModelInfo(
        labels=[str(i) for i in range(n)],
        input_size=[int(h), int(w)],
        channels=int(c),
        pixel_format="gray" if c == 1 else "rgb",
        arch=model.name,
        normalization="unknown",
    )


def _tensor_summary(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def format_report(report: ConvertReport) -> str:
    lines = [
        f"wrote {report.output} ({report.format}, {report.bytes / 1024:.1f} KiB; Keras file "
        f"{report.keras_bytes / 1024:.1f} KiB)"
    ]
    for kind, tensors in (("input", report.inputs), ("output", report.outputs)):
        for t in tensors:
            quant = f" scale={t['scale']:.6g} zero_point={t['zero_point']}" if t["scale"] else ""
            lines.append(f"  {kind:6s} {t['name']}: {t['dtype']} {t['shape']}{quant}")
    total = sum(report.ops.values())
    lines.append(f"  ops    {total}: " + ", ".join(f"{k} x{v}" for k, v in sorted(report.ops.items())))
    if report.calibration:
        lines.append(f"  calibration: {report.calibration}")
    a = report.accuracy
    if a:
        agreement = "".join(f", {k.replace('_', ' ')} {100 * v:.1f}%" for k, v in a.items() if k.endswith("agreement"))
        lines.append(
            f"  {a['metric_title']} on {a['images']} validation images: keras {100 * a['keras']:.2f}%  "
            f"tflite {100 * a['tflite']:.2f}%  ({a['delta_points']:+.2f} points{agreement})"
        )
    return "\n".join(lines)
