"""int16x8 beside int8 and float32 on a segmenter: size, mean IoU on the whole validation split, p50 latency.

The int16x8 row (int16 activations, int8 weights: TFLite's
``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``) is one row of
``edgecnn/convert/formats.py``; this script measures what it buys on the bundled shapes-seg data:

    .venv/bin/python convert/int16x8.py [--epochs 8] [--img 64] [--threads 2] [--runs 100]

It trains (or reuses) a U-Net with a MobileNet v2 0.35 encoder as ``training/unet_mobilenet_v2_shapes_seg.yaml``
does, at a smaller input and fewer epochs so it runs in minutes on 2 cores (both stated in the results),
converts it with ``edgecnn convert --float32 / --int8 / --int16x8`` (the one export path; each file is
evaluated beside Keras on the whole validation split), and times each file as ``edgecnn benchmark`` does
(XNNPACK delegate, ``--threads``), recording which ops XNNPACK leaves to the plain kernels.

Results: convert/results/int16x8.json and convert/results/int16x8.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "convert" / "results"
FORMATS = ("float32", "int8", "int16x8")


def train_unet(run: Path, img: int, epochs: int) -> Path:
    """The U-Net of training/unet_mobilenet_v2_shapes_seg.yaml at ``img`` and ``epochs`` (reused when present)."""
    import dataclasses

    from edgecnn.core.config import TrainConfig, load_config
    from edgecnn.pipelines.train import train

    model = run / "model.keras"
    if model.is_file():
        print(f"reusing {model}", flush=True)
        return model
    recipe = load_config(ROOT / "training" / "unet_mobilenet_v2_shapes_seg.yaml", TrainConfig)
    config = dataclasses.replace(recipe, img=img, epochs=epochs, out=str(run))
    start = time.perf_counter()
    result = train(config, verbose=0)
    print(f"trained {result.model_path} in {time.perf_counter() - start:.0f} s", flush=True)
    return Path(result.model_path)


def measure(model: Path, threads: int, runs: int) -> list[dict]:
    from edgecnn.benchmarks.latency import benchmark_model
    from edgecnn.pipelines.convert import ConvertOptions, convert

    rows = []
    for name in FORMATS:
        start = time.perf_counter()
        report = convert(model, model.with_name(f"model_{name}.tflite"), ConvertOptions(format=name))
        seconds = round(time.perf_counter() - start, 1)
        bench = benchmark_model(report.output, threads=threads, runs=runs)
        a = report.accuracy
        undelegated: dict[str, int] = {}
        for op in bench.undelegated_ops:
            undelegated[op] = undelegated.get(op, 0) + 1
        rows.append(
            {
                "format": name,
                "bytes": report.bytes,
                "images": a["images"],
                "keras_miou": a["keras"],
                "tflite_miou": a["tflite"],
                "delta_points": a["delta_points"],
                "pixel_agreement": a.get("pixel_agreement"),
                "p50_ms": bench.latency_ms["p50"],
                "threads": threads,
                "runs": runs,
                "runtime": bench.runtime,
                "ops": sum(report.ops.values()),
                "outside_xnnpack": undelegated,
                "convert_seconds": seconds,
            }
        )
        print(
            f"  {name}: {report.bytes / 1024:.0f} KiB, mIoU keras {100 * a['keras']:.2f}% tflite "
            f"{100 * a['tflite']:.2f}% (n={a['images']}), p50 {bench.latency_ms['p50']:.2f} ms, "
            f"outside XNNPACK {sum(undelegated.values())}/{sum(report.ops.values())} ops",
            flush=True,
        )
    return rows


def markdown(setup: dict, rows: list[dict]) -> str:
    lines = [
        "# int16x8 beside int8 and float32 on a segmenter",
        "",
        f"U-Net MobileNet v2 0.35 on shapes-seg at {setup['img']}x{setup['img']}, trained {setup['epochs']} epochs "
        f"(training/unet_mobilenet_v2_shapes_seg.yaml otherwise; its 30 epochs at 128 take too long here). "
        f"mIoU on the whole validation split (n={rows[0]['images']}); p50 latency of {rows[0]['runs']} runs, "
        f"{rows[0]['threads']} threads, XNNPACK delegate ({rows[0]['runtime']}), {setup['machine']}. "
        f"Written by `{setup['command']}` on {setup['date']}; load average {setup['load_average_1min']} on "
        f"{setup['cpus']} CPUs when it finished (latencies on a busy machine are upper bounds). The last column "
        "counts the ops XNNPACK leaves to LiteRT's plain kernels.",
        "",
        "| format | KiB | mIoU Keras | mIoU .tflite | delta (points) | pixel agreement | p50 ms "
        "| ops outside XNNPACK |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        outside = sum(r["outside_xnnpack"].values())
        kinds = ", ".join(f"{op} x{n}" for op, n in sorted(r["outside_xnnpack"].items()))
        lines.append(
            f"| {r['format']} | {r['bytes'] / 1024:.0f} | {100 * r['keras_miou']:.2f}% | {100 * r['tflite_miou']:.2f}% "
            f"| {r['delta_points']:+.2f} | {100 * (r['pixel_agreement'] or 0):.2f}% | {r['p50_ms']:.2f} | "
            f"{outside}/{r['ops']}{f' ({kinds})' if kinds else ''} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--img", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100, help="timed invocations per file")
    parser.add_argument("--run", default=str(ROOT / "runs" / "int16x8_unet"), help="run folder (reused)")
    args = parser.parse_args()
    model = train_unet(Path(args.run), args.img, args.epochs)
    rows = measure(model, args.threads, args.runs)
    setup = {
        "img": args.img,
        "epochs": args.epochs,
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "command": f"convert/int16x8.py --epochs {args.epochs} --img {args.img} --threads {args.threads} --runs "
        f"{args.runs}",
        "date": time.strftime("%Y-%m-%d"),
        "load_average_1min": round(os.getloadavg()[0], 1),  # a shared machine: how busy it was when timed
        "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int16x8.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=1) + "\n")
    (RESULTS / "int16x8.md").write_text(markdown(setup, rows))
    print(markdown(setup, rows))


if __name__ == "__main__":
    main()
