"""``edgecnn quant-debug`` (and ``convert --int8 --debug``): which Keras layers int8 hurts, and what to do.

Per layer, named by its Keras layer (fused batch norm and activation listed with it):

- the local int8 error from TensorFlow's QuantizationDebugger: SQNR, RMSE / scale, cosine;
- the measured effect of keeping that layer and its output tensor in float (the layer and the layers that
  read what it writes): how much closer the output gets to the float model's (mean L1 of class
  probabilities on training images), which ranks the layers;
- how much wider its output's widest channel is than the median channel (int8 gives the tensor one scale);
- an action: keep it float (``--float-layers``), QAT (noisy activations), keep per-channel weights, or
  nothing.

Then, on the validation images: top-1 of the float model, of post-training int8 (per channel, as
``convert --int8`` writes it, and per tensor), of the top-ranked layers kept float, and of the user's
``--float-layers``, with the share of the int8 loss each recovers. Files: quant_debug.csv (one row per
layer) and quant_debug.json (everything); a short summary is printed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgecnn.convert.calibration import calibration_images
from edgecnn.convert.export import tflite_graph
from edgecnn.convert.formats import FORMATS, get_format
from edgecnn.convert.nodes import layer_names, nodes_for_layers
from edgecnn.convert.tflite import Calibrated, calibrate, quantize
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import check_output_dir, ensure_dir, write_text
from edgecnn.core.keras_env import keras
from edgecnn.core.keras_io import check_keras_path
from edgecnn.data.files import image_batches
from edgecnn.data.registry import builtins, split_for_model
from edgecnn.insight.layers import find_layer, is_conv
from edgecnn.insight.quant_debug import (
    ChannelRange,
    LayerError,
    Sensitivity,
    channel_ranges,
    local_errors,
    output_error,
    sensitivity,
    weight_sqnr,
)
from edgecnn.pipelines.options import QuantDebugOptions
from edgecnn.runtime.interpreter import TFLiteModel
from edgecnn.tasks import get_task
from edgecnn.trainer.load import load_keras

LOW_SQNR_DB = 20.0  # below this an op's int8 output is noisy beyond rounding (8 bits of rounding: ~40 dB)
HIGH_RMSE_SCALE = 1.0  # RMSE over scale; pure rounding gives 1/sqrt(12) = 0.29
PER_TENSOR_PENALTY_DB = 6.0  # per-tensor weights this much worse than per-channel: per-channel matters
DEBUGGER_IMAGES = 100  # the local-error statistics settle long before this many images
# Below this share of int8's output error removed by the top units kept float (and with less than half the
# top-1 loss won back), no few layers are to blame. Where one tensor holds the loss, the top units remove
# 86-100% of the error on 25 of the 26 planted sites losing over a point; on the 26th (keras.applications
# ResNet50, a 4-image loss) 14%, yet all 4 images came back, hence the top-1 condition
# (benchmarks/results/quant_debug_planted.md). MobileNet v1 0.125, whose loss is mostly the calibration
# draw: 27% (benchmarks/results/quant_debug.md).
SPREAD_SHARE = 0.25
# A tensor whose widest channel spans this many times the median channel's range leaves that channel under
# 255 / 16 = 16 int8 levels. The unplanted models of benchmarks/results/quant_debug_planted.md reach
# 1.8-2.6x.
OUTLIER_RATIO = 16.0
RANGE_IMAGES = 32  # images the channel ranges are measured on


@dataclass
class LayerRow:
    rank: int
    layer: str
    fused: list[str]
    op: str
    gain: float  # output error (mean L1) removed by keeping this layer and its readers (float_layers) float
    error_kept_float: float
    sqnr_db: float | None
    rmse_scale: float | None
    cosine: float | None
    weight_sqnr_per_channel_db: float | None
    weight_sqnr_per_tensor_db: float | None
    action: str
    float_layers: list[str] = field(default_factory=list)  # what --float-layers keeps float for this row
    channel_range_ratio: float | None = None  # widest channel's range over the median channel's, float model
    widest_channel: int | None = None


@dataclass
class Variant:
    """One int8 variant measured on the validation images."""

    name: str
    float_layers: list[str]
    top1: float
    recovered: float | None  # share of the int8 loss won back (1.0: float's top-1); None without a loss


@dataclass
class QuantDebugReport:
    model: str
    calibration: str
    ranked_on: int  # training images
    measured_on: int  # validation images
    float_top1: float
    int8_error: float  # mean L1 of the all-int8 output against the float model's, on the ranking images
    top_error_removed: float | None = None  # share of int8_error gone with the suggested layers float together
    variants: list[Variant] = field(default_factory=list)
    layers: list[LayerRow] = field(default_factory=list)
    csv: str = ""
    json: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_debuggable(fmt_name: str, onnx: bool = False) -> None:
    """``convert --debug`` reports on the CPU int8 .tflite; say so before converting anything else."""
    fmt = FORMATS.get(fmt_name)
    if onnx or fmt is None or not fmt.float_fallback:
        what = "--onnx" if onnx else f"--{fmt_name}"
        raise EdgecnnError(f"--debug reports per-layer int8 error of the --int8 .tflite; it does not apply to {what}")


def default_out(path: Path) -> Path:
    return path.with_name(f"{path.stem}_quant_debug")


VAL_BATCH = 256  # validation images decoded at a time (a streamed image folder is never held whole)


@contextmanager
def _loaded(blob: bytes) -> Iterator[TFLiteModel]:
    """``blob`` as an interpreter (it reads from a file, kept until the block ends)."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "model.tflite"
        file.write_bytes(blob)
        yield TFLiteModel(file, threads=os.cpu_count())


def _tflite_probs(blob: bytes, images: np.ndarray) -> np.ndarray:
    with _loaded(blob) as runner:
        return runner.predict(images)


def _val_top1(model: Any, blobs: Mapping[str, bytes], val: Any) -> tuple[float, dict[str, float]]:
    """Top-1 of the Keras model and of each .tflite in ``blobs`` on ``val``, in one pass over its images a
    batch at a time (each batch decoded once for every model; memory holds a batch, not the set)."""
    correct = dict.fromkeys(["keras", *blobs], 0)
    labels = np.asarray(val.y)
    with ExitStack() as stack, tqdm(total=len(val), desc="validation top-1", unit="img", disable=None) as bar:
        runners = {name: stack.enter_context(_loaded(blob)) for name, blob in blobs.items()}
        start = 0
        for images in image_batches(val.x, VAL_BATCH):
            y = labels[start : start + len(images)]
            probs = model.predict(images.astype(np.float32), batch_size=64, verbose=0)
            correct["keras"] += int((probs.argmax(-1) == y).sum())
            for name, runner in runners.items():
                correct[name] += int((runner.predict(images).argmax(-1) == y).sum())
            start += len(images)
            bar.update(len(images))
    top1 = {name: count / max(len(labels), 1) for name, count in correct.items()}  # unrounded: shares of the loss
    return top1.pop("keras"), top1


def _recovered(top1: float, int8: float, float_top1: float) -> float | None:
    loss = float_top1 - int8
    return round((top1 - int8) / loss, 3) if loss > 0 else None


def _weight_sqnr(model: Any, layer_name: str) -> tuple[float | None, float | None]:
    try:
        layer = find_layer(model, layer_name)
    except EdgecnnError:
        return None, None
    if is_conv(layer) and getattr(layer, "depthwise_kernel", None) is not None:
        kernel = layer.depthwise_kernel.numpy()
        kernel = kernel.reshape(kernel.shape[0], kernel.shape[1], -1)  # one channel per input x multiplier
    elif is_conv(layer) or isinstance(layer, keras.layers.Dense):
        kernel = layer.kernel.numpy()
    else:
        return None, None
    per_channel, per_tensor = weight_sqnr(kernel)
    return round(per_channel, 2), round(per_tensor, 2)


def _outlier(row: LayerRow) -> str:
    if row.channel_range_ratio is None or row.channel_range_ratio < OUTLIER_RATIO:
        return ""
    return (
        f"; its channel {row.widest_channel} spans {row.channel_range_ratio:.0f}x the median channel's range, "
        "which sets the tensor's one int8 scale"
    )


# What a suggested layer's action says, by the report's verdict: int8 loses top-1 and a few units are to
# blame; int8 loses none (a float layer costs speed for nothing); or the error is spread (see _advice).
VERDICTS = ("keep", "optional", "spread")


def _action(row: LayerRow, suggested: set[str], verdict: str) -> str:
    if row.layer in suggested:
        keep = f"--float-layers {' '.join(row.float_layers or [row.layer])}{_outlier(row)}"
        return {
            "keep": f"keep float: {keep}",
            "optional": f"optional (int8 loses no top-1): {keep}",
            "spread": f"QAT: edgecnn optimize MODEL --qat (int8's error is spread; keeping {row.layer} float is not "
            "enough)",
        }[verdict]
    if _outlier(row):
        return f"int8 is coarse here{_outlier(row)}"
    if (row.sqnr_db is not None and row.sqnr_db < LOW_SQNR_DB) or (row.rmse_scale or 0) > HIGH_RMSE_SCALE:
        return "QAT: edgecnn optimize MODEL --qat (its activations are noisy in int8 beyond rounding)"
    pc, pt = row.weight_sqnr_per_channel_db, row.weight_sqnr_per_tensor_db
    if pc is not None and pt is not None and pc - pt > PER_TENSOR_PENALTY_DB:
        return f"keep per-channel weights (per-tensor loses {pc - pt:.0f} dB here; --cluster exports per-tensor)"
    return "int8 is fine"


RECALIBRATED = "int8 calibrated on"


def _calibrated_on_training_images(
    options: QuantDebugOptions, task_name: str, graph: Any, model: Any, split: Any, fmt: Any, io_type: str
) -> tuple[str, bytes] | None:
    """The same int8 model calibrated on training images instead (None when those calibrated it already): a
    loss that moves with the calibration draw is fixed by ``--calib``, not by a layer kept float. On the
    benchmark's MobileNet v1 0.125, int8 calibrated on validation images lost 2.23 points, on training
    images 0.56."""
    if options.calib in builtins(task_name):  # a built-in set's calibration images are its training split
        return None
    rng = np.random.default_rng(options.seed + 1)  # not the ranking images' draw
    count = min(options.calib_samples, len(split.train))
    images = split.train.x[np.sort(rng.choice(len(split.train), count, replace=False))]
    print(f"calibrating again on {count} training images")
    calibrated = calibrate(graph, fmt, io_type, images, layer_names(model))
    return f"{RECALIBRATED} {count} training images", quantize(calibrated)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _rows(
    ranked: list[Sensitivity],
    local: list[LayerError],
    model: Any,
    calibrated: Calibrated,
    ranges: Mapping[str, ChannelRange],
) -> list[LayerRow]:
    by_layer: dict[str, LayerError] = {}
    for err in local:
        if err.layers:
            by_layer.setdefault(err.layers[0], err)
    fused = {node.layer: list(node.layers) for node in calibrated.nodes if node.layers}
    output = {node.layer: node.tensor for node in calibrated.nodes if node.layers}  # a layer's last op writes it
    rows = []
    for rank, s in enumerate(ranked, 1):
        err = by_layer.get(s.layer)
        pc, pt = _weight_sqnr(model, s.layer)
        spread = ranges.get(output[s.layer])
        row = LayerRow(
            rank=rank,
            layer=s.layer,
            fused=fused.get(s.layer, [s.layer]),
            op=s.op,
            gain=round(s.gain, 5),
            error_kept_float=round(s.error_kept_float, 5),
            sqnr_db=_round(err.sqnr_db, 2) if err else None,
            rmse_scale=_round(err.rmse_scale, 3) if err else None,
            cosine=_round(err.cosine, 5) if err else None,
            weight_sqnr_per_channel_db=pc,
            weight_sqnr_per_tensor_db=pt,
            action="",
            float_layers=list(s.float_layers),
            channel_range_ratio=round(spread.ratio, 1) if spread else None,
            widest_channel=spread.channel if spread else None,
        )
        rows.append(row)
    return rows


def quant_debug(model_path: str | os.PathLike, options: QuantDebugOptions = QuantDebugOptions()) -> QuantDebugReport:
    """Rank the model's layers by what int8 costs in each, and measure the fixes; writes CSV and JSON."""
    path = check_keras_path(model_path)
    out = check_output_dir(options.out or default_out(path), "quant-debug output")
    model, info = load_keras(path)
    needs = "quant-debug measures accuracy on it"
    info, split = split_for_model(model, info, options.data, options.seed, path, needs)  # the run's split.json
    task = get_task(info.task)
    if task.name != "classify":
        raise EdgecnnError(f"quant-debug ranks layers by their effect on class probabilities; {path} is {task.name}")
    calib_images, calib_source = calibration_images(options.calib, info, split.val.x, options.calib_samples)
    fmt, io_type = get_format("int8", None)
    print(f"calibrating {path.name} ({calib_source})")
    # The export path's stages (edgecnn.convert.export): the --int8 graph, traced once and calibrated here and
    # again below, each variant quantized from it as ``convert --int8 [--float-layers]`` would write it.
    graph = tflite_graph(model, task, info, fmt)
    calibrated = calibrate(graph, fmt, io_type, calib_images, layer_names(model))
    chosen_nodes = nodes_for_layers(calibrated.nodes, options.float_layers)  # a bad name fails before the work

    rng = np.random.default_rng(options.seed)
    pick = np.sort(rng.choice(len(split.train), min(options.samples, len(split.train)), replace=False))
    ranking_images = split.train.x[pick]  # --samples images decoded (a numpy array), not the whole split
    reference = model.predict(ranking_images.astype(np.float32), batch_size=64, verbose=0)
    int8_blob = quantize(calibrated)
    baseline = output_error(_tflite_probs(int8_blob, ranking_images), reference)
    print("per-layer error (TensorFlow QuantizationDebugger)")
    local = local_errors(calibrated, ranking_images[:DEBUGGER_IMAGES], False, model)
    ranges = channel_ranges(calibrated, ranking_images[:RANGE_IMAGES])
    outliers = {tensor for tensor, spread in ranges.items() if spread.ratio >= OUTLIER_RATIO}
    with tqdm(
        total=len({n.layer for n in calibrated.nodes if n.layers}), desc="one layer float", unit="layer", disable=None
    ) as bar:
        ranked = sensitivity(
            calibrated, lambda blob: _tflite_probs(blob, ranking_images), reference, baseline, bar.update, outliers
        )
    rows = _rows(ranked, local, model, calibrated, ranges)

    val = split.val
    suggested = list(dict.fromkeys(name for r in rows[: options.top] if r.gain > 0 for name in r.float_layers))
    kept = {"int8 (per-channel)": [], "int8 per-tensor": []}
    blobs = {"int8 (per-channel)": int8_blob, "int8 per-tensor": quantize(calibrated, per_tensor=True)}
    top_removed = None
    if suggested:
        name = f"top {len(suggested)} float"
        kept[name] = suggested
        blobs[name] = quantize(calibrated, nodes_for_layers(calibrated.nodes, suggested))
        top_error = output_error(_tflite_probs(blobs[name], ranking_images), reference)
        top_removed = round((baseline - top_error) / baseline, 3) if baseline > 0 else None
    if options.float_layers:
        kept["--float-layers"] = list(options.float_layers)
        blobs["--float-layers"] = quantize(calibrated, chosen_nodes)
    recalibrated = _calibrated_on_training_images(options, task.name, graph, model, split, fmt, io_type)
    if recalibrated is not None:
        name, blob = recalibrated
        kept[name], blobs[name] = [], blob
    float_exact, top1 = _val_top1(model, blobs, val)
    variants = [Variant(name, kept[name], round(top1[name], 4), None) for name in blobs]
    for v in variants[1:]:  # from the exact top-1s: 4 of 8 images lost is half, not 0.498
        v.recovered = _recovered(top1[v.name], top1["int8 (per-channel)"], float_exact)
    float_top1, int8_top1 = round(float_exact, 4), variants[0].top1

    report = QuantDebugReport(
        model=str(path),
        calibration=calib_source,
        ranked_on=len(ranking_images),
        measured_on=len(val),
        float_top1=float_top1,
        int8_error=round(baseline, 5),
        top_error_removed=top_removed,
        variants=variants,
        layers=rows,
    )
    if float_top1 <= int8_top1:
        report.notes.append("post-training int8 loses no top-1 here; the ranking still shows where its error is")
    notes, verdict = _advice(report, int8_top1, info.data["spec"], path)
    report.notes += notes
    chosen = {r.layer for r in rows[: options.top] if r.gain > 0}
    for row in rows:
        row.action = _action(row, chosen, verdict)
    ensure_dir(out, "quant-debug output")
    report.csv = str(write_text(out / "quant_debug.csv", _csv(rows)))
    report.json = str(out / "quant_debug.json")
    write_text(report.json, json.dumps(report.as_dict(), indent=1))
    return report


def _advice(report: QuantDebugReport, int8_top1: float, spec: str, path: Path) -> tuple[list[str], str]:
    """What to do when no few layers are to blame (calibrate on other images, or QAT), and the verdict the
    suggested layers' actions follow (one of :data:`VERDICTS`)."""
    notes = []
    fix = next((v for v in report.variants if v.name.startswith(RECALIBRATED)), None)
    if fix is not None and (fix.recovered or 0) >= 0.5:
        notes.append(
            f"the loss depends on which images calibrate: {fix.name} gives {100 * fix.top1:.2f}% "
            f"({100 * fix.recovered:.0f}% of the loss back): convert with --calib {spec}"
        )
    removed = report.top_error_removed
    top = next((v for v in report.variants if v.name.startswith("top ")), None)
    won_back = top is not None and (top.recovered or 0) >= 0.5  # measured top-1 outranks the proxy
    if report.float_top1 > int8_top1 and (removed is None or removed < SPREAD_SHARE) and not won_back:
        how = (
            "no layer kept float with its readers lowers it"
            if removed is None or top is None
            else f"the top {len(top.float_layers)} kept float together remove {100 * removed:.0f}% of it"
        )
        notes.append(
            f"int8's error is spread over the layers ({how}): no few layers are to blame, so --float-layers "
            f"will not win the loss back; try quantization-aware training, which trains with int8's rounding in the "
            f"loop: edgecnn optimize {path} --qat"
        )
        return notes, "spread"
    return notes, "keep" if report.float_top1 > int8_top1 else "optional"


def _csv(rows: list[LayerRow]) -> str:
    buf = io.StringIO()
    names = [f.name for f in dataclasses.fields(LayerRow)]
    writer = csv.DictWriter(buf, names)
    writer.writeheader()
    for row in rows:
        record = dataclasses.asdict(row)
        record["fused"] = " ".join(row.fused)
        record["float_layers"] = " ".join(row.float_layers)
        writer.writerow(record)
    return buf.getvalue()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_quant_debug(report: QuantDebugReport, show: int = 8) -> str:
    v = {x.name: x for x in report.variants}
    int8 = v["int8 (per-channel)"]
    lines = [
        f"quant-debug {report.model} (ranked on {report.ranked_on} training images, top-1 on "
        f"{report.measured_on} validation images; calibration: {report.calibration})",
        f"  top-1: float {100 * report.float_top1:.2f}%  int8 {100 * int8.top1:.2f}% "
        f"({100 * (int8.top1 - report.float_top1):+.2f} points)",
        f"  worst layers (output error of all-int8: {report.int8_error:.4f}; gain = error removed by keeping "
        "the layer and the layers reading its output in float):",
        f"    {'rank':>4} {'layer':24s} {'op':18s} {'gain':>8} {'SQNR dB':>8} {'RMSE/sc':>8} {'cosine':>8}  action",
    ]
    for r in report.layers[:show]:
        lines.append(
            f"    {r.rank:>4} {r.layer[:24]:24s} {r.op[:18]:18s} {r.gain:>8.4f} {_fmt(r.sqnr_db, '>8.1f')} "
            f"{_fmt(r.rmse_scale, '>8.2f')} {_fmt(r.cosine, '>8.4f')}  {r.action}"
        )
    for x in report.variants[1:]:
        kept = f" ({' '.join(x.float_layers)})" if x.float_layers else ""
        back = f", recovers {100 * x.recovered:.0f}% of the int8 loss" if x.recovered is not None else ""
        lines.append(f"  {x.name}{kept}: top-1 {100 * x.top1:.2f}%{back}")
    if report.top_error_removed is not None:
        lines.append(
            f"  the suggested layers float together remove {100 * report.top_error_removed:.0f}% of int8's output "
            f"error on the {report.ranked_on} ranking images"
        )
    lines += [f"  note: {n}" for n in report.notes]
    lines.append(f"  files: {report.csv}, {report.json}")
    return "\n".join(lines)
