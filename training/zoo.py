"""Reproduce the README's model-zoo tables: train every recipe in training/*.yaml on its data, convert
to int8, and measure params, MACs, the task's metric (top-1, mAP@0.5, mean IoU) of the float Keras
model and of the int8 .tflite, int8 size and int8 latency.

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
    from edgecnn.core.config import load_train_config
    from edgecnn.insight.profile import profile_model
    from edgecnn.pipelines.convert import ConvertOptions, convert
    from edgecnn.pipelines.evaluate import evaluate
    from edgecnn.pipelines.train import train
    from edgecnn.tasks import task_of_arch
    from edgecnn.trainer.load import load_keras

    config = load_train_config(recipe)
    task = task_of_arch(config.arch)
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
        "task": task.name,
        "metric": task.metric,
        "float": trained.metrics["val_metric"],
        "int8": evaluate(report.output)[task.metric],
        "int8_bytes": report.bytes,
        "int8_p50_ms": bench.latency_ms["p50"],
        "threads": threads,
        "runtime": bench.runtime,
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "date": time.strftime("%Y-%m-%d"),
    }


TITLES = {"top1": "top-1", "map50": "mAP@0.5", "miou": "mean IoU"}


def markdown(rows: list[dict]) -> str:
    """One table per task (their metrics differ)."""
    out = []
    for metric in dict.fromkeys(r.get("metric", "top1") for r in rows):
        title = TITLES.get(metric, metric)
        lines = [
            f"| recipe | arch | input | params | MACs | float {title} | int8 {title} | int8 KiB | int8 p50 ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r.get("metric", "top1") == metric):
            lines.append(
                f"| {r['recipe']} | {r['arch']} | {r['input']} | {r['params'] / 1e6:.3f}M | "
                f"{r['macs'] / 1e6:.1f}M | {100 * r['float']:.2f}% | {100 * r['int8']:.2f}% | "
                f"{r['int8_bytes'] / 1024:.0f} | {r['int8_p50_ms']:.3f} |"
            )
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


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
