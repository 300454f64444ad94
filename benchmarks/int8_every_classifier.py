"""int8 against float32 for every registry classifier at its default input size, 2 threads.

Each architecture is built with seeded random weights (latency does not depend on their values) at its
default size, 3 channels, 1000 classes (10 for the 32-pixel CIFAR-style members), converted to float32
and to int8 (uint8 I/O, calibrated on scikit-image photo crops), and timed through the library's
``benchmark_model`` in alternating rounds (median of the rounds' p50s). The ops XNNPACK leaves to the
plain kernels are listed: each one splits the int8 graph into another delegate partition.
Target: no int8 model slower than its float32 model (ratio <= 1.0).

    .venv/bin/python benchmarks/int8_every_classifier.py [--only lenet5 ...] [--rounds 3] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter

from common import CACHE, ROOT, photo_folder

RESULTS = ROOT / "benchmarks" / "results"


def convert_both(arch: str, size: int, classes: int) -> dict:
    from edgecnn.archs import create
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.core.metadata import ModelInfo
    from edgecnn.pipelines.convert import ConvertOptions, convert

    folder = CACHE / "every_classifier"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {fmt: folder / f"{arch}_{size}_{fmt}.tflite" for fmt in ("float32", "int8")}
    if all(p.exists() for p in paths.values()):
        return paths
    keras.utils.set_random_seed(0)
    model = create(arch, classes, size, 3)
    info = ModelInfo(labels=[str(i) for i in range(classes)], input_size=[size, size], channels=3, arch=arch)
    keras_path = save_keras(model, folder / f"{arch}_{size}.keras", info)
    calib = str(photo_folder(CACHE / "photos"))
    for fmt, path in paths.items():
        convert(keras_path, path, ConvertOptions(format=fmt, calib=calib, calib_samples=64, evaluate=False))
    keras_path.unlink()
    keras.backend.clear_session()
    return paths


def main() -> None:
    from edgecnn.archs import get_arch, list_archs
    from edgecnn.benchmarks.latency import benchmark_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    store = RESULTS / "int8_every_classifier.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    for arch in list_archs("classify"):
        if args.only and arch not in args.only:
            continue
        size = get_arch(arch).default_size
        classes = 10 if size <= 32 else 1000
        start = time.perf_counter()
        print(f"== {arch} at {size}", file=sys.stderr, flush=True)
        paths = convert_both(arch, size, classes)
        p50 = {"float32": [], "int8": []}
        undelegated: list[str] = []
        for _ in range(args.rounds):
            for fmt in ("float32", "int8"):
                result = benchmark_model(paths[fmt], threads=args.threads, runs=args.runs, warmup=5)
                p50[fmt].append(result.latency_ms["p50"])
                if fmt == "int8":
                    undelegated = result.undelegated_ops
        f32, i8 = statistics.median(p50["float32"]), statistics.median(p50["int8"])
        results[arch] = {
            "arch": arch,
            "size": size,
            "classes": classes,
            "float32_p50_ms": round(f32, 4),
            "int8_p50_ms": round(i8, 4),
            "ratio": round(i8 / f32, 3),
            "int8_undelegated": dict(Counter(undelegated)),
            "runtime": result.runtime,
            "threads": args.threads,
            "rounds": args.rounds,
            "runs": args.runs,
            "date": time.strftime("%Y-%m-%d"),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(f"   float32 {f32:.3f} ms  int8 {i8:.3f} ms  ratio {i8 / f32:.2f}  outside: {dict(Counter(undelegated))}")
        store.write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "| classifier | input | float32 p50 ms | int8 p50 ms | int8 / float32 | int8 ops outside XNNPACK "
        "| rounds x runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results.values(), key=lambda r: -r["ratio"]):
        outside = ", ".join(f"{op} x{n}" for op, n in r["int8_undelegated"].items()) or "none"
        flag = " **slower**" if r["ratio"] > 1.0 else ""
        lines.append(
            f"| {r['arch']} | {r['size']} | {r['float32_p50_ms']:.3f} | {r['int8_p50_ms']:.3f} | "
            f"{r['ratio']:.2f}{flag} | {outside} | {r.get('rounds', 3)} x {r.get('runs', 50)} |"
        )
    table = "\n".join(lines) + "\n"
    (RESULTS / "int8_every_classifier.md").write_text(
        f"<!-- {time.strftime('%Y-%m-%d')}: python benchmarks/int8_every_classifier.py, {args.threads} threads, "
        f"each row the median of its alternating rounds of float32 and int8 -->\n\n{table}"
    )
    print(table)


if __name__ == "__main__":
    main()
