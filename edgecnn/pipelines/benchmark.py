"""``edgecnn benchmark``: latency, FPS and memory of several .tflite models under one set of runtime options."""

from __future__ import annotations

import os
from dataclasses import dataclass

from edgecnn.benchmarks.latency import BenchmarkResult, benchmark_model
from edgecnn.metadata import read_tflite_info
from edgecnn.tasks import check_task


@dataclass(frozen=True)
class BenchmarkOptions:
    warmup: int = 10
    runs: int = 100
    seconds: float | None = None  # a time budget instead of ``runs``
    task: str | None = None  # --task: optional, must agree with every model's record
    threads: int | None = None
    delegate: str = "xnnpack"
    device: str | None = None


def benchmark(models: list[str | os.PathLike], options: BenchmarkOptions) -> list[BenchmarkResult]:
    """One result per model; a model of the wrong task fails before any timing."""
    if options.task:
        for path in models:
            info = read_tflite_info(path) if str(path).endswith(".tflite") else None
            check_task(options.task, info.task if info else "classify", str(path))
    return [
        benchmark_model(
            path,
            threads=options.threads,
            delegate=options.delegate,
            device=options.device,
            warmup=options.warmup,
            runs=None if options.seconds else options.runs,
            seconds=options.seconds,
        )
        for path in models
    ]
