"""The live view's cost to the demo loop: FPS with --serve and no viewer against FPS with two slow viewers
(each takes a frame from the MJPEG stream every 0.2 s), in alternating rounds, median of each.
Target: two slow viewers lower the loop's FPS by at most 5%.

``--publish`` measures instead, in one process, what handing frames to the live view costs a loop running at
about 300 FPS while two viewers take a frame every 0.2 s: the share of the loop's time spent in ``publish``
(target: under 1%) and the JPEGs encoded per second (at most STREAM_FPS a stream: not one per frame).
tests/test_live.py checks the behaviour (the loop never waits, never encodes); the speeds are measured here.

    .venv/bin/python benchmarks/live_view.py [--rounds 5] [--frames 300]
    .venv/bin/python benchmarks/live_view.py --publish
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from common import ROOT, int8_model, video_640x480


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slow_viewer(url: str, stop: threading.Event) -> None:
    """Read the stream, one frame every 0.2 s, until told to stop or the server goes away."""
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as stream:
                while not stop.is_set():
                    while stream.readline().strip() != b"":  # boundary and part headers
                        pass
                    stream.read(1)  # a byte of the frame; the rest waits in the socket
                    time.sleep(0.2)
        except OSError:
            time.sleep(0.05)  # not serving yet, or already gone


def run(model: str, clip: str, frames: int, viewers: int) -> tuple[float, int]:
    port = free_port()
    stop = threading.Event()
    threads = [
        threading.Thread(target=slow_viewer, args=(f"http://127.0.0.1:{port}/stream.mjpg", stop), daemon=True)
        for _ in range(viewers)
    ]
    for thread in threads:
        thread.start()
    command = [
        sys.executable, "-m", "edgecnn", "demo", "--model", model, "--source", clip, "--loop", "--no-display",
        "--max-frames", str(frames), "--threads", "1", "--serve", f"127.0.0.1:{port}", "--json",
    ]  # fmt: skip
    summary = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    stop.set()
    assert (summary["live_jpegs"] > 0) == (viewers > 0), summary  # the viewers really watched
    return summary["fps"], summary["live_jpegs"]


def publish_cost(frames: int = 600, rate: float = 300.0) -> dict:
    """The in-process loop of tests/test_live.py, timed: publish's share of the loop and JPEGs per second."""
    import numpy as np

    from edgecnn.video.live import STREAM_FPS, LiveView

    view = LiveView(("127.0.0.1", 0), "benchmark")
    stop = threading.Event()
    viewers = [
        threading.Thread(target=slow_viewer, args=(f"{view.url}stream.mjpg", stop), daemon=True) for _ in range(2)
    ]
    for viewer in viewers:
        viewer.start()
    time.sleep(0.5)  # let the viewers connect
    frame = np.zeros((480, 640, 3), np.uint8)
    published = 0.0
    start = time.perf_counter()
    for i in range(frames):
        frame = frame.copy()
        frame[0, 0] = i % 256
        t = time.perf_counter()
        view.publish(frame, lambda i=i: {"frames": i})
        published += time.perf_counter() - t
        time.sleep(1 / rate)
    seconds = time.perf_counter() - start
    stop.set()
    view.close()
    return {
        "frames": frames,
        "loop_seconds": round(seconds, 3),
        "publish_share": round(published / seconds, 5),
        "jpegs": view.encoded,
        "jpegs_per_second": round(view.encoded / seconds, 1),
        "cap_per_second": 2 * STREAM_FPS,
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--publish", action="store_true", help="measure publish's cost in-process instead")
    args = parser.parse_args()
    if args.publish:
        record = publish_cost(args.frames)
        (ROOT / "benchmarks" / "results" / "live_view_publish.json").write_text(json.dumps(record, indent=1) + "\n")
        print(
            f"publish: {100 * record['publish_share']:.3f}% of the loop (target < 1%); "
            f"{record['jpegs_per_second']} JPEGs/s for two viewers (cap {record['cap_per_second']}/s)"
        )
        return
    model, clip = str(int8_model("mobilenet_v2", 1000)), str(video_640x480())
    fps: dict[int, list[float]] = {0: [], 2: []}
    jpegs: list[int] = []
    for _ in range(args.rounds):
        for viewers in (0, 2):
            rate, encoded = run(model, clip, args.frames, viewers)
            fps[viewers].append(rate)
            jpegs += [encoded] if viewers else []
            print(f"{viewers} viewers: {rate:.1f} FPS, {encoded} JPEGs encoded", flush=True)
    alone, watched = statistics.median(fps[0]), statistics.median(fps[2])
    record = {
        "model": "mobilenet_v2 224 int8, 1 thread, 640x480 video",
        "rounds": args.rounds,
        "frames": args.frames,
        "fps_no_viewer": fps[0],
        "fps_two_slow_viewers": fps[2],
        "median_no_viewer": alone,
        "median_two_slow_viewers": watched,
        "ratio": round(watched / alone, 3),
        "jpegs_encoded_with_viewers": jpegs,
        "date": time.strftime("%Y-%m-%d"),
    }
    (ROOT / "benchmarks" / "results" / "live_view.json").write_text(json.dumps(record, indent=1) + "\n")
    print(
        f"median FPS: {alone:.1f} alone, {watched:.1f} with two slow viewers: {watched / alone:.3f}x (target >= 0.95)"
    )


if __name__ == "__main__":
    main()
