"""``edgecnn quickstart``: the whole path on the bundled digits, ending with a one-screen summary.

train -> convert (float32, int8) -> eval both .tflite -> benchmark both -> demo on a clip made
from validation digits. Every number in the summary is measured in this run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.benchmarks.latency import benchmark_model, format_table
from edgecnn.core.config import TrainConfig
from edgecnn.core.fileio import atomic_path, ensure_dir, write_text
from edgecnn.data.registry import load_split
from edgecnn.pipelines.convert import ConvertOptions, convert, format_report
from edgecnn.pipelines.demo.loop import LoopOptions, run_demo
from edgecnn.pipelines.evaluate import EvalOptions, evaluate
from edgecnn.pipelines.train import train
from edgecnn.runtime.interpreter import load_model
from edgecnn.video.sources import open_source

DEFAULT_ARCH = "lenet5"
DEFAULT_EPOCHS = 20


def write_clip(images: np.ndarray, path: Path, size: int = 256, frames_per_image: int = 3) -> Path:
    """An .mp4 of digits, each held for a few frames: a stand-in for a camera pointed at digits."""
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (size, size))
        for image in images:
            frame = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame
            for _ in range(frames_per_image):
                writer.write(frame)
        writer.release()
    return path


def quickstart(out: str | Path, epochs: int | None = None, arch: str | None = None) -> dict[str, Any]:
    out = ensure_dir(out, "quickstart")
    config = TrainConfig(
        arch=arch or DEFAULT_ARCH, data="digits", img=32, epochs=epochs or DEFAULT_EPOCHS, out=str(out / "train")
    )
    print(f"[1/5] train {config.arch} on digits ({config.epochs} epochs)")
    trained = train(config)

    print("[2/5] convert to float32 and int8 .tflite")
    paths: dict[str, Path] = {}
    for fmt in ("float32", "int8"):
        report = convert(trained.model_path, None, ConvertOptions(format=fmt))
        print(format_report(report))
        paths[fmt] = Path(report.output)

    print("[3/5] evaluate the .tflite models (light runtime)")
    accuracy = {fmt: evaluate(p, EvalOptions(plots=True))["top1"] for fmt, p in paths.items()}

    print("[4/5] benchmark")
    bench = [benchmark_model(paths[fmt], threads=os.cpu_count(), runs=200) for fmt in ("float32", "int8")]
    print(format_table(bench))

    print("[5/5] demo on a clip of validation digits (headless)")
    val = load_split("digits", "classify", 32, None, config.seed, config.val_fraction).val
    clip = write_clip(val.x[:40, :, :, 0], out / "clip.mp4")
    stats = run_demo(
        load_model(paths["int8"]), open_source(str(clip)), options=LoopOptions(save=out / "demo.mp4", display=False)
    )

    summary = {
        "arch": config.arch,
        "keras_top1": trained.metrics["val_top1"],
        "float32_top1": accuracy["float32"],
        "int8_top1": accuracy["int8"],
        "float32_bytes": bench[0].model_bytes,
        "int8_bytes": bench[1].model_bytes,
        "float32_p50_ms": bench[0].latency_ms["p50"],
        "int8_p50_ms": bench[1].latency_ms["p50"],
        "demo_fps": round(stats.fps, 1),
        "demo_frames": stats.frames,
        "paths": {"run": str(trained.run_dir), **{k: str(v) for k, v in paths.items()}, "demo": str(out / "demo.mp4")},
    }
    write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(format_summary(summary))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    return "\n".join(
        [
            "",
            f"quickstart summary ({s['arch']} on digits)",
            f"  accuracy  keras {100 * s['keras_top1']:.2f}%  float32 .tflite {100 * s['float32_top1']:.2f}%  "
            f"int8 .tflite {100 * s['int8_top1']:.2f}%",
            f"  size      float32 {s['float32_bytes'] / 1024:.1f} KiB  int8 {s['int8_bytes'] / 1024:.1f} KiB "
            f"({s['float32_bytes'] / s['int8_bytes']:.1f}x smaller)",
            f"  latency   float32 p50 {s['float32_p50_ms']:.3f} ms  int8 p50 {s['int8_p50_ms']:.3f} ms",
            f"  demo      {s['demo_frames']} frames at {s['demo_fps']:.1f} FPS -> {s['paths']['demo']}",
            f"  models    {s['paths']['float32']}  {s['paths']['int8']}",
        ]
    )
