"""Export the model zoo to every conversion recipe in convert/*.yaml and measure each file as deployed:
size, the task's metric of the .tflite against its Keras model on the validation split (whole split,
n stated), and p50 latency. The Edge TPU recipe also records the op check's verdict.

    .venv/bin/python training/zoo.py                # trains the zoo into runs/zoo/ (once)
    .venv/bin/python convert/export_zoo.py [--only lenet5_digits ...] [--threads 2]

Results go to convert/results/formats.json (merged per model, so models can be re-run one at a time)
and convert/results/formats.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "convert"
RESULTS = RECIPES / "results"
ZOO_RUNS = ROOT / "runs" / "zoo"


def export_model(run: Path, threads: int, runs: int) -> list[dict]:
    """Every recipe on one trained run; a recipe that fails is recorded with its one-line error."""
    from edgecnn.benchmarks.latency import benchmark_model
    from edgecnn.core.config import load_config
    from edgecnn.core.errors import EdgecnnError
    from edgecnn.pipelines.convert import ConvertOptions, convert

    rows = []
    out_dir = run / "formats"
    out_dir.mkdir(exist_ok=True)
    for recipe in sorted(RECIPES.glob("*.yaml")):
        options = load_config(recipe, ConvertOptions)
        row = {"model": run.name, "recipe": recipe.name, "format": options.format, "io": options.io}
        start = time.perf_counter()
        try:
            report = convert(run / "model.keras", out_dir / f"{recipe.stem}.tflite", options)
        except EdgecnnError as exc:
            rows.append({**row, "error": str(exc)})
            print(f"   {recipe.name}: failed: {exc}", flush=True)
            continue
        accuracy = report.accuracy
        bench = benchmark_model(report.output, threads=threads, runs=runs)
        row.update(
            bytes=report.bytes,
            metric=accuracy["metric"],
            images=accuracy["images"],
            keras=accuracy["keras"],
            tflite=accuracy["tflite"],
            delta_points=accuracy["delta_points"],
            p50_ms=bench.latency_ms["p50"],
            threads=threads,
            runtime=bench.runtime,
            convert_seconds=round(time.perf_counter() - start, 1),
        )
        if report.after:
            check = report.after["check"]
            row["edgetpu"] = f"{check['mapped']}/{check['counted']} ops mapped" + (
                f", compiled {Path(report.after['compiled']).name}"
                if report.after.get("compiled")
                else ", not compiled"
            )
        rows.append(row)
        print(
            f"   {recipe.name}: {row['bytes'] / 1024:.0f} KiB, {row['metric']} keras {100 * row['keras']:.2f}% "
            f"tflite {100 * row['tflite']:.2f}% (n={row['images']}), p50 {row['p50_ms']:.3f} ms",
            flush=True,
        )
    return rows


def markdown(results: dict[str, list[dict]]) -> str:
    lines = [
        "| model | recipe | format (I/O) | KiB | metric (n) | Keras | .tflite | delta | p50 ms | Edge TPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, rows in results.items():
        for r in rows:
            if "error" in r:
                lines.append(f"| {model} | {r['recipe']} | {r['format']} | failed: {r['error']} |||||||")
                continue
            lines.append(
                f"| {model} | {r['recipe']} | {r['format']} ({r['io'] or 'default'}) | {r['bytes'] / 1024:.0f} | "
                f"{r['metric']} ({r['images']}) | {100 * r['keras']:.2f}% | {100 * r['tflite']:.2f}% | "
                f"{r['delta_points']:+.2f} | {r['p50_ms']:.3f} | {r.get('edgetpu', '')} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="zoo runs (recipe stems under runs/zoo) to export")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200, help="timed invocations per file")
    args = parser.parse_args()
    runs = sorted(p.parent for p in ZOO_RUNS.glob("*/model.keras"))
    if args.only:
        runs = [r for r in runs if r.name in args.only]
    if not runs:
        raise SystemExit(f"no trained zoo models under {ZOO_RUNS}; run: .venv/bin/python training/zoo.py")
    RESULTS.mkdir(parents=True, exist_ok=True)
    store = RESULTS / "formats.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    for run in runs:
        print(f"== {run.name}", flush=True)
        results[run.name] = export_model(run, args.threads, args.runs)
        store.write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "formats.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
