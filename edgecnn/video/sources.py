"""Frame sources: a camera (V4L2 index, Raspberry Pi camera module, GStreamer pipeline), a video file, an
image file, or a folder / glob of images. Frames are BGR uint8, as OpenCV gives them.

* ``0``, ``1``: a V4L2 camera through OpenCV (USB webcams).
* ``picam`` or ``picam:1280x720``: the Raspberry Pi camera module through picamera2 (libcamera), which
  current Raspberry Pi OS uses and OpenCV cannot open by index. Frames are asked for as picamera2's
  ``RGB888``, which is laid out [B, G, R]: OpenCV's order, no conversion.
* a string with ``!`` in it: a GStreamer pipeline ending in ``appsink``, where OpenCV has GStreamer.

Live sources (cameras) reconnect: when a read fails they say so (``SourceStatus`` items reach the HUD
and the log), retry with exponential backoff and resume; after ``max_retries`` failed attempts the run
ends with one line. ``loop`` replays a video or an image folder forever (kiosks, soak tests).
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import itertools
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.data.images import IMAGE_SUFFIXES, list_images

BACKOFF_S = (0.5, 1.0, 2.0, 4.0)  # waits before retries 1, 2, 3, 4; later retries wait the last
DEFAULT_RETRIES = 5
PICAM_SIZE = (640, 480)
_sleep = time.sleep  # tests replace it


class SourceStatus(NamedTuple):
    """Not a frame: what a live source wants the user to know (shown on the HUD, printed to stderr)."""

    text: str


Item = np.ndarray | SourceStatus


@dataclass
class Source:
    """An opened source. ``live`` sources (cameras) drop stale frames instead of queueing them."""

    name: str
    live: bool
    fps: float
    frames: Iterator[Item]
    closer: Callable[[], None] | None = None

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


class Camera:
    """A device that opens, reads frames and closes: an OpenCV capture or picamera2 behind one face."""

    def __init__(self, name: str, open_device: Callable[[], Any]) -> None:
        self.name = name
        self._open = open_device
        self.device: Any = None

    def open(self) -> bool:
        self.close()
        try:
            self.device = self._open()
        except Exception:  # a missing or busy device raises in some stacks instead of reporting not-opened
            self.device = None
        return self.device is not None and self.device.is_open()

    def read(self) -> np.ndarray | None:
        try:
            return self.device.read() if self.device is not None else None
        except Exception:  # an unplugged device raises in picamera2 and returns (False, None) in OpenCV
            return None

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None


class _OpenCvDevice:
    def __init__(self, target: int | str, api: int = cv2.CAP_ANY) -> None:
        self.cap = cv2.VideoCapture(target, api)

    def is_open(self) -> bool:
        return bool(self.cap.isOpened())

    def read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        return frame if ok else None

    def fps(self) -> float:
        return float(self.cap.get(cv2.CAP_PROP_FPS) or 30.0)

    def close(self) -> None:
        self.cap.release()


class _PicameraDevice:
    """picamera2's ``Picamera2`` (imported when the source is opened: it exists on a Raspberry Pi only)."""

    def __init__(self, size: tuple[int, int], camera_num: int = 0) -> None:
        picamera2 = importlib.import_module("picamera2")
        self.camera = picamera2.Picamera2(camera_num=camera_num)
        config = self.camera.create_video_configuration(main={"size": size, "format": "RGB888"})
        self.camera.configure(config)
        self.camera.start()

    def is_open(self) -> bool:
        return True

    def read(self) -> np.ndarray | None:
        frame = self.camera.capture_array("main")
        return np.ascontiguousarray(frame[:, :, :3]) if frame is not None else None

    def fps(self) -> float:
        return 30.0

    def close(self) -> None:
        self.camera.stop()
        self.camera.close()


def _live_frames(camera: Camera, max_retries: int) -> Iterator[Item]:
    """Frames from ``camera``; when a read fails, reconnect with backoff (status items tell the user)."""
    while True:
        frame = camera.read()
        if frame is not None:
            yield frame
            continue
        for attempt in range(1, max_retries + 1):
            wait = BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1]
            yield SourceStatus(f"{camera.name} lost; reconnecting in {wait:g} s (try {attempt} of {max_retries})")
            _sleep(wait)
            if camera.open() and (frame := camera.read()) is not None:
                yield SourceStatus(f"{camera.name} is back")
                yield frame
                break
        else:
            raise EdgecnnError(
                f"{camera.name} was lost and did not come back after {max_retries} reconnect tries; check its "
                "cable or power and run again (--max-retries sets the tries)"
            )


def _video_frames(path: Path, loop: bool) -> tuple[Iterator[Item], Callable[[], None], float]:
    device = _OpenCvDevice(str(path))
    if not device.is_open():
        raise EdgecnnError(f"cannot open video {path}; give a video OpenCV can read (.mp4, .avi) or images")
    holder = [device]

    def frames() -> Iterator[Item]:
        while True:
            played = 0
            while (frame := holder[0].read()) is not None:
                played += 1
                yield frame
            if not loop or not played:
                return
            holder[0].close()
            holder[0] = _OpenCvDevice(str(path))  # reopen: seeking back is unreliable for some codecs

    return frames(), lambda: holder[0].close(), device.fps()


def _image_frames(paths: list[Path], loop: bool) -> Iterator[Item]:
    for path in itertools.cycle(paths) if loop else paths:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            print(f"warning: skipped unreadable image: {path}", file=sys.stderr)
            continue
        yield frame


def _picam_size(spec: str) -> tuple[int, int]:
    if spec == "picam":
        return PICAM_SIZE
    size = spec.removeprefix("picam:")
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise EdgecnnError(f"--source {spec}: the size must be WIDTHxHEIGHT, e.g. picam:1280x720") from None
    if not (16 <= width <= 4056 and 16 <= height <= 3040):
        raise EdgecnnError(f"--source {spec}: {width}x{height} is outside 16x16..4056x3040; pick a camera mode")
    return width, height


def _camera_source(name: str, open_device: Callable[[], Any], max_retries: int, hint: str) -> Source:
    camera = Camera(name, open_device)
    if not camera.open():
        raise EdgecnnError(f"{name} does not open; {hint}")
    return Source(name, True, camera.device.fps(), _live_frames(camera, max_retries), camera.close)


def open_source(spec: str, loop: bool = False, max_retries: int = DEFAULT_RETRIES) -> Source:
    """Open ``spec``; a camera that does not open or a path that does not exist is a user error."""
    if max_retries < 0:
        raise EdgecnnError(f"--max-retries must be 0 or more, got {max_retries}")
    if spec.isdigit():
        return _camera_source(
            f"camera {spec}",
            lambda: _OpenCvDevice(int(spec)),
            max_retries,
            "check that it is connected (ls /dev/video*), or use --source picam for the Raspberry Pi camera "
            "module, or pass a video or image file",
        )
    if spec == "picam" or spec.startswith("picam:"):
        size = _picam_size(spec)
        if importlib.util.find_spec("picamera2") is None:
            raise EdgecnnError(
                "--source picam needs picamera2 (Raspberry Pi OS: sudo apt install python3-picamera2, and create "
                "the venv with --system-site-packages); a USB camera opens with --source 0"
            )
        return _camera_source(
            f"Pi camera {size[0]}x{size[1]}",
            lambda: _PicameraDevice(size),
            max_retries,
            "check the ribbon cable and that 'rpicam-hello --list-cameras' lists it",
        )
    if "!" in spec:
        if not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
            raise EdgecnnError(
                "this OpenCV has no GStreamer support for a pipeline --source; install Debian's python3-opencv "
                "(built with GStreamer) or use a camera index or file"
            )
        return _camera_source(
            "GStreamer pipeline",
            lambda: _OpenCvDevice(spec, cv2.CAP_GSTREAMER),
            max_retries,
            "check the pipeline with gst-launch-1.0 (it must end in appsink)",
        )
    path = Path(spec)
    if path.is_dir():
        paths = list_images(path)
    elif any(ch in spec for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        paths = [path]
    elif path.is_file():
        frames, closer, fps = _video_frames(path, loop)
        return Source(str(path), False, fps, frames, closer)
    else:
        raise EdgecnnError(f"source not found: {spec}; give a camera index (0), picam, a video, an image, or a folder")
    if not paths:
        raise EdgecnnError(f"no images in source {spec}; give a folder or glob with .jpg/.png files")
    return Source(spec, False, 10.0, _image_frames(paths, loop))
