"""The demo pipeline against the inference bound, for classification, detection and segmentation.

Each task's MobileNetV2-based model at 224 (seeded random weights, int8 with uint8 I/O, calibrated on
scikit-image photos) runs through ``edgecnn benchmark MODEL --source VIDEO --threads 1``: the invoke-only
p50 gives the inference-bound FPS (1000 / p50), and the whole demo loop (capture, preprocess, invoke,
postprocess, draw) on a 640x480 video gives the pipeline FPS and its per-stage times. Target: the
pipeline reaches at least 0.9x of the inference-bound FPS at 1 inference thread.

    .venv/bin/python benchmarks/demo_pipeline.py [--frames 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import ROOT, int8_model, video_640x480

MODELS = (  # task, architecture, classes (ImageNet, COCO, VOC)
    ("classify", "mobilenet_v2", 1000),
    ("detect", "ssdlite_mobilenet_v2", 90),
    ("segment", "unet_mobilenet_v2", 21),
)
STAGES = ("capture", "preprocess", "invoke", "postprocess", "draw")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    clip = video_640x480(args.frames)
    rows = []
    for task, arch, classes in MODELS:
        model = int8_model(arch, classes)
        command = [
            sys.executable, "-m", "edgecnn", "benchmark", str(model), "--threads", str(args.threads),
            "--runs", str(args.frames), "--warmup", "20", "--source", str(clip), "--json",
        ]  # fmt: skip
        row = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        rows.append({"task": task, "arch": arch, **row})
        pipe = row["pipeline"]
        print(
            f"{task}: pipeline {pipe['fps']:.1f} FPS, bound {pipe['inference_bound_fps']:.1f} FPS, "
            f"ratio {pipe['ratio']:.2f}"
        )
    head = (
        "| task | model | invoke p50 ms | bound FPS | pipeline FPS | ratio | "
        + " | ".join(f"{s} p50 ms" for s in STAGES)
        + " | end-to-end p50 ms |"
    )
    lines = [head, "|" + "---|" * (7 + len(STAGES))]
    for r in rows:
        p = r["pipeline"]
        stages = " | ".join(f"{p['stages_ms'][s]['p50']:.2f}" for s in STAGES)
        lines.append(
            f"| {r['task']} | {r['arch']} 224 int8 | {r['latency_ms']['p50']:.2f} | {p['inference_bound_fps']:.1f} | "
            f"{p['fps']:.1f} | **{p['ratio']:.2f}x** | {stages} | {p['latency_ms']['p50']:.2f} |"
        )
    table = "\n".join(lines)
    note = (
        f"<!-- {time.strftime('%Y-%m-%d')}: edgecnn benchmark MODEL --threads {args.threads} --runs {args.frames} "
        f"--source {clip.name} (640x480), {rows[0]['runtime']} -->\n\n"
    )
    (ROOT / "benchmarks" / "results" / "demo_pipeline.md").write_text(note + table + "\n")
    (ROOT / "benchmarks" / "results" / "demo_pipeline.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table)


if __name__ == "__main__":
    main()
