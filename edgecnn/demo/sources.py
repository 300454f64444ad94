"""Frame sources: a camera index, a video file, an image file, or a folder / glob of images."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgecnn.data.images import IMAGE_SUFFIXES, list_images
from edgecnn.errors import EdgecnnError


@dataclass
class Source:
    """An opened source. ``live`` sources (cameras) drop stale frames instead of queueing them."""

    name: str
    live: bool
    fps: float
    frames: Iterator[np.ndarray]
    capture: cv2.VideoCapture | None = None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


def _video_frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        yield frame


def _image_frames(paths: list[Path]) -> Iterator[np.ndarray]:
    for path in paths:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            print(f"warning: skipped unreadable image: {path}")
            continue
        yield frame


def open_source(spec: str) -> Source:
    """Open ``spec``; a camera that does not open or a path that does not exist is a user error."""
    if spec.isdigit():
        cap = cv2.VideoCapture(int(spec))
        if not cap.isOpened():
            raise EdgecnnError(
                f"camera {spec} does not open; check that it is connected (ls /dev/video*) "
                "or pass a video or image file with --source"
            )
        return Source(f"camera {spec}", True, cap.get(cv2.CAP_PROP_FPS) or 30.0, _video_frames(cap), cap)
    path = Path(spec)
    if path.is_dir():
        paths = list_images(path)
    elif any(ch in spec for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        paths = [path]
    elif path.is_file():
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise EdgecnnError(f"cannot open video {path}; give a video OpenCV can read (.mp4, .avi) or images")
        return Source(str(path), False, cap.get(cv2.CAP_PROP_FPS) or 30.0, _video_frames(cap), cap)
    else:
        raise EdgecnnError(f"source not found: {spec}; give a camera index (0), a video, an image, or a folder")
    if not paths:
        raise EdgecnnError(f"no images in source {spec}; give a folder or glob with .jpg/.png files")
    return Source(spec, False, 10.0, _image_frames(paths))
