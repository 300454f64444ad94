"""Soak: the demo for 10,000+ frames per task, saving the video, and again with the live view and a viewer.

Each run is ``edgecnn demo --model M --source clip.mp4 --loop --max-frames N --no-display`` in a child
process (the int8 MobileNetV2-based model of each task, a 640x480 clip replayed), once with ``--save`` and
once with ``--serve`` while a viewer reads the MJPEG stream the whole time. The child's resident memory
is sampled every 0.5 s from /proc. Growth is the median RSS of the last tenth of the samples against
the median of the second tenth (the first tenth is start-up: model load, first allocations). Target:
growth under 5%, every run ends on its own with exit code 0 and N frames (a dead worker thread would
hang the loop; the run's timeout would catch it).

    .venv/bin/python benchmarks/soak.py [--frames 10000] [--tasks classify detect segment]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import ROOT, int8_model, video_640x480

MODELS = {
    "classify": ("mobilenet_v2", 1000),
    "detect": ("ssdlite_mobilenet_v2", 90),
    "segment": ("unet_mobilenet_v2", 21),
}
RESULTS = ROOT / "benchmarks" / "results"


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def viewer(url: str, stop: threading.Event, frames: list[int]) -> None:
    """Read the MJPEG stream as a browser does, for as long as the demo serves it."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=5) as stream:
                while not stop.is_set():
                    length = 0
                    while (raw := stream.readline()) not in (b"\r\n", b"\n", b""):
                        if raw.lower().startswith(b"content-length:"):
                            length = int(raw.split(b":")[1])
                    if not raw or not length:  # the stream ended
                        break
                    stream.read(length)
                    stream.readline()
                    frames[0] += 1
        except (OSError, ValueError):
            time.sleep(0.2)  # not up yet, or gone


def soak(model: Path, clip: Path, frames: int, mode: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "edgecnn", "demo", "--model", str(model), "--source", str(clip), "--loop"]
        command += ["--max-frames", str(frames), "--no-display", "--json"]
        stop, seen = threading.Event(), [0]
        if mode == "save":
            command += ["--save", str(Path(tmp) / "out.mp4")]
        else:
            port = free_port()
            command += ["--serve", f"127.0.0.1:{port}"]
            threading.Thread(
                target=viewer, args=(f"http://127.0.0.1:{port}/stream.mjpg", stop, seen), daemon=True
            ).start()
        start = time.monotonic()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        samples: list[float] = []
        while child.poll() is None and time.monotonic() - start < timeout:
            value = rss_mb(child.pid)
            if value:
                samples.append(value)
            time.sleep(0.5)
        hung = child.poll() is None
        if hung:
            child.kill()
        out, err = child.communicate()
        stop.set()
        saved_mb = (Path(tmp) / "out.mp4").stat().st_size / 2**20 if mode == "save" and not hung else None
    tenth = max(1, len(samples) // 10)
    early, late = statistics.median(samples[tenth : 2 * tenth]), statistics.median(samples[-tenth:])
    summary = json.loads(out) if child.returncode == 0 and out.strip() else {}
    return {
        "mode": mode,
        "frames_asked": frames,
        "frames": summary.get("frames"),
        "fps": summary.get("fps"),
        "exit_code": None if hung else child.returncode,
        "hung": hung,
        "seconds": round(time.monotonic() - start, 1),
        "rss_samples": len(samples),
        "rss_early_mb": round(early, 1),
        "rss_late_mb": round(late, 1),
        "rss_peak_mb": round(max(samples), 1),
        "rss_growth_pct": round(100 * (late - early) / early, 2),
        "viewer_frames": seen[0] if mode == "serve" else None,
        "saved_mb": round(saved_mb, 1) if saved_mb is not None else None,
        "stderr_tail": err.strip().splitlines()[-1:] if child.returncode else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--tasks", nargs="*", default=list(MODELS))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a run counts as hung")
    parser.add_argument("--name", default="soak", help="results file stem in benchmarks/results/")
    args = parser.parse_args()
    clip = video_640x480(300)
    rows = []
    for task in args.tasks:
        arch, classes = MODELS[task]
        model = int8_model(arch, classes)
        for mode in ("save", "serve"):
            row = {"task": task, "model": f"{arch} 224 int8", **soak(model, clip, args.frames, mode, args.timeout)}
            rows.append(row)
            print(
                f"{task} {mode}: {row['frames']} frames, exit {row['exit_code']}, RSS {row['rss_early_mb']} -> "
                f"{row['rss_late_mb']} MB ({row['rss_growth_pct']:+.2f}%), {row['seconds']} s",
                flush=True,
            )
    lines = [
        "| task | mode | frames | FPS | exit | RSS early MB | RSS late MB | growth | peak MB | viewer frames |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = r["exit_code"] == 0 and r["frames"] == r["frames_asked"] and r["rss_growth_pct"] < 5
        lines.append(
            f"| {r['task']} | {r['mode']} | {r['frames']} | {r['fps']} | {'hung' if r['hung'] else r['exit_code']} | "
            f"{r['rss_early_mb']} | {r['rss_late_mb']} | {r['rss_growth_pct']:+.2f}%{'' if ok else ' **FAIL**'} | "
            f"{r['rss_peak_mb']} | {r['viewer_frames'] if r['viewer_frames'] is not None else '-'} |"
        )
    note = (
        f"<!-- {time.strftime('%Y-%m-%d')}: python benchmarks/soak.py --frames {args.frames} "
        f"--tasks {' '.join(args.tasks)}; 640x480 clip replayed "
        "(--loop), RSS sampled every 0.5 s; growth = median of the last tenth vs the second tenth -->\n\n"
    )
    table = "\n".join(lines) + "\n"
    (RESULTS / f"{args.name}.md").write_text(note + table)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table)


if __name__ == "__main__":
    main()
