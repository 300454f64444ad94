"""Mixed precision training speed: images/s of edgecnn's train step (the mixed-precision copy, loss scaling,
the TrainStep) under float32, mixed_float16 and mixed_bfloat16, on seeded random images, and the peak
GPU memory of each. The speedup needs a GPU with tensor cores (or a CPU with AMX/AVX512-BF16 for
bfloat16); on other CPUs half precision is emulated and slower, which this script records too.

    .venv/bin/python benchmarks/mixed_precision.py [--arch mobilenet_v2] [--img 224] [--batch 128] [--steps 60]

Each precision trains ``--steps`` steps in a fresh child process (a dtype policy and GPU memory are process-
wide); the first ``--warmup`` steps (tracing, autotuning) are left out. Writes results/mixed_precision.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def measure(arch: str, img: int, batch: int, steps: int, warmup: int, precision: str) -> dict:
    """One precision in this process: images/s over the steps after warmup, peak GPU MiB."""
    import numpy as np

    from edgecnn.archs import create
    from edgecnn.core.graph import training_copy
    from edgecnn.core.keras_env import keras, policy, tf
    from edgecnn.trainer.fit import compile_model
    from edgecnn.trainer.step import trainer

    keras.utils.set_random_seed(0)
    model = create(arch, 10, img, 3)
    trained = training_copy(model, precision)
    with policy(precision):
        step = trainer(trained)
    compile_model(step, 1e-3, steps, 10)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, img, img, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    data = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            times.append(time.perf_counter() - self.start)

    step.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[Clock()])
    timed = sorted(times[warmup:])
    gpus = tf.config.list_logical_devices("GPU")
    peak = sum(tf.config.experimental.get_memory_info(d.name)["peak"] for d in gpus) / 2**20 if gpus else None
    return {
        "precision": precision,
        "images_per_sec": batch / timed[len(timed) // 2],
        "peak_gpu_mib": peak,
        "device": gpus[0].name if gpus else "CPU",
        "loss_scale": type(step.optimizer).__name__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--img", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--child", choices=PRECISIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.arch, args.img, args.batch, args.steps, args.warmup, args.child)))
        return
    rows = []
    for precision in PRECISIONS:
        argv = [sys.executable, __file__, "--child", precision, *sys.argv[1:]]
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    base = rows[0]["images_per_sec"]
    lines = [
        f"{args.arch} {args.img}x{args.img}, batch {args.batch}, median step of {args.steps - args.warmup} "
        f"after {args.warmup} warmup steps, on {rows[0]['device']} ({time.strftime('%Y-%m-%d')})",
        "",
        "| precision | images/s | speedup | peak GPU MiB | optimizer |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        peak = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "n/a"
        lines.append(
            f"| {r['precision']} | {r['images_per_sec']:.0f} | {r['images_per_sec'] / base:.2f}x | {peak} | "
            f"{r['loss_scale']} |"
        )
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mixed_precision.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
