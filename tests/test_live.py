"""The live view: a real HTTP client reads the page, the stats, single frames and the MJPEG stream of a
running demo on loopback; slow viewers make the loop encode nothing extra and never make it wait."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli

from edgecnn.core.errors import EdgecnnError
from edgecnn.pipelines.demo.loop import LoopOptions, run_demo
from edgecnn.runtime import load_model
from edgecnn.video.live import BOUNDARY, LiveView, parse_address
from edgecnn.video.sources import open_source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def read_mjpeg_frames_lazily(url: str, pause: float = 0.0) -> Iterator[np.ndarray]:
    """The JPEG parts of a multipart stream, parsed as a browser does, pausing after each."""
    with urllib.request.urlopen(url, timeout=10) as stream:
        assert stream.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        while True:
            assert stream.readline().strip() == f"--{BOUNDARY}".encode()
            headers = {}
            while (line := stream.readline().strip()) != b"":
                key, _, value = line.decode().partition(": ")
                headers[key] = value
            assert headers["Content-Type"] == "image/jpeg"
            frame = cv2.imdecode(np.frombuffer(stream.read(int(headers["Content-Length"])), np.uint8), 1)
            stream.readline()
            yield frame
            time.sleep(pause)


def read_mjpeg_frames(url: str, count: int, pause: float = 0.0) -> list[np.ndarray]:
    """The first ``count`` JPEG parts of a multipart stream, pausing between them."""
    frames = []
    for frame in read_mjpeg_frames_lazily(url, pause):
        frames.append(frame)
        if len(frames) == count:
            break
    return frames


def start_demo(
    model_path: Path, clip: Path, port: int, frames: int, wrap: Callable = lambda model: model
) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        source = open_source(str(clip), loop=True)
        options = LoopOptions(display=False, max_frames=frames, serve=f"127.0.0.1:{port}")
        out["stats"] = run_demo(wrap(load_model(model_path)), source, None, options)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the server answers
        try:
            if json.loads(get(f"http://127.0.0.1:{port}/stats.json"))["frames"] > 0:
                break
        except OSError:
            time.sleep(0.05)
    return thread, out


def test_a_real_client_sees_the_page_stats_and_stream(digits_run: Path, digits_clip: Path) -> None:
    port = free_port()
    thread, out = start_demo(digits_run / "model_int8.tflite", digits_clip, port, 3000)
    base = f"http://127.0.0.1:{port}"
    page = get(base + "/").decode()
    assert '<img id="stream" src="/stream.mjpg"' in page and "model_int8.tflite" in page
    stats = json.loads(get(base + "/stats.json"))
    assert stats["frames"] > 0 and stats["fps"] >= 0
    assert {"capture", "preprocess", "invoke", "postprocess"} <= set(stats["stages_ms"])
    assert len(stats["result"]) == 3 and stats["result"][0].split()[0] in [str(d) for d in range(10)]
    frames = read_mjpeg_frames(base + "/stream.mjpg", 3)
    assert [f.shape for f in frames] == [(256, 256, 3)] * 3
    single = cv2.imdecode(np.frombuffer(get(base + "/frame.jpg"), np.uint8), 1)
    assert single.shape == (256, 256, 3)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        get(base + "/nothing")
    thread.join(60)
    assert out["stats"].frames == 3000


def test_slow_viewers_cost_the_loop_nothing(digits_run: Path, digits_clip: Path, monkeypatch) -> None:
    """Two viewers taking a frame every 0.2 s and one that stopped reading: the loop publishes all its frames
    (a viewer that never reads cannot hold it up), never encodes a JPEG itself, and JPEGs are made only for
    the frames the streams send. (What the viewers cost the loop's FPS is measured in benchmarks/live_view.py.)"""
    view = LiveView(("127.0.0.1", 0), "test")
    encoders: list[str] = []
    imencode = cv2.imencode

    def recorded(*args: object, **kwargs: object) -> object:
        encoders.append(threading.current_thread().name)
        return imencode(*args, **kwargs)

    monkeypatch.setattr(cv2, "imencode", recorded)
    got: list[int] = []
    viewers = [
        threading.Thread(target=lambda: got.append(len(read_mjpeg_frames(f"{view.url}stream.mjpg", 5, 0.2))))
        for _ in range(2)
    ]
    for viewer in viewers:
        viewer.start()
    stalled = socket.create_connection((view.host, view.port))  # asks for the stream, then never reads
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    published: list[int] = []

    def loop() -> None:
        frame = np.zeros((480, 640, 3), np.uint8)
        for i in range(600):  # paced at about 300 FPS, so the slow viewers see several frames
            frame = frame.copy()
            frame[0, 0] = i % 256
            view.publish(frame, lambda i=i: {"frames": i})
            published.append(i)
            time.sleep(1 / 300)

    publisher = threading.Thread(target=loop, name="demo-loop")
    publisher.start()
    publisher.join(120)  # a hang detector, not a speed limit
    for viewer in viewers:
        viewer.join(30)
    stalled.close()
    view.close()
    assert not publisher.is_alive() and len(published) == 600  # every frame published, none waited on a viewer
    assert got == [5, 5]
    assert encoders and "demo-loop" not in encoders  # JPEGs are made in the viewers' threads, never in the loop's
    # JPEGs only for the frames the streams send (frames in between are skipped), not one per published frame
    assert 1 <= view.encoded == len(encoders) < len(published), (view.encoded, len(published))


class Paced:
    """A model whose invoke takes at least 4 ms more: the loop is then inference-bound at under 250 FPS on any
    machine, so a loop that waited for its viewers, or encoded for each of them, would show in its FPS."""

    def __init__(self, model: object) -> None:
        self._model = model

    def invoke(self) -> None:
        self._model.invoke()
        time.sleep(0.004)

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)


BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def headless(url: str, *flags: str) -> str:
    """Run the browser headless on ``url`` for 3 s of page time (scripts run, the stream plays)."""
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000", *flags, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.mark.skipif(BROWSER is None, reason="no headless browser here (Debian: apt install chromium)")
def test_a_headless_browser_shows_a_frame_and_the_stats(digits_run: Path, tmp_path: Path) -> None:
    """Chromium opens the page of a running demo: its screenshot holds the demo's frame (found by template
    matching against /frame.jpg) and the page's stats show frames, FPS, stage times and the top class."""
    from edgecnn.data import load_split

    still = tmp_path / "still"
    still.mkdir()
    digit = load_split("digits", "classify", 32, None, 0, 0.2).val.x[0, :, :, 0]
    cv2.imwrite(str(still / "digit.png"), cv2.resize(digit, (256, 256), interpolation=cv2.INTER_NEAREST))
    port = free_port()
    thread, out = start_demo(digits_run / "model_int8.tflite", still, port, 2500, wrap=Paced)  # >= 10 s of frames
    base = f"http://127.0.0.1:{port}/"
    frame = cv2.imdecode(np.frombuffer(get(base + "frame.jpg"), np.uint8), 1)
    shot = tmp_path / "page.png"
    headless(base, "--hide-scrollbars", "--window-size=800,600", f"--screenshot={shot}")
    dom = headless(base, "--dump-dom")
    thread.join(60)
    page = cv2.imread(str(shot))
    assert page.shape == (600, 800, 3) and frame.shape == (256, 256, 3)
    match = cv2.matchTemplate(page, frame, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(match)
    assert best > 0.9 and y > 30, (best, x, y)  # the frame as sent (the HUD's FPS digits differ), below the title
    stats = re.search(r'<pre id="stats">(.*?)</pre>', dom, re.S).group(1).splitlines()
    assert re.fullmatch(r"\d+ frames  \d+\.\d FPS", stats[0]), stats
    assert re.search(r"invoke \d+\.\d\d ms", stats[1]), stats
    assert stats[2].split()[0] in [str(d) for d in range(10)], stats
    assert out["stats"].frames == 2500


def test_two_slow_viewers_get_frames_while_the_loop_runs_every_frame(digits_run: Path, digits_clip: Path) -> None:
    """The loop at a fixed inference pace with two viewers that take a frame every 0.2 s: the demo runs all
    its frames, each viewer receives frames, and the viewers get fewer frames than the loop ran (frames in
    between are skipped, not served inline: a loop that waited for its viewers would hand each one every
    frame). The FPS cost of viewers is measured, not asserted: benchmarks/live_view.py."""
    port = free_port()
    thread, out = start_demo(digits_run / "model_int8.tflite", digits_clip, port, 300, wrap=Paced)
    received: list[list[int]] = [[], []]

    def view(count: list[int]) -> None:
        """Count the frames read while the demo runs (the socket may hold more, sent before it ended)."""
        try:
            for _ in read_mjpeg_frames_lazily(f"http://127.0.0.1:{port}/stream.mjpg", pause=0.2):
                if not thread.is_alive():
                    break
                count.append(1)
        except (OSError, AssertionError):  # the demo ended and closed the stream
            pass

    readers = [threading.Thread(target=view, args=(count,)) for count in received]
    for reader in readers:
        reader.start()
    thread.join(60)
    for reader in readers:
        reader.join(10)
    stats = out["stats"]
    assert stats.frames == 300
    delivered = [len(count) for count in received]
    assert all(1 <= n < 300 for n in delivered), delivered
    assert 1 <= stats.jpegs < stats.frames, stats.jpegs  # JPEGs for the frames the streams sent, not for every frame


def test_serve_addresses_and_the_cli(digits_run: Path, digits_clip: Path) -> None:
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    with pytest.raises(EdgecnnError, match=r"^--serve http: give PORT or HOST:PORT, e.g. --serve 8080"):
        parse_address("http")
    model = str(digits_run / "model_int8.tflite")
    result = run_cli("demo", "--model", model, "--source", str(digits_clip), "--no-display", "--serve", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert "edgecnn demo: live view at http://127.0.0.1:" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == 30 and summary["live_jpegs"] == 0  # nobody watched: nothing encoded
    bad = run_cli("demo", "--model", model, "--source", str(digits_clip), "--no-display", "--serve", "99999")
    assert bad.returncode == 2 and "port 99999 is outside 0..65535" in bad.stderr
