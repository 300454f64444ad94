"""``edgecnn benchmark``: init time, first inference, latency distribution, FPS, peak memory.

The timed loop is a bare ``interpreter.invoke()`` between two ``perf_counter()`` calls with the
input set once beforehand, as LiteRT's own ``benchmark_model`` does, so the harness adds nothing
measurable (``benchmarks/harness_overhead.py`` checks it).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime.interpreter import TFLiteModel
from edgecnn.runtime.open import open_model


@dataclass
class BenchmarkResult:
    model: str
    runtime: str
    delegate: str
    threads: int | None
    runs: int
    init_ms: float
    first_inference_ms: float
    latency_ms: dict[str, float]
    fps: float
    peak_rss_mb: float
    model_bytes: int
    undelegated_ops: list[str]  # ops the delegate left to the plain kernels (each is a partition boundary)
    pipeline: dict[str, Any] | None = None  # the whole camera loop on a source (benchmark --source)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.pipeline is None:
            out.pop("pipeline")
        return out


def reset_peak_rss() -> None:
    """Reset the kernel's high-water mark (Linux >= 4.0) so each model's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last reset (VmHWM), else since start."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def summarize(times_s: np.ndarray) -> dict[str, float]:
    ms = times_s * 1e3
    pct = np.percentile(ms, [50, 90, 99])
    return {
        "mean": round(float(ms.mean()), 4),
        "std": round(float(ms.std()), 4),
        "min": round(float(ms.min()), 4),
        "p50": round(float(pct[0]), 4),
        "p90": round(float(pct[1]), 4),
        "p99": round(float(pct[2]), 4),
        "max": round(float(ms.max()), 4),
    }


def timed_invokes(invoke: Callable[[], object], runs: int | None, seconds: float | None) -> np.ndarray:
    """Time ``invoke`` ``runs`` times, or for ``seconds`` (at least 10 runs) when runs is None."""
    clock = time.perf_counter
    if runs is not None:
        times = np.empty(runs)
        for i in range(runs):
            t = clock()
            invoke()
            times[i] = clock() - t
        return times
    out: list[float] = []
    deadline = clock() + (seconds or 10.0)
    while clock() < deadline or len(out) < 10:
        t = clock()
        invoke()
        out.append(clock() - t)
    return np.asarray(out)


def benchmark_model(
    path: str | os.PathLike,
    threads: int | None = None,
    delegate: str = "xnnpack",
    device: str | None = None,
    warmup: int = 10,
    runs: int | None = 100,
    seconds: float | None = None,
    provider: str | None = None,
) -> BenchmarkResult:
    if runs is not None and runs < 1:
        raise EdgecnnError(f"--runs must be 1 or more, got {runs}")
    reset_peak_rss()
    model = open_model(path, threads, delegate, device, provider)  # a .tflite (LiteRT) or an .onnx (ONNX Runtime)
    rng = np.random.default_rng(0)
    model.set_input(rng.integers(0, 256, model.input_shape).astype(np.uint8))
    # LiteRT: the bare interpreter call; ONNX Runtime: one session.run (what a bare ONNX Runtime loop times)
    invoke = model.interpreter.invoke if isinstance(model, TFLiteModel) else model.invoke
    t = time.perf_counter()
    invoke()
    first_ms = (time.perf_counter() - t) * 1e3
    for _ in range(warmup):
        invoke()
    times = timed_invokes(invoke, runs, seconds)
    stats = summarize(times)
    return BenchmarkResult(
        model=str(path),
        runtime=f"{model.backend.name} {model.backend.version}",
        delegate=model.delegate,  # an .onnx model's execution provider
        threads=threads,
        runs=len(times),
        init_ms=round(model.init_ms, 3),
        first_inference_ms=round(first_ms, 3),
        latency_ms=stats,
        fps=round(1e3 / stats["mean"], 2),
        peak_rss_mb=round(peak_rss_mb(), 1),
        model_bytes=Path(path).stat().st_size,
        undelegated_ops=model.undelegated_ops() if model.delegate != "none" else [],
    )


def format_undelegated(result: BenchmarkResult) -> str:
    """One line: which ops the delegate left out, counted by type (``benchmark --verbose``)."""
    if result.delegate == "none":
        return f"{Path(result.model).name}: no delegate (--delegate none): every op runs on the plain kernels"
    if not result.undelegated_ops:
        return f"{Path(result.model).name}: the {result.delegate} delegate runs every op"
    counts: dict[str, int] = {}
    for op in result.undelegated_ops:
        counts[op] = counts.get(op, 0) + 1
    ops = ", ".join(f"{op} x{n}" for op, n in counts.items())
    return f"{Path(result.model).name}: outside {result.delegate}: {ops} (plain kernels, between delegate partitions)"


def _engine(result: BenchmarkResult) -> str:
    """What ``delegate`` names: an ONNX Runtime execution provider, or a LiteRT delegate."""
    return "provider" if result.runtime.startswith("onnxruntime") else "delegate"


def format_table(results: list[BenchmarkResult]) -> str:
    """A comparison table, one row per model, with the speed-up against the first model."""
    head = [
        "model",
        "size KiB",
        "init ms",
        "first ms",
        "mean",
        "std",
        "p50",
        "p90",
        "p99",
        "min",
        "max",
        "FPS",
        "RSS MB",
        "vs 1st",
    ]
    rows = []
    base = results[0].latency_ms["p50"] if results else 1.0
    for r in results:
        lat = r.latency_ms
        rows.append(
            [
                Path(r.model).name,
                f"{r.model_bytes / 1024:.1f}",
                f"{r.init_ms:.1f}",
                f"{r.first_inference_ms:.2f}",
                *(f"{lat[k]:.3f}" for k in ("mean", "std", "p50", "p90", "p99", "min", "max")),
                f"{r.fps:.1f}",
                f"{r.peak_rss_mb:.0f}",
                f"{base / lat['p50']:.2f}x",
            ]
        )
    if len({(r.runtime, r.delegate) for r in results}) > 1:  # LiteRT and ONNX Runtime side by side: say which
        head.insert(1, "runtime")
        for row, r in zip(rows, results, strict=True):
            row.insert(1, f"{r.runtime.split()[0]} {r.delegate}")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = lambda cells: "| " + " | ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    first = results[0] if results else None
    runtimes = ", ".join(dict.fromkeys(f"{r.runtime}, {_engine(r)} {r.delegate}" for r in results))
    caption = f"{runtimes}, threads {first.threads or 'default'}, {first.runs} runs; latency in ms" if first else ""
    return "\n".join([caption, fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)])
