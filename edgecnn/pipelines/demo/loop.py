"""The demo loop: capture, inference and drawing overlap in three threads.

capture thread (read, resize) -> [queue] -> inference thread (invoke) -> [queue] -> main thread
(decode, draw, save, show, keys)

With the stages overlapped the loop runs at about 1 / max(stage time), i.e. near the
inference-bound rate, instead of 1 / (sum of stages) for a sequential loop: the inference thread does
nothing but invoke (the frame is resized in the capture thread, the copied outputs are decoded in the
main thread), so the interpreter is busy as much of the time as the cores allow. Live cameras keep
only the newest frame (no growing latency); files are processed frame by frame, none dropped.

Every frame is timed per stage (:data:`STAGES`): capture, preprocess (resize and colour), invoke,
postprocess (decode, NMS, argmax), draw, write (encode to the saved video), display; and end to end,
from the moment the frame was captured to the moment it was written or shown. The summary gives p50
and p90 of each, so a user sees which stage bounds the frame rate.
"""

from __future__ import annotations

import functools
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import atomic_path
from edgecnn.runtime.image import to_model_pixels
from edgecnn.runtime.interpreter import Outputs, TFLiteModel
from edgecnn.tasks import Task, get_task
from edgecnn.video.live import start_live_view
from edgecnn.video.memory import keep_frame_buffers
from edgecnn.video.overlay import draw_hud, draw_status
from edgecnn.video.sources import Source, SourceStatus

_STOP = object()


SWITCH_INTERVAL_S = 0.0005  # the GIL hand-over bound while the loop runs (Python's default: 0.005)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi")  # containers OpenCV's mp4v writer fills everywhere
STAGES = ("capture", "preprocess", "invoke", "postprocess", "draw", "write", "display")


SAMPLE_CAP = 20_000  # per-frame times kept per stage: every one for 20,000 frames, a uniform sample after
EVENT_CAP = 100  # source events kept (the latest): a flaky camera in a kiosk must not grow the process


class Samples:
    """Per-frame times with flat memory: every value for the first :data:`SAMPLE_CAP` frames, then a
    uniform random sample of that size over all frames (reservoir sampling, Vitter's algorithm R), so
    the percentiles of a run that lasts for days stay those of the whole run. (Lists of every frame's
    times grew the demo by 14 MB over 40,000 frames: ``benchmarks/soak.py``.)"""

    def __init__(self, cap: int = SAMPLE_CAP, seed: int = 0) -> None:
        self._values = np.empty(cap, np.float64)
        self._rng = np.random.default_rng(seed)
        self.count = 0
        self.total = 0.0

    def append(self, value: float) -> None:
        cap = len(self._values)
        if self.count < cap:
            self._values[self.count] = value
        else:
            slot = int(self._rng.integers(0, self.count + 1))
            if slot < cap:
                self._values[slot] = value
        self.count += 1
        self.total += value

    def __len__(self) -> int:
        return self.count

    @property
    def values(self) -> np.ndarray:
        return self._values[: min(self.count, len(self._values))]

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentiles(self) -> dict[str, float]:
        values = self.values
        return {"p50": round(float(np.percentile(values, 50)), 3), "p90": round(float(np.percentile(values, 90)), 3)}


@dataclass
class DemoStats:
    frames: int = 0
    seconds: float = 0.0
    stage_ms: dict[str, Samples] = field(default_factory=lambda: {stage: Samples() for stage in STAGES})
    latency_ms: Samples = field(default_factory=Samples)  # capture -> written or shown, per frame
    events: deque[str] = field(default_factory=lambda: deque(maxlen=EVENT_CAP))  # what the source reported
    jpegs: int | None = None  # live view: frames encoded for viewers (None: not serving)
    last: Any = None  # the last frame's result

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def mean_inference_ms(self) -> float:
        """The invoke stage alone, as ``edgecnn benchmark`` times it."""
        return self.stage_ms["invoke"].mean()

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "mean_inference_ms": round(self.mean_inference_ms, 3),
            "stages_ms": {stage: ms.percentiles() for stage, ms in self.stage_ms.items() if len(ms)},
            "latency_ms": self.latency_ms.percentiles() if len(self.latency_ms) else {},
            **({"events": list(self.events)} if self.events else {}),
            **({"live_jpegs": self.jpegs} if self.jpegs is not None else {}),
        }


def format_stages(data: dict[str, Any]) -> str:
    """The per-stage table of a run (:meth:`DemoStats.as_dict`): p50 and p90 ms of each stage that ran,
    then end to end."""
    rows = [(stage, ms) for stage, ms in data["stages_ms"].items()] + [("end to end", data["latency_ms"])]
    lines = [f"  {'stage':<12s} {'p50 ms':>8s} {'p90 ms':>8s}"]
    lines += [f"  {name:<12s} {ms['p50']:8.2f} {ms['p90']:8.2f}" for name, ms in rows if ms]
    return "\n".join(lines)


@dataclass(frozen=True)
class LoopOptions:
    """How the loop runs and what it draws (the ``demo`` command's settings past the model and source)."""

    save: str | Path | None = None  # write the annotated video here
    display: bool = True  # a window; False on headless boards
    max_frames: int | None = None
    top_k: int = 3  # classify: classes shown
    threshold: float = 0.4  # detect: lowest score drawn
    serve: str | None = None  # PORT or HOST:PORT: the live view (MJPEG stream, page, stats) over HTTP


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


@dataclass
class _Frame:
    """A frame on its way through the loop, with when it was captured and what each stage took."""

    image: np.ndarray
    captured: float  # perf_counter() when the source returned it
    ms: dict[str, float]
    pixels: np.ndarray | None = None  # the model's input, made in the capture thread
    outputs: Outputs | None = None  # the model's outputs, copied in the inference thread
    result: Any = None  # decoded in the main thread


@dataclass(frozen=True)
class _Failure:
    """What a worker thread sends instead of a frame when it fails: the main thread ends the run with it."""

    stage: str
    error: BaseException


def _loudly(stage: str, body: Callable[..., None]) -> Callable[..., None]:
    """Run a worker's body so that any exception reaches the main thread (as a :class:`_Failure`, then the
    end marker) instead of leaving it waiting for frames that never come."""

    def run(*args: Any) -> None:
        out: queue.Queue = args[-2]
        try:
            body(*args)
        except Exception as exc:  # any failure of the worker ends the run; the main thread reports it
            out.put(_Failure(stage, exc))
            out.put(_STOP)

    return run


def _capture(
    source: Source,
    prepare: Callable[[np.ndarray], np.ndarray],
    max_frames: int | None,
    news: queue.Queue,
    out: queue.Queue,
    stop: threading.Event,
) -> None:
    count = 0
    frames = iter(source.frames)
    while not stop.is_set() and (max_frames is None or count < max_frames):
        start = time.perf_counter()
        image = next(frames, None)
        if image is None:
            break
        if isinstance(image, SourceStatus):  # the source's word (camera lost, back): log it, pass it on
            print(f"edgecnn demo: {image.text}", file=sys.stderr)
            _put_waiting(news, image, stop)  # straight to the main thread: never dropped with stale frames
            continue
        now = time.perf_counter()
        pixels = prepare(image)
        item = _Frame(image, now, {"capture": (now - start) * 1e3, "preprocess": (time.perf_counter() - now) * 1e3})
        item.pixels = pixels
        count += 1
        if source.live:
            _put_latest(out, item)
        else:
            _put_waiting(out, item, stop)
    out.put(_STOP)


def _put_waiting(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    """Put, waiting for room, unless the run is stopping (files: no frame is dropped)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _infer(
    model: TFLiteModel, task: Task, options: LoopOptions, inq: queue.Queue, out: queue.Queue, stop: threading.Event
) -> None:
    while not stop.is_set():
        item = inq.get()
        if item is _STOP:
            break
        if isinstance(item, _Failure):  # the capture thread's: pass it on
            out.put(item)
            continue
        model.set_input(item.pixels)
        t0 = time.perf_counter()
        model.invoke()
        item.ms["invoke"] = (time.perf_counter() - t0) * 1e3
        item.outputs = model.snapshot()
        out.put(item)
    out.put(_STOP)


def _preparer(model: TFLiteModel) -> Callable[[np.ndarray], np.ndarray]:
    """Frame -> the model's input pixels (resize and colour), run in the capture thread."""
    size, pixel_format = model.input_hw, model.pixel_format
    return lambda frame: to_model_pixels(frame, size, pixel_format, "bgr", exact=False)


def _live_stats(frames: int, fps: float, item: _Frame, task: Task) -> dict[str, Any]:
    """What the live page shows: the running FPS, this frame's stage times and its result in words."""
    return {
        "frames": frames,
        "fps": round(fps, 2),
        "stages_ms": {stage: round(ms, 3) for stage, ms in item.ms.items()},
        "result": task.describe(item.result),
    }


def _failed(failure: _Failure) -> EdgecnnError:
    error = failure.error
    if isinstance(error, EdgecnnError):  # already the one line a user needs (e.g. a camera that never came back)
        return error
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return EdgecnnError(f"the demo's {failure.stage} failed: {type(error).__name__}: {text}")


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
    # OpenCV's own worker threads (resize, colour, drawing) would compete with the interpreter's for the
    # cores: the loop's threads already overlap the stages, so OpenCV runs each call on its caller's thread.
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    keep_frame_buffers()  # no page faults on every frame-sized buffer (edgecnn.video.memory)
    # A thread that wants the GIL waits up to the switch interval (5 ms by default) while another runs
    # Python code: the inference thread, back from invoke, would sit idle for up to a frame's time.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    stop = threading.Event()
    frames_q: queue.Queue = queue.Queue(maxsize=2)
    results_q: queue.Queue = queue.Queue(maxsize=2)
    workers = [
        # a live source drops frames the loop has no time for: it runs until the loop has shown max_frames
        threading.Thread(
            target=_loudly("capture thread", _capture),
            args=(source, _preparer(model), None if source.live else max_frames, results_q, frames_q, stop),
            daemon=True,
        ),
        threading.Thread(
            target=_loudly("inference thread", _infer),
            args=(model, task, options, frames_q, results_q, stop),
            daemon=True,
        ),
    ]
    stats = DemoStats()
    writer: cv2.VideoWriter | None = None
    live = start_live_view(options.serve, Path(str(model.path)).name) if options.serve else None
    saving = atomic_path(save) if save else None
    tmp_path = saving.__enter__() if saving else None
    start = time.perf_counter()
    error: BaseException | None = None
    try:
        for w in workers:
            w.start()
        fps_window: list[float] = []
        shown: np.ndarray | None = None
        while True:
            item = results_q.get()
            if item is _STOP:
                break
            if isinstance(item, _Failure):
                raise _failed(item)
            if isinstance(item, SourceStatus):
                stats.events.append(item.text)
                if display and shown is not None:  # keep the window alive with the last frame and the news
                    cv2.imshow("edgecnn", draw_status(shown.copy(), item.text))
                    cv2.waitKey(1)
                continue
            t0 = time.perf_counter()
            try:
                item.result = task.read(item.outputs, item.image.shape, options.top_k, options.threshold)
            except Exception as exc:  # a model whose outputs the task cannot read: one line, not a traceback
                raise _failed(_Failure("postprocess", exc)) from exc
            item.ms["postprocess"], t0 = (time.perf_counter() - t0) * 1e3, time.perf_counter()
            fps_window = [t for t in fps_window if t0 - t < 2.0] + [t0]
            fps = (len(fps_window) - 1) / (fps_window[-1] - fps_window[0]) if len(fps_window) > 1 else 0.0
            frame = draw_hud(task.draw(item.image, item.result), fps, item.ms["invoke"])
            if on_frame:
                on_frame(frame, item.result)
            if live is not None:  # the stats in words are made only when a viewer asks for them
                live.publish(frame, functools.partial(_live_stats, stats.frames + 1, fps, item, task))
            t1 = time.perf_counter()
            item.ms["draw"] = (t1 - t0) * 1e3
            if tmp_path is not None:
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp_path), cv2.VideoWriter.fourcc(*"mp4v"), source.fps, (w, h))
                    if not writer.isOpened():
                        raise EdgecnnError(f"OpenCV cannot write video to {save}; use a .mp4 or .avi path")
                writer.write(frame)
                t2 = time.perf_counter()
                item.ms["write"], t1 = (t2 - t1) * 1e3, t2
            quit_key = False
            if display:
                shown = frame
                cv2.imshow("edgecnn", frame)
                quit_key = cv2.waitKey(1) & 0xFF in (ord("q"), 27)
                t2 = time.perf_counter()
                item.ms["display"], t1 = (t2 - t1) * 1e3, t2
            stats.frames += 1
            stats.last = item.result
            stats.latency_ms.append((t1 - item.captured) * 1e3)
            for stage, ms in item.ms.items():
                stats.stage_ms[stage].append(ms)
            if quit_key or (max_frames is not None and stats.frames >= max_frames):
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
        cv2.setNumThreads(cv_threads)
        sys.setswitchinterval(switch_interval)
        if live is not None:
            live.close()
            stats.jpegs = live.encoded
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
