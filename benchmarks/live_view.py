"""The live view's cost to the demo loop: FPS with --serve and no viewer against FPS with two slow viewers
(each takes a frame from the MJPEG stream every 0.2 s), in alternating rounds, median of each.
Target: two slow viewers lower the loop's FPS by at most 5%.

    .venv/bin/python benchmarks/live_view.py [--rounds 5] [--frames 300]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=600)
    args = parser.parse_args()
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
