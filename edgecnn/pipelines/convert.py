"""``edgecnn convert``: Keras model -> .tflite or .onnx with embedded metadata, written atomically, and a report.

The bytes come from the one export path, :func:`edgecnn.convert.export.export` (the task supplies its graph,
the format row the converter settings); this module adds the data (calibration and evaluation images), the
file, the row's step after writing (the Edge TPU check and compile) and the report. After conversion the
file is run on the validation images beside the Keras model, so the report states what quantization cost.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.convert.calibration import calibration_images
from edgecnn.convert.export import Exported, check_export, export
from edgecnn.convert.formats import Format
from edgecnn.convert.onnx import op_counts
from edgecnn.convert.xnnpack import float_ops
from edgecnn.core.config import SPLIT_WORDS
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import check_output_path, write_bytes
from edgecnn.core.keras_io import check_keras_path
from edgecnn.core.metadata import ModelInfo
from edgecnn.data.registry import model_data
from edgecnn.edgetpu.compiler import format_convert_report
from edgecnn.pipelines.options import ConvertOptions
from edgecnn.runtime.interpreter import TFLiteModel
from edgecnn.runtime.open import open_model
from edgecnn.tasks import check_task, get_task
from edgecnn.trainer.load import load_keras


@dataclass
class ConvertReport:
    output: str
    format: str
    bytes: int
    keras_bytes: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    ops: dict[str, int]
    float_ops: dict[str, int] = field(default_factory=dict)  # ops of an int8 model kept float for XNNPACK
    float_layers: list[str] = field(default_factory=list)  # --float-layers: Keras layers kept float too
    calibration: str | None = None
    accuracy: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] | None = None  # the format's step on the written file (Edge TPU check/compile)
    after_text: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("after_text")
        return out


def default_output(model_path: Path, fmt_suffix: str) -> Path:
    stem = model_path.stem if model_path.name != "model.keras" else "model"
    return model_path.with_name(stem + fmt_suffix)


def convert(model_path: str | os.PathLike, output: str | os.PathLike | None, options: ConvertOptions) -> ConvertReport:
    model_path = check_keras_path(model_path)
    fmt, io = check_export(options.format, options.io, options.onnx, options.all_int8, options.float_layers)
    out = check_output_path(output or default_output(model_path, fmt.suffix), "output", (fmt.extension,), (model_path,))
    if options.calib_samples < 1:
        raise EdgecnnError(f"--calib-samples must be 1 or more, got {options.calib_samples}")
    model, info = load_keras(model_path)
    info = info or info_from_model(model)
    task = get_task(info.task)
    check_task(options.task, task.name, str(model_path))
    has_data = options.data or info.data.get("spec")
    val, part = model_data(info, options.data, run=model_path.parent) if has_data else (None, None)
    if val is not None and list(val.labels) != list(info.labels):  # before any file is written
        raise EdgecnnError(
            f"--data {options.data} has classes {list(val.labels)[:5]} but the model was trained on "
            f"{list(info.labels)[:5]}; give data with the model's classes"
        )
    calib_images, calib_source = None, None
    if fmt.needs_calibration:
        calib_images, calib_source = calibration_images(
            options.calib, info, val.x if val is not None else None, options.calib_samples
        )
    exported = export(
        model,
        task,
        info,
        fmt,
        io,
        calib_images,
        float_layers=options.float_layers,
        all_int8=options.all_int8,
        opset=options.opset,
    )
    write_bytes(out, exported.blob)
    after = fmt.after(out) if fmt.after else None
    facts = FACTS[fmt.backend](out, exported)
    runner = open_model(out)
    report = ConvertReport(
        output=str(out),
        format=facts.format,
        bytes=len(exported.blob),
        keras_bytes=model_path.stat().st_size,
        inputs=[_tensor_summary(runner.input)],
        outputs=[_tensor_summary(d) for d in runner.outputs],
        ops=facts.ops,
        float_ops=facts.float_ops,
        float_layers=list(options.float_layers),
        calibration=calib_source,
        after=after.as_dict() if after is not None else None,
        after_text=format_convert_report(after) if after is not None else None,
    )
    if options.evaluate and val is not None:
        report.accuracy = _accuracy(task, model, info, runner, val, part, facts.runtime)
    return report


@dataclass(frozen=True)
class Facts:
    """What the report says of a written file, by backend: its format's name, ops, float ops, runtime key."""

    format: str
    ops: dict[str, int]
    float_ops: dict[str, int]
    runtime: str


def _tflite_facts(path: Path, exported: Exported) -> Facts:
    plain = TFLiteModel(path, delegate="none")  # the graph as written, before delegation rewrites it
    fmt: Format = exported.request.format
    kept = float_ops(plain) if fmt.needs_calibration else {}
    return Facts(fmt.name, plain.op_counts(), kept, "tflite")


def _onnx_facts(path: Path, exported: Exported) -> Facts:
    fmt = exported.request.format
    return Facts(f"onnx {fmt.record_quantization}", op_counts(exported.blob), exported.kept_float, "onnx")


FACTS = {"tflite": _tflite_facts, "onnx": _onnx_facts}  # Format.backend -> what the report reads of the file


def _accuracy(task: Any, model: Any, info: ModelInfo, runner: Any, val: Any, part: str | None, runtime: str) -> dict:
    """The deployed model's metric beside Keras's on the same images (``runtime`` names its key)."""
    k, d = task.evaluate_keras(model, info, val), task.evaluate_tflite(runner, val)
    return {
        "images": int(len(val)),
        "split": part,
        "metric": task.metric,
        "metric_title": task.metric_title,
        "keras": k[task.metric],
        runtime: d[task.metric],
        "delta_points": round(100 * (d[task.metric] - k[task.metric]), 2),
        **task.agreement(k, d),
    }


def info_from_model(model: Any) -> ModelInfo:
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
    if report.float_ops:
        kept = ", ".join(f"{k} x{v}" for k, v in sorted(report.float_ops.items()))
        why = "XNNPACK runs them only in float; --all-int8 quantizes them too"
        if report.float_layers:
            why = f"--float-layers {' '.join(report.float_layers)}, and any ops XNNPACK runs only in float"
        why = "the detection decoding, float as in the .tflite" if report.output.endswith(".onnx") else why
        lines.append(f"  float  {kept} ({why})")
    if report.calibration:
        lines.append(f"  calibration: {report.calibration}")
    a = report.accuracy
    deployed = "onnx" if "onnx" in a else "tflite"
    if a:
        agreement = "".join(f", {k.replace('_', ' ')} {100 * v:.1f}%" for k, v in a.items() if k.endswith("agreement"))
        lines.append(
            f"  {a['metric_title']} on {a['images']} {SPLIT_WORDS[a['split']]}: keras {100 * a['keras']:.2f}%  "
            f"{deployed} {100 * a[deployed]:.2f}%  ({a['delta_points']:+.2f} points{agreement})"
        )
    if report.after_text:
        lines.append(report.after_text)
    return "\n".join(lines)
