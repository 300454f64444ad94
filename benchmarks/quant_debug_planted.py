"""Does the quantization debugger find int8's loss where it does sit in a few tensors? A planted fault.

On the digits models trained here, post-training int8 loses little, and where it loses a point the loss is
spread over the layers (``benchmarks/quant_debug.py``): no few layers are to blame, and none were found.
This script makes a model whose loss does sit in one place, with the fault that cross-layer equalization
exists to fix (Nagel et al., Data-Free Quantization, 2019): one channel of one tensor far wider than the
others, so that the tensor's one int8 scale leaves the other channels a few levels.

The fault is planted without changing what the float model computes: channel c of a layer's output is
multiplied by ``factor`` (a convolution's or dense layer's kernel and bias for that channel, or a batch
norm's gamma and beta), and the weights of the next layer that read channel c are divided by it. ReLU and
pooling commute with a positive scale, so the Keras model's outputs stay equal (the largest difference is
recorded per site). The debugger is not told where the fault is.

Models: the ``training/`` recipes of LeNet-5 and ResNet-20, trained here with their settings, and a model
edgecnn did not train: keras.applications ResNet50 as a nested backbone behind in-graph rescaling, fit on
digits' training split with plain Keras and debugged with ``--data digits`` (no record, no run folder).
For each model, each site (a layer with a ReLU output, and the layer that reads it) and each factor:

1. plant the fault, save the model beside a copy of the run's ``split.json``;
2. ``edgecnn quant-debug MODEL --top 3``: is the tensor's writer ranked first;
3. ``edgecnn convert MODEL --int8 --float-layers ...`` with the top-ranked unit, and with the top 3 units:
   their top-1 on the whole validation split (n = 359) against float and plain int8.

Writes results/quant_debug_planted.md and .json.

    .venv/bin/python benchmarks/quant_debug_planted.py [--factors 100 300 1000] [--models lenet5 resnet20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from common import CACHE, ROOT
from quant_debug import _pct, recovered  # benchmarks/quant_debug.py: the natural-loss half of this study

from edgecnn.core.config import TrainConfig, to_yaml
from edgecnn.core.keras_env import keras
from edgecnn.core.keras_io import save_keras
from edgecnn.data import load_split
from edgecnn.insight.layers import find_layer
from edgecnn.pipelines.convert import ConvertOptions, convert
from edgecnn.pipelines.quant_debug import QuantDebugOptions, quant_debug
from edgecnn.pipelines.train import train
from edgecnn.trainer.load import load_keras

RESULTS = ROOT / "benchmarks" / "results"
RUNS = CACHE / "quant_debug_planted"
MIN_LOSS_POINTS = 1.0  # the issue's "post-training int8 loses more than 1 point"
TARGET_RECOVERED = 0.5
TOP = 3

FOREIGN = "keras_resnet50"
FOREIGN_EPOCHS = 30
FOREIGN_BN_MOMENTUM = 0.9  # keras.applications' 0.99 leaves the moving statistics unsettled after 45 steps an epoch
# model -> (its training recipe, or FOREIGN; the sites: the layer whose output channel is widened, the layer
# reading it; the factors, None: --factors). ResNet50's sites are 2 at one factor: its debugger run takes
# minutes on 2 cores.
MODELS: dict[str, tuple[str, list[tuple[str, str]], list[float] | None]] = {
    "lenet5": ("training/lenet5_digits.yaml", [("c1", "c3"), ("c5", "f6"), ("f6", "predictions")], None),
    "resnet20": (
        "training/resnet20_digits.yaml",
        [(f"conv{s}_block{b}_1_bn", f"conv{s}_block{b}_2_conv") for s in (2, 3, 4) for b in (1, 2, 3)],
        None,
    ),
    FOREIGN: (
        FOREIGN,
        [("conv2_block2_1_bn", "conv2_block2_2_conv"), ("conv4_block3_1_bn", "conv4_block3_2_conv")],
        [300.0],
    ),
}


def plant_outlier_channel(model: Any, writer: str, reader: str, factor: float, channel: int | None = None) -> int:
    """Widen channel ``channel`` of ``writer``'s output ``factor`` times and divide ``reader``'s weights from that
    channel by ``factor``; the model's function is unchanged when only ReLUs and pooling lie between them.
    ``writer``: a Conv2D or Dense (kernel and bias scaled) or a BatchNormalization (gamma and beta scaled);
    ``reader``: a Conv2D or Dense reading the channel on its kernel's input axis. The default channel is the
    writer's largest-weight one. Returns the channel."""
    out_layer, in_layer = find_layer(model, writer), find_layer(model, reader)  # nested backbones too
    weights = out_layer.get_weights()
    if out_layer.__class__.__name__ == "BatchNormalization":
        scaled = [0, 1]  # gamma, beta
        strength = np.abs(weights[0])
    else:
        scaled = [0, 1]  # kernel (last axis: output channels), bias
        strength = np.abs(weights[0]).reshape(-1, weights[0].shape[-1]).max(axis=0)
    c = int(strength.argmax()) if channel is None else channel
    for i in scaled:
        weights[i][..., c] *= factor
    out_layer.set_weights(weights)
    read = in_layer.get_weights()
    read[0][..., c, :] /= factor  # Conv2D (h, w, in, out), Dense (in, out): the input axis is -2
    in_layer.set_weights(read)
    return c


def foreign_resnet50() -> Path:
    """keras.applications ResNet50 (random init, gray 32x32 input) nested behind in-graph rescaling, with a
    softmax head, fit on digits' training split (seed 0, the split ``--data digits`` makes) with plain Keras:
    a model edgecnn did not train. Reused once saved."""
    path = RUNS / FOREIGN / "model.keras"
    if path.is_file():
        print(f"{FOREIGN}: reusing {path}", flush=True)
        return path
    print(f"{FOREIGN}: fitting keras.applications.ResNet50 on digits, {FOREIGN_EPOCHS} epochs ...", flush=True)
    split = load_split("digits", "classify", 32, None, 0, 0.2)
    keras.utils.set_random_seed(0)
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 1))
    for layer in backbone.layers:  # at 0.99, validation top-1 was 54% after 8 epochs (train 97%)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = FOREIGN_BN_MOMENTUM
    inputs = keras.Input((32, 32, 1), name="pixels")
    x = backbone(keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(x), name="foreign_resnet50")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    val = (np.asarray(split.val.x, np.float32), np.asarray(split.val.y))
    model.fit(
        np.asarray(split.train.x, np.float32),
        np.asarray(split.train.y),
        batch_size=32,
        epochs=FOREIGN_EPOCHS,
        validation_data=val,
        verbose=2,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def trained(name: str) -> Path:
    """The model trained with its recipe's settings (reused while they are unchanged)."""
    if MODELS[name][0] == FOREIGN:
        return foreign_resnet50()
    recipe = yaml.safe_load((ROOT / MODELS[name][0]).read_text())
    config = TrainConfig(**recipe, out=str(RUNS / name / "run"))
    wanted = to_yaml(config)
    run = Path(config.out)
    marker, model = run / "benchmark_config.yaml", run / "model.keras"
    if model.is_file() and marker.is_file() and marker.read_text() == wanted:
        print(f"{name}: reusing {model}", flush=True)
        return model
    print(f"{name}: training with {MODELS[name][0]} ...", flush=True)
    path = train(config, verbose=0, resume=False).model_path
    marker.write_text(wanted)
    return path


def planted(source: Path, writer: str, reader: str, factor: float, out: Path) -> dict[str, Any]:
    """The source model with the fault planted, saved as ``out/model.keras`` beside the run's split and labels."""
    model, info = load_keras(source)
    channel = plant_outlier_channel(model, writer, reader, factor)
    original, _ = load_keras(source)
    pixels = np.random.default_rng(0).integers(0, 256, (16, *model.input_shape[1:])).astype(np.float32)
    diff = float(np.abs(model.predict(pixels, verbose=0) - original.predict(pixels, verbose=0)).max())
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if info is None:  # a model edgecnn did not train: saved as it came, debugged with --data digits
        model.save(out / "model.keras")
    else:
        for name in ("split.json", "labels.txt"):
            shutil.copy(source.parent / name, out / name)
        save_keras(model, out / "model.keras", info)
    return {"channel": channel, "float_max_abs_diff": diff, "model": out / "model.keras"}


def converted(model: Path, float_layers: list[str], name: str, data: str | None) -> dict[str, Any]:
    out = model.with_name(name)
    options = ConvertOptions(format="int8", float_layers=tuple(float_layers), data=data)  # calibrated as the debugger
    report = convert(model, out, options)
    return {"float_layers": float_layers, "top1": report.accuracy["tflite"], "keras_top1": report.accuracy["keras"]}


def site(model_name: str, source: Path, writer: str, reader: str, factor: float) -> dict[str, Any]:
    """Plant, debug, and measure the fixes the debugger names at one site and factor."""
    folder = RUNS / model_name / f"{writer}_x{factor:g}"
    fault = planted(source, writer, reader, factor, folder)
    model = fault.pop("model")
    data = "digits" if MODELS[model_name][0] == FOREIGN else None
    report = quant_debug(model, QuantDebugOptions(top=TOP, data=data, out=str(folder / "quant_debug"))).as_dict()
    variants = {v["name"]: v for v in report["variants"]}
    float_top1, int8 = report["float_top1"], variants["int8 (per-channel)"]["top1"]
    rows = report["layers"]
    rank = next((r["rank"] for r in rows if writer in r["fused"]), None)  # the op that writes the planted tensor
    writer_row = next((r for r in rows if writer in r["fused"]), {})
    gaining = [r for r in rows[:TOP] if r["gain"] > 0]

    def layers(k: int) -> list[str]:
        return list(dict.fromkeys(name for r in gaining[:k] for name in r["float_layers"]))

    one = many = None
    if gaining and data is None:  # the files convert --float-layers writes, measured on the run's split
        one = converted(model, layers(1), "model_int8_top1.tflite", None)
        many = converted(model, layers(len(gaining)), f"model_int8_top{len(gaining)}.tflite", None)
        for fix in (one, many):
            fix["recovered"] = recovered(fix["top1"], int8, float_top1, report["measured_on"])
    elif gaining:  # no record: convert --data would measure all of digits; the debugger's variant is on its split
        variant = next(v for v in report["variants"] if v["name"].startswith("top "))
        many = {k: variant[k] for k in ("float_layers", "top1", "recovered")}
    fixes = {"top1": one, "topk": many}
    result = {
        "model": model_name,
        "writer": writer,
        "reader": reader,
        "factor": factor,
        **fault,
        "float_top1": float_top1,
        "int8_top1": int8,
        "loss_points": round(100 * (float_top1 - int8), 2),
        "images": report["measured_on"],
        "channel_range_ratio": writer_row.get("channel_range_ratio"),
        "channel_named": writer_row.get("widest_channel") == fault["channel"]
        and f"channel {fault['channel']} spans" in writer_row.get("action", ""),
        "writer_rank": rank,
        "top1_unit": rows[0]["float_layers"] if rows else [],
        "top1_action": rows[0]["action"] if rows else "",
        "fixes": fixes,
        "notes": report["notes"],
        "top_error_removed": report["top_error_removed"],
    }
    top = many or {}
    print(
        f"{model_name} {writer}->{reader} x{factor:g}: float {100 * float_top1:.2f}% int8 {100 * int8:.2f}%; "
        f"writer ranked {rank}; top unit {' '.join(result['top1_unit'])}; top {len(gaining)} float "
        f"{100 * top.get('top1', float('nan')):.2f}% (recovers {top.get('recovered')})",
        flush=True,
    )
    return result


def _top1(fix: dict[str, Any]) -> str:
    return "-" if "top1" not in fix else f"{100 * fix['top1']:.2f}%"


def write(rows: list[dict[str, Any]], command: str, seconds: float, natural: dict[str, float]) -> str:
    lines = [
        f"<!-- {time.strftime('%Y-%m-%d')}: {command} ({seconds / 60:.0f} min) -->",
        "",
        "# Quantization debugger on a planted fault: one channel far wider than the rest",
        "",
        "Written by `benchmarks/quant_debug_planted.py` (its docstring says how the fault is planted: the float "
        "model's function is unchanged, the Keras outputs' largest difference is in the table). Top-1 on the "
        f"whole validation split of digits (n = {rows[0]['images'] if rows else 0}; one image is "
        f"{100 / max(rows[0]['images'] if rows else 1, 1):.2f} points); int8 is `edgecnn convert --int8` (calibrated "
        "on the run's validation images); the fixes are `convert --int8 --float-layers` with the debugger's "
        f"top-ranked unit and its top {TOP}. For {FOREIGN} (no record, no run folder: `--data digits`) the top "
        "units are the debugger's own variant, on its split and calibration; `convert --data` would measure all "
        "of digits.",
        "",
        "Widest channel over the median channel in the unplanted models (every tensor, float model): "
        + ", ".join(f"{name} {ratio:.1f}x" for name, ratio in natural.items())
        + ".",
        "",
        "| model | planted: widened layer -> reader (channel, factor) | Keras max diff | channel range ratio | "
        "float | int8 | loss (points) | writer's rank | top-ranked unit (`--float-layers`) | top 1 float | "
        f"recovered | top {TOP} float | recovered |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        one, many = r["fixes"]["top1"] or {}, r["fixes"]["topk"] or {}
        ratio = "-" if r["channel_range_ratio"] is None else f"{r['channel_range_ratio']:.0f}x"
        lines.append(
            f"| {r['model']} | {r['writer']} -> {r['reader']} ({r['channel']}, x{r['factor']:g}) | "
            f"{r['float_max_abs_diff']:.1e} | {ratio} | {100 * r['float_top1']:.2f}% | {100 * r['int8_top1']:.2f}% | "
            f"{r['loss_points']:+.2f} | {r['writer_rank']} | {' '.join(r['top1_unit'])} | "
            f"{_top1(one)} | {_pct(one.get('recovered'))} | {_top1(many)} | {_pct(many.get('recovered'))} |"
        )
    lines += ["", "## Verdict", "", *verdict(rows), ""]
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    losing = [r for r in rows if r["loss_points"] > MIN_LOSS_POINTS]
    if not losing:
        return ["No planted site made int8 lose more than a point; nothing is claimed."]
    first = sum(r["writer_rank"] == 1 for r in losing)
    named = sum(r["channel_named"] for r in losing)

    many = [(r["fixes"]["topk"] or {}).get("recovered") or 0.0 for r in losing]
    one = [r["fixes"]["top1"]["recovered"] or 0.0 for r in losing if r["fixes"]["top1"]]
    met = sum(value >= TARGET_RECOVERED for value in many)
    return [
        f"{len(losing)} of {len(rows)} planted sites make post-training int8 lose more than {MIN_LOSS_POINTS:g} point "
        f"(from {min(r['loss_points'] for r in losing):.2f} to {max(r['loss_points'] for r in losing):.2f}).",
        f"On {first} of them the debugger ranks the layer that writes the widened tensor first; on {named} its "
        "action names the widened channel.",
        f"Keeping the top-ranked unit float recovers a median {100 * float(np.median(one)):.0f}% of the loss "
        f"(lowest {100 * min(one):.0f}%; the {len(one)} sites with a run folder, as written files); the top "
        f"{TOP} units, a median {100 * float(np.median(many)):.0f}% (lowest {100 * min(many):.0f}%; all sites).",
        f"Target (at least half of the loss back with the top-ranked few float): met on {met} of {len(losing)}.",
    ]


def natural_ratios(models: dict[str, Path]) -> dict[str, float]:
    """The widest channel-range ratio of any tensor in each unplanted model, as the debugger measures it."""
    result = {}
    for name, model in models.items():
        data = "digits" if MODELS[name][0] == FOREIGN else None
        options = QuantDebugOptions(top=TOP, data=data, out=str(RUNS / name / "quant_debug"))
        report = quant_debug(model, options).as_dict()
        result[name] = max((r["channel_range_ratio"] or 0.0) for r in report["layers"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=float, nargs="+", default=[100.0, 300.0, 1000.0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    command = "python benchmarks/quant_debug_planted.py --factors " + " ".join(f"{f:g}" for f in args.factors)
    if args.models != list(MODELS):
        command += " --models " + " ".join(args.models)
    started = time.perf_counter()
    sources = {name: trained(name) for name in args.models}
    natural = natural_ratios(sources)
    rows = [
        site(name, sources[name], writer, reader, factor)
        for name in args.models
        for writer, reader in MODELS[name][1]
        for factor in MODELS[name][2] or args.factors
    ]
    text = write(rows, command, time.perf_counter() - started, natural)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quant_debug_planted.md").write_text(text)
    record = {"command": command, "natural_ratios": natural, "sites": rows, "verdict": verdict(rows)}
    (RESULTS / "quant_debug_planted.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
