"""Int8 against float32 for MobileNetV2 224 on this machine, through ``edgecnn benchmark``.

Runs the real CLI with both models in one invocation and records its table and JSON.
Target: int8 at least 1.8x faster (p50) than float32 with 2 threads.

    .venv/bin/python benchmarks/int8_vs_float32.py [--threads 2] [--runs 300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import ROOT, mobilenet_v2_224


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    models = mobilenet_v2_224(("float32", "int8"))
    base = [
        sys.executable,
        "-m",
        "edgecnn",
        "benchmark",
        str(models["float32"]),
        str(models["int8"]),
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
        "--warmup",
        "20",
    ]
    table = subprocess.run(base, capture_output=True, text=True, check=True).stdout
    rows = [
        json.loads(line)
        for line in subprocess.run([*base, "--json"], capture_output=True, text=True, check=True).stdout.splitlines()
    ]
    speedup = rows[0]["latency_ms"]["p50"] / rows[1]["latency_ms"]["p50"]
    command = f"edgecnn benchmark mobilenet_v2_224_float32.tflite mobilenet_v2_224_int8.tflite --threads {args.threads}"
    record = f"<!-- {time.strftime('%Y-%m-%d')}: {command} -->\n\n{table}\nint8 speed-up (p50): {speedup:.2f}x\n"
    (ROOT / "benchmarks" / "results" / "int8_vs_float32.md").write_text(record)
    (ROOT / "benchmarks" / "results" / "int8_vs_float32.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table)
    print(f"int8 speed-up (p50): {speedup:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
