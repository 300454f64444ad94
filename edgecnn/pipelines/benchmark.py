"""``edgecnn benchmark``: latency, FPS and memory of several .tflite models under one set of runtime options.

With ``source`` (a video, camera, image folder) each model also runs the whole demo pipeline, headless,
over ``runs`` frames: the per-stage table beside the invoke-only numbers shows what the camera loop
costs on top of the model, and ``ratio`` is the loop's FPS over the inference-bound FPS (1000 / p50
invoke ms at the same threads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from edgecnn.benchmarks.latency import BenchmarkResult, benchmark_model
from edgecnn.demo.pipeline import LoopOptions, run_demo
from edgecnn.demo.sources import open_source
from edgecnn.runtime.open import check_runtime_flags, open_model, read_model_info
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
    source: str | None = None  # also run the demo pipeline on this video, camera or image folder
    provider: str | None = None  # --provider: the .onnx models' ONNX Runtime execution provider (None: cpu)


def benchmark(models: list[str | os.PathLike], options: BenchmarkOptions) -> list[BenchmarkResult]:
    """One result per model (.tflite and .onnx alike); a model of the wrong task fails before any timing."""
    check_runtime_flags(models, options.delegate, options.provider)
    if options.task:
        for path in models:
            info = read_model_info(path)
            check_task(options.task, info.task if info else "classify", str(path))
    if options.source:
        open_source(options.source).close()  # a source that does not open fails before any timing
    results = []
    for path in models:
        result = benchmark_model(
            path,
            threads=options.threads,
            delegate=options.delegate,
            device=options.device,
            warmup=options.warmup,
            runs=None if options.seconds else options.runs,
            seconds=options.seconds,
            provider=options.provider,
        )
        if options.source:
            result.pipeline = pipeline_stats(path, result, options)
        results.append(result)
    return results


def pipeline_stats(path: str | os.PathLike, invoke_only: BenchmarkResult, options: BenchmarkOptions) -> dict:
    """The demo loop on ``options.source`` (headless, ``runs`` frames) and its ratio to the inference bound."""
    model = open_model(path, options.threads, options.delegate, options.device, options.provider)
    stats = run_demo(model, open_source(options.source), None, LoopOptions(display=False, max_frames=options.runs))
    bound = 1e3 / invoke_only.latency_ms["p50"]
    return {
        "source": options.source,
        **stats.as_dict(),
        "inference_bound_fps": round(bound, 2),
        "ratio": round(stats.fps / bound, 3),
    }
