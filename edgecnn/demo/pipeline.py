"""The demo loop: capture, inference and drawing overlap in three threads.

capture thread -> [queue] -> inference thread -> [queue] -> main thread (draw, save, show, keys)

With the stages overlapped the loop runs at about 1 / max(stage time), i.e. near the
inference-bound rate, instead of 1 / (sum of stages) for a sequential loop. Live cameras keep
only the newest frame (no growing latency); files are processed frame by frame, none dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.demo.overlay import draw_hud
from edgecnn.demo.sources import Source
from edgecnn.fileio import atomic_path
from edgecnn.runtime.interpreter import TFLiteModel
from edgecnn.tasks import Task, get_task

_STOP = object()


@dataclass
class DemoStats:
    frames: int = 0
    seconds: float = 0.0
    inference_ms: list[float] = field(default_factory=list)
    last: Any = None  # the last frame's result

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def mean_inference_ms(self) -> float:
        return float(np.mean(self.inference_ms)) if self.inference_ms else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "mean_inference_ms": round(self.mean_inference_ms, 3),
        }


@dataclass(frozen=True)
class LoopOptions:
    """How the loop runs and what it draws (the ``demo`` command's settings past the model and source)."""

    save: str | Path | None = None  # write the annotated video here
    display: bool = True  # a window; False on headless boards
    max_frames: int | None = None
    top_k: int = 3  # classify: classes shown
    threshold: float = 0.4  # detect: lowest score drawn


def _put_latest(q: queue.Queue, item: Any) -> None:
    """Put without blocking, dropping the oldest queued item (live sources)."""
    while True:
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass


def _capture(source: Source, out: queue.Queue, stop: threading.Event, max_frames: int | None) -> None:
    count = 0
    for frame in source.frames:
        if stop.is_set() or (max_frames is not None and count >= max_frames):
            break
        count += 1
        if source.live:
            _put_latest(out, frame)
        else:
            while not stop.is_set():
                try:
                    out.put(frame, timeout=0.1)
                    break
                except queue.Full:
                    continue
    out.put(_STOP)


def _infer(
    model: TFLiteModel, task: Task, options: LoopOptions, inq: queue.Queue, out: queue.Queue, stop: threading.Event
) -> None:
    while not stop.is_set():
        frame = inq.get()
        if frame is _STOP:
            break
        start = time.perf_counter()
        result = task.infer(model, frame, options.top_k, options.threshold)
        out.put((frame, result, (time.perf_counter() - start) * 1e3))
    out.put(_STOP)


def run_demo(
    model: TFLiteModel,
    source: Source,
    task: Task | None = None,
    options: LoopOptions = LoopOptions(),
    on_frame: Callable[[np.ndarray, Any], None] | None = None,
) -> DemoStats:
    """Run until the source ends, ``max_frames``, q/ESC in the window, or Ctrl-C; returns the stats.
    ``task`` defaults to the model's own (its metadata)."""
    task = task or get_task(model.info.task if model.info else None)
    save, display, max_frames = options.save, options.display, options.max_frames
    stop = threading.Event()
    frames_q: queue.Queue = queue.Queue(maxsize=2)
    results_q: queue.Queue = queue.Queue(maxsize=2)
    workers = [
        threading.Thread(target=_capture, args=(source, frames_q, stop, max_frames), daemon=True),
        threading.Thread(target=_infer, args=(model, task, options, frames_q, results_q, stop), daemon=True),
    ]
    stats = DemoStats()
    writer: cv2.VideoWriter | None = None
    saving = atomic_path(save) if save else None
    tmp_path = saving.__enter__() if saving else None
    start = time.perf_counter()
    error: BaseException | None = None
    try:
        for w in workers:
            w.start()
        fps_window: list[float] = []
        while True:
            item = results_q.get()
            if item is _STOP:
                break
            frame, result, infer_ms = item
            now = time.perf_counter()
            fps_window = [t for t in fps_window if now - t < 2.0] + [now]
            fps = (len(fps_window) - 1) / (fps_window[-1] - fps_window[0]) if len(fps_window) > 1 else 0.0
            stats.frames += 1
            stats.inference_ms.append(infer_ms)
            stats.last = result
            frame = draw_hud(task.draw(frame, result), fps, infer_ms)
            if on_frame:
                on_frame(frame, result)
            if tmp_path is not None:
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp_path), cv2.VideoWriter_fourcc(*"mp4v"), source.fps, (w, h))
                writer.write(frame)
            if display:
                cv2.imshow("edgecnn", frame)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the demo cleanly; what was saved so far is kept
    except BaseException as exc:
        error = exc
    finally:
        stats.seconds = time.perf_counter() - start
        stop.set()
        for q in (frames_q, results_q):  # unblock workers waiting on a full queue
            while not q.empty():
                q.get_nowait()
        for w in workers:
            w.join(timeout=2.0)
        source.close()
        if writer is not None:
            writer.release()
        if display:
            cv2.destroyAllWindows()
        if saving is not None:
            if error is None and writer is not None:
                saving.__exit__(None, None, None)
            else:
                saving.__exit__(RuntimeError, RuntimeError("demo failed"), None)
    if error is not None:
        raise error
    return stats
