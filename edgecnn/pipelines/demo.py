"""``edgecnn demo``: open the model and the source, check them, and run the threaded loop. No TensorFlow."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from edgecnn.demo.live import parse_address
from edgecnn.demo.pipeline import VIDEO_SUFFIXES, LoopOptions, run_demo
from edgecnn.demo.sources import DEFAULT_RETRIES, open_source
from edgecnn.fileio import check_output_path
from edgecnn.runtime.open import check_runtime_flags, open_model
from edgecnn.tasks import check_task, get_task


@dataclass(frozen=True)
class DemoOptions:
    model: str
    source: str = "0"  # camera index, picam[:WxH], GStreamer pipeline, video, image, folder or glob
    loop: bool = False  # replay a video or image folder forever
    max_retries: int = DEFAULT_RETRIES  # reconnect tries for a lost camera
    save: str | None = None
    no_display: bool = False
    max_frames: int | None = None
    top_k: int = 3
    threshold: float = 0.4
    task: str | None = None  # --task: optional, must agree with the model's record
    threads: int | None = None
    delegate: str = "xnnpack"
    device: str | None = None
    provider: str | None = None  # --provider: an .onnx model's ONNX Runtime execution provider (None: cpu)
    serve: str | None = None  # PORT or HOST:PORT: the live view over HTTP (loopback unless a host is given)
    verbose: bool = False  # say which runtime and delegate run the model (stderr)


def demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo to its end; returns the summary (frames, FPS, inference time, where it saved)."""
    if options.save:
        check_output_path(options.save, "--save", VIDEO_SUFFIXES, inputs=(options.model, options.source))
    if options.serve:
        parse_address(options.serve)  # a bad address fails before the model loads
    check_runtime_flags([options.model], options.delegate, options.provider)
    model = open_model(options.model, options.threads, options.delegate, options.device, options.provider)
    if options.verbose:
        how = f"provider {model.provider}" if hasattr(model, "provider") else f"delegate {options.delegate}"
        print(f"runtime: {model.backend.name} {model.backend.version}, {how}", file=sys.stderr)
    task = get_task(model.info.task if model.info else None)
    check_task(options.task, task.name, str(options.model))
    source = open_source(str(options.source), options.loop, options.max_retries)
    loop = LoopOptions(
        options.save, not options.no_display, options.max_frames, options.top_k, options.threshold, options.serve
    )
    stats = run_demo(model, source, task, loop)
    summary = {"model": str(options.model), "source": source.name, **stats.as_dict()}
    if options.save:
        summary["saved"] = str(options.save)
    return summary
