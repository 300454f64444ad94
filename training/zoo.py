"""Reproduce the README's model-zoo table: train every recipe in training/*.yaml on its data, convert
to int8, and measure params, MACs, float and int8 accuracy, int8 size and int8 latency.

    .venv/bin/python training/zoo.py [--only lenet5_digits ...] [--threads 2]

Results go to training/results/zoo.json (merged per recipe, so recipes can be re-run one at a time)
and training/results/zoo.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "training" / "results"


def run_recipe(recipe: Path, threads: int) -> dict:
    from edgecnn.benchmarks.latency import benchmark_model
    from edgecnn.config import load_train_config
    from edgecnn.convert.tflite import ConvertOptions, convert
    from edgecnn.evaluate import evaluate
    from edgecnn.profile import profile_model
    from edgecnn.training.fit import train
    from edgecnn.training.keras_io import load_keras

    config = load_train_config(recipe)
    config.out = str(ROOT / "runs" / "zoo" / recipe.stem)
    start = time.perf_counter()
    trained = train(config, verbose=2)
    report = convert(trained.model_path, None, ConvertOptions(format="int8"))
    model, _ = load_keras(trained.model_path)
    profile = profile_model(model)
    bench = benchmark_model(report.output, threads=threads, runs=200)
    return {
        "recipe": recipe.name,
        "arch": config.arch,
        "options": config.arch_options,
        "input": f"{config.img}x{config.img}x{int(model.input_shape[-1])}",
        "epochs": config.epochs,
        "params": profile.total_params,
        "macs": profile.total_macs,
        "float_top1": trained.metrics["val_top1"],
        "int8_top1": evaluate(report.output)["top1"],
        "int8_bytes": report.bytes,
        "int8_p50_ms": bench.latency_ms["p50"],
        "threads": threads,
        "runtime": bench.runtime,
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "date": time.strftime("%Y-%m-%d"),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| recipe | arch | input | params | MACs | float top-1 | int8 top-1 | int8 KiB | int8 p50 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['arch']} | {r['input']} | {r['params'] / 1e6:.3f}M | "
            f"{r['macs'] / 1e6:.1f}M | {100 * r['float_top1']:.2f}% | {100 * r['int8_top1']:.2f}% | "
            f"{r['int8_bytes'] / 1024:.0f} | {r['int8_p50_ms']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="recipe names (file stems) to run")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    store = RESULTS / "zoo.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    recipes = sorted((ROOT / "training").glob("*.yaml"))
    for recipe in recipes:
        if args.only and recipe.stem not in args.only:
            continue
        print(f"== {recipe.name}", flush=True)
        results[recipe.stem] = run_recipe(recipe, args.threads)
        store.write_text(json.dumps(results, indent=1) + "\n")
    rows = [results[r.stem] for r in recipes if r.stem in results]
    (RESULTS / "zoo.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
