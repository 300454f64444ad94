"""``edgecnn demo``: open the model and the source, check them, and run the threaded loop. No TensorFlow."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from edgecnn.core.config import FRACTION, Range, opt
from edgecnn.core.fileio import check_output_path
from edgecnn.pipelines.demo.loop import VIDEO_SUFFIXES, LoopOptions, run_demo
from edgecnn.pipelines.options import DELEGATE, DEVICE, PROVIDER, TASK, THREADS
from edgecnn.runtime.open import check_runtime_flags, open_model
from edgecnn.tasks import check_task, get_task
from edgecnn.video.live import parse_address
from edgecnn.video.sources import DEFAULT_RETRIES, open_source


@dataclass(frozen=True)
class DemoOptions:
    model: str = field(metadata=opt("the .tflite or .onnx model to run", required=True))
    source: str = field(
        default="0",
        metadata=opt(
            "camera index, picam or picam:WxH (Raspberry Pi camera), a GStreamer pipeline, video file, image, "
            "folder or glob"
        ),
    )
    loop: bool = field(default=False, metadata=opt("replay a video or image folder forever (kiosk, soak test)"))
    max_retries: int = field(
        default=DEFAULT_RETRIES,
        metadata=opt("reconnect tries with backoff when a camera is lost", range=Range(0)),
    )
    save: str | None = field(default=None, metadata=opt("write the annotated video here (.mp4)"))
    no_display: bool = field(default=False, metadata=opt("no window (headless boards)"))
    max_frames: int | None = field(default=None, metadata=opt("stop after this many frames", range=Range(1)))
    top_k: int = field(default=3, metadata=opt("classify: how many classes drawn", range=Range(1)))
    threshold: float = field(default=0.4, metadata=opt("detect: the lowest score drawn", range=FRACTION))
    task: str | None = field(default=None, metadata=TASK)  # must agree with the model's record
    threads: int | None = field(default=None, metadata=THREADS)
    delegate: str = field(default="xnnpack", metadata=DELEGATE)
    device: str | None = field(default=None, metadata=DEVICE)
    provider: str | None = field(default=None, metadata=PROVIDER)  # an .onnx model's (None: cpu)
    serve: str | None = field(  # loopback unless a host is given
        default=None,
        metadata=opt(
            "live view over HTTP: MJPEG stream, a page and stats (127.0.0.1 unless HOST is given; 0 picks a port)",
            metavar="[HOST:]PORT",
        ),
    )
    verbose: bool = False  # say which runtime and delegate run the model (stderr); set by the common -v


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
