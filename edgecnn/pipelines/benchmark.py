"""``edgecnn benchmark``: latency, FPS and memory of several .tflite models under one set of runtime options.

With ``source`` (a video, camera, image folder) each model also runs the whole demo pipeline, headless,
over ``runs`` frames: the per-stage table beside the invoke-only numbers shows what the camera loop
costs on top of the model, and ``ratio`` is the loop's FPS over the inference-bound FPS (1000 / p50
invoke ms at the same threads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from edgecnn.benchmarks.latency import BenchmarkResult, benchmark_model
from edgecnn.core.config import POSITIVE, Range, opt
from edgecnn.pipelines.demo.loop import LoopOptions, run_demo
from edgecnn.pipelines.options import DELEGATE, DEVICE, PROVIDER, TASK, THREADS
from edgecnn.runtime.open import check_runtime_flags, open_model, read_model_info
from edgecnn.tasks import check_task
from edgecnn.video.sources import open_source


@dataclass(frozen=True)
class BenchmarkOptions:
    warmup: int = field(default=10, metadata=opt("untimed runs first", range=Range(0)))
    runs: int = field(default=100, metadata=opt("timed runs", range=Range(1)))
    seconds: float | None = field(default=None, metadata=opt("time budget instead of --runs", range=POSITIVE))
    task: str | None = field(default=None, metadata=TASK)  # must agree with every model's record
    threads: int | None = field(default=None, metadata=THREADS)
    delegate: str = field(default="xnnpack", metadata=DELEGATE)
    device: str | None = field(default=None, metadata=DEVICE)
    source: str | None = field(  # also run the demo pipeline on this video, camera or image folder
        default=None,
        metadata=opt(
            "also run the whole demo pipeline (headless) on this video, camera or image folder for --runs "
            "frames: per-stage times beside the invoke-only numbers"
        ),
    )
    provider: str | None = field(default=None, metadata=PROVIDER)  # the .onnx models' (None: cpu)


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
