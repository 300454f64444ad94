"""LiteRT against ONNX Runtime: the same models as float32 and int8 in one ``edgecnn benchmark`` run, latency and
accuracy in one table, plus the parity and MediaPipe figures of issue #14.

    .venv/bin/python benchmarks/runtimes.py [--threads 2] [--runs 200] [--rounds 7]
        [--detector RUN] [--segmenter RUN] [--digits RUN] [--mediapipe PYTHON]

* Side by side: MobileNetV2 1.0 224 (1000 classes, seeded random weights, int8 calibrated on scikit-image
  photos: ``common.mobilenet_v2_224``) and the zoo detector (SSDLite MobileNet v2 0.35 on shapes, 128x128), each
  as a LiteRT .tflite and an ONNX Runtime .onnx, float32 and int8, all eight in one ``edgecnn benchmark``
  (``--rounds`` runs, the median p50 of each model kept, with the range: the machine is shared). Accuracy: the
  detector's mAP@0.5 on its 240 validation scenes (``edgecnn convert``'s report, Keras beside it). MobileNetV2
  224 has random weights (none can be downloaded here), so no accuracy: its column is the largest
  |probability - Keras| on the 64 photo crops (BatchNorm given their statistics, else every output is 1/1000).
  ONNX Runtime's own profiler splits the .onnx MobileNetV2's time by op (depthwise and dense convolutions apart).
* Keras vs ONNX float parity of the zoo detector (every detection of the 240 scenes against the Keras model
  through the numpy copy of the postprocess op) and segmenter (softmax of the .onnx logits against the Keras
  probabilities, every pixel of the 240 scenes); int8 ONNX against float on digits (LeNet-5) and shapes.
* With ``--mediapipe`` (a Python with mediapipe): MediaPipe Tasks on the .tflite files (classifier:
  MobileNetV2, detector, segmenter; float32 and int8) against edgecnn's own adapters.

Run folders default to ``runs/zoo/<recipe>`` and are trained with the recipe when missing. Results:
``benchmarks/results/runtimes.md`` and ``runtimes.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import CACHE, ROOT, mobilenet_v2_224, photo_folder

RESULTS = ROOT / "benchmarks" / "results"
FORMATS = (
    ("LiteRT", "float32", ".tflite"),
    ("LiteRT", "int8", ".tflite"),
    ("ONNX Runtime", "float32", ".onnx"),
    ("ONNX Runtime", "int8", ".onnx"),
)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def zoo_run(folder: str | None, recipe: str, *flags: str, name: str | None = None) -> Path:
    """A trained run folder: the one given, else runs/zoo/<name or recipe>, trained with the recipe when missing."""
    run = Path(folder) if folder else ROOT / "runs" / "zoo" / (name or recipe)
    if not (run / "model.keras").exists():
        print(f"training {recipe} {' '.join(flags)} into {run} ...", file=sys.stderr)
        config = ROOT / "training" / f"{recipe}.yaml"
        command = [sys.executable, "-m", "edgecnn", "train", "--config", str(config), *flags, "--out", str(run)]
        subprocess.run(command, check=True)
    return run


def convert_all(keras_path: Path, stem: Path, calib: str | None, evaluate: bool) -> dict[str, Any]:
    """The four deployed models of a Keras model (converted once, cached), and their convert reports."""
    from edgecnn.pipelines.convert import ConvertOptions, convert

    out = {}
    stem.parent.mkdir(parents=True, exist_ok=True)
    for runtime, fmt, suffix in FORMATS:
        path = stem.with_name(f"{stem.name}_{fmt}{suffix}")
        report_path = path.with_suffix(path.suffix + ".json")
        if not path.exists() or not report_path.exists():
            options = ConvertOptions(format=fmt, calib=calib, evaluate=evaluate, onnx=suffix == ".onnx")
            report_path.write_text(json.dumps(convert(keras_path, path, options).as_dict()))
        out[(runtime, fmt)] = {"path": path, "report": json.loads(report_path.read_text())}
    return out


def mobilenet_with_statistics(images: np.ndarray) -> Path:
    """MobileNetV2 224 with BatchNorm statistics of the photo crops (one pass at momentum 0): with the seeded
    weights alone every output is 1/1000, which no runtime can get wrong; with them the probabilities differ
    and the runtimes' top-1 agreement with Keras says something. Latency does not depend on the weights."""
    from edgecnn.core.keras_io import save_keras
    from edgecnn.core.metadata import read_keras_info
    from edgecnn.trainer.fit import set_bn_statistics
    from edgecnn.trainer.load import load_keras

    path = CACHE / "runtimes" / "mobilenet_v2_224_bn.keras"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    source = CACHE / "mobilenet_v2_224.keras"
    model, _ = load_keras(source)
    set_bn_statistics(model, images)
    return save_keras(model, path, read_keras_info(source))


def benchmark(paths: list[Path], threads: int, runs: int, rounds: int) -> tuple[list[dict], str]:
    """``rounds`` runs of one ``edgecnn benchmark`` over all models; per model the round with the median p50, with
    every round's p50 and min beside it (``rounds_p50``, ``rounds_min``): on a shared machine a round can be
    slowed by another job, so the median and the spread are what to read."""
    command = [
        sys.executable,
        "-m",
        "edgecnn",
        "benchmark",
        *map(str, paths),
        "--threads",
        str(threads),
        "--runs",
        str(runs),
        "--warmup",
        "20",
        "--provider",
        "cpu",
    ]
    table = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    per_model: list[list[dict]] = [[] for _ in paths]
    for _ in range(rounds):
        done = subprocess.run([*command, "--json"], capture_output=True, text=True, check=True)
        for i, line in enumerate(done.stdout.splitlines()):
            per_model[i].append(json.loads(line))
    medians = []
    for rows in per_model:
        median = dict(sorted(rows, key=lambda r: r["latency_ms"]["p50"])[len(rows) // 2])
        median["rounds_p50"] = [r["latency_ms"]["p50"] for r in rows]
        median["rounds_min"] = [r["latency_ms"]["min"] for r in rows]
        medians.append(median)
    return medians, table


def agreement(models: dict, keras_path: Path, images: np.ndarray) -> dict[str, dict[str, float]]:
    """Each deployed model against Keras on ``images``: top-1 agreement and the largest probability difference."""
    from edgecnn.runtime.open import open_model
    from edgecnn.trainer.load import load_keras

    keras_model, _ = load_keras(keras_path)
    reference = keras_model.predict(images.astype(np.float32), batch_size=16, verbose=0)
    out = {}
    for (runtime, fmt), m in models.items():
        probs = open_model(m["path"], threads=2).predict(images)
        out[f"{runtime} {fmt}"] = {
            "top1_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
            "max_probability_error": float(np.abs(probs - reference).max()),
        }
    return out


def onnx_profile(path: Path, threads: int, runs: int = 50) -> dict[str, float]:
    """Share of ONNX Runtime's kernel time per op type (convolutions split into depthwise and dense), from its
    profiler, on the session's optimized graph."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling, options.profile_file_prefix = True, str(Path(tmp) / "profile")
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        groups = {
            n.name: next((a.i for a in n.attribute if a.name == "group"), 1)
            for n in onnx.load(options.optimized_model_filepath).graph.node
        }
        feed = {session.get_inputs()[0].name: np.zeros(session.get_inputs()[0].shape, np.float32)}
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    spent: dict[str, float] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        op = event["args"]["op_name"]
        if "Conv" in op:
            op += " depthwise" if groups.get(event["name"].removesuffix("_kernel_time"), 1) > 1 else " dense"
        spent[op] = spent.get(op, 0.0) + event["dur"]
    total = sum(spent.values()) or 1.0
    return {op: round(100 * t / total, 1) for op, t in sorted(spent.items(), key=lambda kv: -kv[1])[:6]}


def detector_parity(run: Path, onnx_path: Path) -> dict[str, Any]:
    """Every detection of the .onnx on the validation scenes against the Keras model + numpy postprocess."""
    from edgecnn.data.registry import model_data
    from edgecnn.detection.anchors import generate_anchors
    from edgecnn.detection.nms import postprocess
    from edgecnn.runtime.detect import read_detections
    from edgecnn.runtime.onnx import OnnxModel
    from edgecnn.trainer.load import load_keras

    model, info = load_keras(run / "model.keras")
    val, _ = model_data(info, None)
    anchors, scale = generate_anchors(info.extra["anchors"]), info.extra["box_scale"]
    encodings, scores = model.predict(val.x.astype(np.float32), batch_size=32, verbose=0)
    runner = OnnxModel(onnx_path, threads=2)
    detections = same_count = 0
    box_error = score_error = 0.0
    for image, e, s in zip(val.x, encodings, scores, strict=True):
        boxes, classes, best = postprocess(e, s, anchors, scale)
        runner.set_input(image)
        runner.invoke()
        got_boxes, got_classes, got_scores, count = read_detections(runner)
        same_count += count == len(boxes)
        for box, cls, score in zip(boxes, classes, best, strict=True):
            same = np.flatnonzero(got_classes[:count] == cls)
            if same.size:
                i = same[np.abs(got_boxes[same] - box).max(1).argmin()]
                box_error = max(box_error, float(np.abs(got_boxes[i] - box).max()))
                score_error = max(score_error, abs(float(got_scores[i]) - float(score)))
            detections += 1
    return {
        "images": len(val),
        "same_count": same_count,
        "detections": detections,
        "max_box_error": box_error,
        "max_score_error": score_error,
    }


def segmenter_parity(run: Path, onnx_path: Path) -> dict[str, Any]:
    from edgecnn.data.registry import model_data
    from edgecnn.runtime.onnx import OnnxModel
    from edgecnn.trainer.load import load_keras

    model, info = load_keras(run / "model.keras")
    val, _ = model_data(info, None)
    probs = model.predict(val.x.astype(np.float32), batch_size=16, verbose=0)
    logits = OnnxModel(onnx_path, threads=2).predict(val.x)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    onnx_probs = exp / exp.sum(-1, keepdims=True)
    return {
        "images": len(val),
        "max_probability_error": float(np.abs(onnx_probs - probs).max()),
        "pixel_agreement": float((onnx_probs.argmax(-1) == probs.argmax(-1)).mean()),
    }


def mediapipe_check(python: str, task: str, path: Path, images: np.ndarray) -> dict[str, Any]:
    """MediaPipe Tasks on a .tflite against edgecnn's adapter on the same images (see tests/mediapipe_tasks.py)."""
    from edgecnn.runtime.detect import read_detections
    from edgecnn.runtime.interpreter import TFLiteModel
    from edgecnn.runtime.segment import segment

    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "images.npy", images)
        done = subprocess.run(
            [python, str(ROOT / "tests" / "mediapipe_tasks.py"), task, str(path), str(Path(tmp) / "images.npy")],
            capture_output=True,
            text=True,
            check=True,
        )
    report = json.loads(done.stdout)
    if "error" in report:
        return {"error": report["error"]}
    ours, reference = report["metadata"]["json"], report["reference"]["json"]
    for side in (ours, reference):
        side.pop("min_parser_version", None)
        side.pop("author", None)
    model = TFLiteModel(path)
    out: dict[str, Any] = {
        "mediapipe": report["mediapipe"],
        "metadata_as_mediapipe_writes_it": ours == reference,
        "labels": report["metadata"]["labels"][:5],
        "images": len(images),
    }
    if task == "classify":
        probs = model.predict(images)
        out["same_top1"] = sum(
            r[0][0] == int(p.argmax()) and r[0][2] == model.labels[int(p.argmax())]
            for r, p in zip(report["results"], probs, strict=True)
        )
        out["max_score_error"] = max(
            abs(score - float(p[index])) for r, p in zip(report["results"], probs, strict=True) for index, score, _ in r
        )
    elif task == "detect":
        same = steps = 0
        for found, image in zip(report["results"], images, strict=True):
            model.set_input(image)
            model.invoke()
            _, classes, scores, count = read_detections(model)
            ours_scores = sorted(
                (round(float(s), 4), model.labels[int(c)]) for s, c in zip(scores[:count], classes[:count], strict=True)
            )
            theirs = sorted((round(r[2], 4), r[3]) for r in found)
            same += ours_scores == theirs
            steps += len(found) == count and ours_scores != theirs
        out["identical_images"], out["one_step_apart_images"] = same, steps
    else:
        agreement = [
            float((np.asarray(m, np.uint8).reshape(model.input_hw) == segment(model, i, src="rgb").mask).mean())
            for m, i in zip(report["results"], images, strict=True)
        ]
        out["pixel_agreement"] = float(np.mean(agreement))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--detector", help="detector run folder (default runs/zoo/ssdlite_mobilenet_v2_035_shapes)")
    parser.add_argument("--segmenter", help="segmenter run folder (default runs/zoo/unet_mobilenet_v2_shapes_seg)")
    parser.add_argument("--digits", help="LeNet-5 digits run folder (default runs/zoo/lenet5_digits)")
    parser.add_argument("--digits-rgb", dest="digits_rgb", help="LeNet-5 on digits in RGB, for MediaPipe's classifier")
    parser.add_argument("--mediapipe", help="a Python with mediapipe installed (its own venv)")
    parser.add_argument("--markdown", action="store_true", help="only render results/runtimes.json again")
    args = parser.parse_args()
    if args.markdown:
        record = json.loads((RESULTS / "runtimes.json").read_text())
        (RESULTS / "runtimes.md").write_text(markdown(record, record["table"]))
        return
    from edgecnn.data.images import list_images, load_image

    start = time.time()
    mobilenet_v2_224(("float32",))  # builds the Keras model once (cached)
    photos = photo_folder(CACHE / "photos")
    crops = np.stack([load_image(p, 224, "rgb") for p in list_images(photos)])
    keras_mobilenet = mobilenet_with_statistics(crops)
    mobilenet_models = convert_all(keras_mobilenet, CACHE / "runtimes" / "mobilenet_v2_224", str(photos), False)
    detector_run = zoo_run(args.detector, "ssdlite_mobilenet_v2_035_shapes")
    detector_models = convert_all(detector_run / "model.keras", detector_run / "model", None, True)
    paths = [m["path"] for m in mobilenet_models.values()] + [m["path"] for m in detector_models.values()]
    rows, table = benchmark(paths, args.threads, args.runs, args.rounds)
    errors = agreement(mobilenet_models, keras_mobilenet, crops)
    profile = {
        fmt: onnx_profile(mobilenet_models[("ONNX Runtime", fmt)]["path"], args.threads) for fmt in ("float32", "int8")
    }
    print(table)

    segmenter_run = zoo_run(args.segmenter, "unet_mobilenet_v2_shapes_seg")
    segmenter_models = convert_all(segmenter_run / "model.keras", segmenter_run / "model", None, True)
    digits_run = zoo_run(args.digits, "lenet5_digits")
    digits_models = convert_all(digits_run / "model.keras", digits_run / "model", None, True)
    parity = {
        "detector": detector_parity(detector_run, detector_models[("ONNX Runtime", "float32")]["path"]),
        "segmenter": segmenter_parity(segmenter_run, segmenter_models[("ONNX Runtime", "float32")]["path"]),
    }
    metrics = {
        name: {f"{r} {f}": m["report"]["accuracy"] for (r, f), m in models.items()}
        for name, models in (("detector", detector_models), ("segmenter", segmenter_models), ("digits", digits_models))
    }
    mediapipe: dict[str, Any] = {}
    if args.mediapipe:
        from edgecnn.core.metadata import read_keras_info
        from edgecnn.data.registry import model_data

        # MediaPipe's classifier runs RGB models only: LeNet-5 on digits in RGB (the zoo recipe, --channels 3)
        rgb_run = zoo_run(args.digits_rgb, "lenet5_digits", "--channels", "3", name="lenet5_digits_rgb")
        rgb_models = convert_all(rgb_run / "model.keras", rgb_run / "model", None, True)
        digits, _ = model_data(read_keras_info(rgb_run / "model.keras"), None)
        shapes, _ = model_data(read_keras_info(detector_run / "model.keras"), None)
        scenes, _ = model_data(read_keras_info(segmenter_run / "model.keras"), None)
        for fmt in ("float32", "int8"):
            mediapipe[f"classifier {fmt}"] = mediapipe_check(
                args.mediapipe, "classify", rgb_models[("LiteRT", fmt)]["path"], digits.x
            )
            mediapipe[f"detector {fmt}"] = mediapipe_check(
                args.mediapipe, "detect", detector_models[("LiteRT", fmt)]["path"], shapes.x
            )
            mediapipe[f"segmenter {fmt}"] = mediapipe_check(
                args.mediapipe, "segment", segmenter_models[("LiteRT", fmt)]["path"], scenes.x
            )
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["benchmarks/runtimes.py", *sys.argv[1:]]),
        "load": " ".join(f"{v:.1f}" for v in __import__("os").getloadavg()),
        "table": table,
        "cpu": cpu_name(),
        "cores": len(__import__("os").sched_getaffinity(0)),
        "threads": args.threads,
        "runs": args.runs,
        "rounds": args.rounds,
        "benchmark": rows,
        "mobilenet_against_keras": errors,
        "photos": len(crops),
        "onnx_profile_percent": profile,
        "metrics": metrics,
        "ops": {
            name: {f"{r} {f}": sum(m["report"]["ops"].values()) for (r, f), m in models.items()}
            for name, models in (("mobilenet", mobilenet_models), ("detector", detector_models))
        },
        "parity": parity,
        "mediapipe": mediapipe,
        "minutes": round((time.time() - start) / 60, 1),
    }
    (RESULTS / "runtimes.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    (RESULTS / "runtimes.md").write_text(markdown(record, table))
    print(markdown(record, table))


def why(record: dict) -> str:
    """The reading of the numbers: where each runtime spends its time, op counts, load times."""
    # benchmark rows: MobileNetV2 then the detector, each LiteRT float32, LiteRT int8, ONNX float32, ONNX int8
    mobilenet_best = [min(row["rounds_min"]) for row in record["benchmark"][:4]]
    ops = record["ops"]["detector"]
    init = [row["init_ms"] for row in record["benchmark"]]
    return (
        "Why: both runtimes spend their time in the convolutions (ONNX Runtime's profile above; LiteRT runs each "
        "graph as one XNNPACK partition). XNNPACK's NHWC microkernels (convolution, ReLU6 and residual add fused) "
        f"beat ONNX Runtime's MLAS convolutions most in float32 (best rounds {mobilenet_best[0]:.2f} against "
        f"{mobilenet_best[2]:.2f} ms) and nearly tie in int8, where both use the CPU's VNNI int8 dot products "
        f"({mobilenet_best[1]:.2f} against {mobilenet_best[3]:.2f} ms). On the small detector the cost per op "
        f"decides: the .onnx runs {ops['ONNX Runtime float32']} nodes ({ops['ONNX Runtime int8']} in int8, "
        f"Q/DQ included) against the .tflite's {ops['LiteRT float32']} ops, its decoding and NMS being some 80 "
        "small float nodes where the .tflite has one TFLite_Detection_PostProcess op. ONNX Runtime also loads "
        f"slower ({min(init[2:4] + init[6:8]):.0f}-{max(init[2:4] + init[6:8]):.0f} ms against "
        f"{min(init[0:2] + init[4:6]):.0f}-{max(init[0:2] + init[4:6]):.0f} ms: it optimizes the graph at load) and "
        "its rounds spread wider on this shared machine."
    )


def markdown(record: dict, table: str) -> str:
    lines = [
        f"<!-- {record['date']}: .venv/bin/python {record['command']} ({record['minutes']} min) -->",
        "",
        f"# LiteRT and ONNX Runtime side by side ({record['cpu']}, {record['cores']} cores, "
        f"{record['threads']} threads)",
        "",
        f"Load average while it ran: {record.get('load', 'n/a')} (other jobs shared the cores: the min column is "
        "the least disturbed figure)",
        "",
        "| model | runtime | format | size KiB | p50 ms, median of rounds (range) | min ms | FPS | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = ["MobileNetV2 224"] * 4 + ["SSDLite MobileNet v2 0.35 (zoo detector)"] * 4
    keys = [f"{r} {f}" for r, f, _ in FORMATS] * 2
    for i, (row, name, key) in enumerate(zip(record["benchmark"], names, keys, strict=True)):
        if i < 4:
            e = record["mobilenet_against_keras"][key]  # random weights: no accuracy to measure (see below)
            accuracy = f"max \\|p - Keras\\| {e['max_probability_error']:.2g} on {record['photos']} photos"
        else:
            a = record["metrics"]["detector"][key]
            deployed = a.get("onnx", a.get("tflite"))
            accuracy = f"mAP@0.5 {100 * deployed:.2f}% (Keras {100 * a['keras']:.2f}%)"
        lat = row["latency_ms"]
        runtime, fmt = key.rsplit(" ", 1)
        lines.append(
            f"| {name} | {runtime} ({row['runtime']}) | {fmt} | {row['model_bytes'] / 1024:.0f} | "
            f"{lat['p50']:.3f} ({min(row['rounds_p50']):.3f}-{max(row['rounds_p50']):.3f}) | "
            f"{min(row['rounds_min']):.3f} | {row['fps']:.0f} | {accuracy} |"
        )
    lines += [
        "",
        "MobileNetV2 224 has seeded random weights (no weights can be downloaded here), so it has no accuracy: its "
        "column is how far each deployed model's probabilities are from the Keras model's on the 64 photo crops "
        "(int8 calibrated on them). The detector's accuracy is its mAP@0.5 on the 240 validation scenes.",
        "",
        "## Which is faster here",
        "",
    ]
    rows = record["benchmark"]
    for first, name in ((0, "MobileNetV2 224"), (4, "the zoo detector")):
        for offset, fmt in ((0, "float32"), (1, "int8")):
            litert, onnx = rows[first + offset]["latency_ms"]["p50"], rows[first + 2 + offset]["latency_ms"]["p50"]
            faster = "LiteRT" if litert < onnx else "ONNX Runtime"
            lines.append(
                f"- {name} {fmt}: {faster}, p50 {min(litert, onnx):.3f} against {max(litert, onnx):.3f} ms "
                f"({max(litert, onnx) / min(litert, onnx):.2f}x)"
            )
    profile = record["onnx_profile_percent"]
    lines += [
        "",
        "ONNX Runtime's profiler on the MobileNetV2 .onnx (share of kernel time): float32 "
        + ", ".join(f"{op} {share}%" for op, share in profile["float32"].items())
        + "; int8 "
        + ", ".join(f"{op} {share}%" for op, share in profile["int8"].items())
        + ".",
        "",
        why(record),
        "",
        "One round of the `edgecnn benchmark` run (the table above keeps each model's median round):",
        "",
        "```",
        table.rstrip(),
        "```",
        "",
        "## Keras against the deployed models",
        "",
    ]
    for name, per_format in record["metrics"].items():
        cells = ", ".join(f"{k} {100 * v.get('onnx', v.get('tflite')):.2f}%" for k, v in per_format.items())
        first = next(iter(per_format.values()))
        lines.append(
            f"- {name}: {first['metric_title']} Keras {100 * first['keras']:.2f}%; {cells} "
            f"({first['images']} validation images)"
        )
    p = record["parity"]
    d, s = p["detector"], p["segmenter"]
    lines += [
        "",
        f"- detector, Keras vs ONNX float32 on {d['images']} scenes: {d['same_count']} with the same number of "
        f"detections, {d['detections']} detections, max |box| {d['max_box_error']:.2g}, "
        f"max |score| {d['max_score_error']:.2g}",
        f"- segmenter, Keras vs ONNX float32 on {s['images']} scenes: max |probability| "
        f"{s['max_probability_error']:.2g}, argmax agreement {100 * s['pixel_agreement']:.3f}% of pixels",
    ]
    if record["mediapipe"]:
        lines += [
            "",
            "## MediaPipe Tasks on the .tflite files",
            "",
            "Classifier: LeNet-5 trained on digits in RGB (MediaPipe's ImageClassifier takes RGB models only); "
            "detector and segmenter: the zoo models above; all on their validation images. "
            "`metadata_as_mediapipe_writes_it`: MediaPipe's displayer reads our TFLITE_METADATA exactly as what its "
            "own writers write for the same model; `one_step_apart_images`: images where one score differs by one "
            "int8 step (MediaPipe's bundled XNNPACK rounds differently), same count and labels.",
            "",
        ]
        lines += [f"- {k}: {json.dumps(v)}" for k, v in record["mediapipe"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
