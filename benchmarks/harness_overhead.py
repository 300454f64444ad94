"""Does ``edgecnn benchmark`` add overhead over a bare ``interpreter.invoke()`` loop?

MobileNetV2 224 int8, 2 threads, XNNPACK. The two loops are interleaved in rounds (harness,
bare, harness, bare, ...) on one interpreter each with the same settings, so drift on the
machine hits both alike. Target: harness p50 within 3% of the bare loop's.

    .venv/bin/python benchmarks/harness_overhead.py [--rounds 10] [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from common import ROOT, mobilenet_v2_224

from edgecnn.benchmarks.latency import benchmark_model
from edgecnn.runtime.interpreter import find_backend


def bare_loop(path: Path, threads: int, runs: int) -> np.ndarray:
    """The reference: LiteRT's Interpreter, input set once, perf_counter around invoke()."""
    backend = find_backend()
    interpreter = backend.Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.random.default_rng(0).integers(0, 256, detail["shape"]).astype(np.uint8))
    for _ in range(10):
        interpreter.invoke()
    times = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        interpreter.invoke()
        times[i] = time.perf_counter() - t
    return times * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = mobilenet_v2_224(("int8",))["int8"]
    harness, bare = [], []
    for _ in range(args.rounds):
        harness.append(benchmark_model(model, threads=args.threads, runs=args.runs).latency_ms["p50"])
        bare.append(float(np.percentile(bare_loop(model, args.threads, args.runs), 50)))
    h, b = float(np.median(harness)), float(np.median(bare))
    result = {
        "model": "mobilenet_v2 1.0 224 int8 (uint8 I/O)",
        "threads": args.threads,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
        "harness_p50_ms": round(h, 4),
        "bare_invoke_p50_ms": round(b, 4),
        "overhead_percent": round(100 * (h - b) / b, 2),
        "harness_p50_per_round": [round(x, 4) for x in harness],
        "bare_p50_per_round": [round(x, 4) for x in bare],
        "runtime": f"{find_backend().name} {find_backend().version}",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = ROOT / "benchmarks" / "results" / "harness_overhead.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"harness p50 {h:.4f} ms, bare invoke p50 {b:.4f} ms: overhead {result['overhead_percent']:+.2f}% "
        f"(target within 3%) -> {out.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
