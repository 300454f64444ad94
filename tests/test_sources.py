"""Demo sources: a camera that is unplugged and comes back, one that never does, the Raspberry Pi camera
through a stand-in picamera2 with its API, and --loop. No camera exists here: the devices are fakes
behind the same calls OpenCV and picamera2 answer."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from edgecnn.core.errors import EdgecnnError
from edgecnn.pipelines.demo.loop import LoopOptions, run_demo
from edgecnn.runtime import load_model
from edgecnn.video import sources


class FakeCapture:
    """Stands in for one opened V4L2 device: ``script`` says, per open, how many frames it gives before
    the cable is pulled (None: it does not open)."""

    script: Iterator[int | None]
    opened = 0

    def __init__(self, target: int | str, api: int = 0) -> None:
        FakeCapture.opened += 1
        self.left = next(self.script)

    def is_open(self) -> bool:
        return self.left is not None

    def read(self) -> np.ndarray | None:
        if not self.left:
            return None
        self.left -= 1
        time.sleep(0.002)  # a 500 FPS camera, not an infinitely fast one
        return np.full((48, 64, 3), 100, np.uint8)

    def fps(self) -> float:
        return 30.0

    def close(self) -> None:
        pass


@pytest.fixture()
def camera(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    FakeCapture.opened = 0
    monkeypatch.setattr(sources, "_OpenCvDevice", FakeCapture)
    monkeypatch.setattr(sources, "_sleep", waits.append)
    return waits


def test_a_lost_camera_reconnects_with_backoff(digits_run: Path, camera: list[float]) -> None:
    FakeCapture.script = iter([3, None, 10**6])  # 3 frames, unplugged, first retry fails, the second is back
    source = sources.open_source("0", max_retries=3)
    stats = run_demo(
        load_model(digits_run / "model_int8.tflite"), source, None, LoopOptions(display=False, max_frames=7)
    )
    assert stats.frames == 7 and camera == [0.5, 1.0] and FakeCapture.opened == 3
    assert list(stats.events) == [
        "camera 0 lost; reconnecting in 0.5 s (try 1 of 3)",
        "camera 0 lost; reconnecting in 1 s (try 2 of 3)",
        "camera 0 is back",
    ]
    assert stats.as_dict()["events"] == list(stats.events)


def test_a_camera_that_never_comes_back_ends_the_run_in_one_line(digits_run: Path, camera: list[float]) -> None:
    FakeCapture.script = iter([2, None, None, None])
    source = sources.open_source("0", max_retries=2)
    with pytest.raises(EdgecnnError, match=r"^camera 0 was lost and did not come back after 2 reconnect tries; "):
        run_demo(load_model(digits_run / "model_int8.tflite"), source, None, LoopOptions(display=False))
    assert camera == [0.5, 1.0]


PICAMERA2 = """
import numpy as np

calls = []


class Picamera2:
    def __init__(self, camera_num=0):
        calls.append(("init", camera_num))
        self.size = None

    def create_video_configuration(self, main=None, **kwargs):
        return {"main": dict(main)}

    def configure(self, config):
        calls.append(("configure", config["main"]))
        self.size = config["main"]["size"]

    def start(self):
        calls.append(("start",))

    def capture_array(self, name="main"):
        width, height = self.size
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = 255  # RGB888 is laid out [B, G, R]: blue
        return frame

    def stop(self):
        calls.append(("stop",))

    def close(self):
        calls.append(("close",))
"""


def test_pi_camera_through_picamera2(digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "picamera2.py").write_text(PICAMERA2)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    source = sources.open_source("picam:320x240")
    assert source.live and source.name == "Pi camera 320x240"
    frames: list[np.ndarray] = []
    stats = run_demo(
        load_model(digits_run / "model_int8.tflite"),
        source,
        None,
        LoopOptions(display=False, max_frames=5),
        on_frame=lambda frame, result: frames.append(frame),
    )
    fake = sys.modules["picamera2"]
    assert stats.frames == 5 and frames[0].shape == (240, 320, 3)
    assert fake.calls[:3] == [("init", 0), ("configure", {"size": (320, 240), "format": "RGB888"}), ("start",)]
    assert fake.calls[-2:] == [("stop",), ("close",)]
    assert sources.open_source("picam").name == "Pi camera 640x480"


def test_pi_camera_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EdgecnnError, match=r"^--source picam needs picamera2 \(Raspberry Pi OS: sudo apt install"):
        sources.open_source("picam")
    with pytest.raises(EdgecnnError, match=r"^--source picam:big: the size must be WIDTHxHEIGHT, e.g. picam:1280x720$"):
        sources.open_source("picam:big")
    with pytest.raises(
        EdgecnnError, match=r"^--source picam:8x8: 8x8 is outside 16x16..4056x3040; pick a camera mode$"
    ):
        sources.open_source("picam:8x8")


def test_loop_replays_a_video(digits_run: Path, digits_clip: Path) -> None:
    """The clip has 30 frames; --loop plays on past its end until --max-frames."""
    model = str(digits_run / "model_int8.tflite")
    args = ["demo", "--model", model, "--source", str(digits_clip), "--no-display", "--json"]
    assert json.loads(run_cli(*args).stdout)["frames"] == 30
    result = run_cli(*args, "--loop", "--max-frames", "75")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 75
    bad = run_cli(*args, "--max-retries", "-1")
    assert bad.returncode == 2 and "argument --max-retries: -1 is not allowed; use 0 or more" in bad.stderr
