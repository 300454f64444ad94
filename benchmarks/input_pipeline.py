"""Input pipeline: the streaming tf.data path against the in-memory path on a folder of 20,000 JPEGs at 224 px.

The folder is generated once (seeded) into ``runs/benchmarks/``: 8 classes, one per scikit-image sample
photo, each image a random crop of its photo (random side and position, mirrored at random) resized to
224x224 and saved as JPEG quality 90. Each path runs in its own child process (so each peak RSS is its
own), pinned to 2 cores, and measures one training epoch without a model: batches of 64 with the
classifier's augmentation (random shifts and zooms), iterated to the end.

* **stream**: ``edgecnn.data.load_data`` lists the folder (header check of every file), then
  ``ClassifyTask.dataset`` streams it: positions shuffled -> parallel decode and resize -> batch -> augment
  -> prefetch. Images/s is the epoch's; the listing time is reported beside it. Once more without the
  augmentation, to show what decoding alone costs.
* **in-memory**: what the loader did before: every image decoded and resized in turn into a list,
  ``np.stack`` into one array, and ``tf.data.Dataset.from_tensor_slices`` over it (the same batching and
  augmentation). Its images/s is the epoch's (decode already done) and its load time is reported beside it.
  Its pixels alone are N x 147 KiB and it holds them about 5 times over; when that is more than half of
  what the machine has free, it runs on two seeded subsets (N/10, N/5) and the full-size peak is
  extrapolated along the line through them (stated as such in the results).

Target: the streaming path's peak RSS (VmHWM, TensorFlow included) under 2 GB for the 20,000 images.

    nice -n 10 .venv/bin/python benchmarks/input_pipeline.py [--count 20000] [--img 224] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "runs" / "benchmarks"
RESULTS = ROOT / "benchmarks" / "results"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "retina", "hubble_deep_field")
TARGET_MB = 2048
CORES = 2
FACTOR = 5  # the in-memory path's peak above its baseline, in multiples of the pixels (measured: 4.5x)


# -- the folder ----------------------------------------------------------------------------------------------


def generate(folder: Path, count: int, size: int, seed: int = 0) -> Path:
    """``count`` JPEGs in ``len(PHOTOS)`` class subfolders; skipped when a finished folder is already there."""
    done = folder / ".done"
    if done.exists() and done.read_text() == f"{count} {size} {seed}":
        return folder
    from skimage import data as skdata

    photos = []
    for name in PHOTOS:
        photo = getattr(skdata, name)()
        photo = np.stack([photo] * 3, -1) if photo.ndim == 2 else photo[..., :3]
        photos.append(np.ascontiguousarray(photo[..., ::-1]))  # BGR for OpenCV
    rng = np.random.default_rng(seed)
    plans = []
    for i in range(count):
        cls = i % len(PHOTOS)
        h, w = photos[cls].shape[:2]
        side = int(rng.integers(min(h, w) // 3, min(h, w)))
        plans.append(
            (cls, i, side, int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)), rng.random() < 0.5)
        )
    for name in PHOTOS:
        (folder / name).mkdir(parents=True, exist_ok=True)

    def write(plan: tuple[int, int, int, int, int, bool]) -> None:
        cls, i, side, y, x, flip = plan
        crop = cv2.resize(photos[cls][y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / PHOTOS[cls] / f"{i:06d}.jpg"), crop[:, ::-1] if flip else crop,
                    [cv2.IMWRITE_JPEG_QUALITY, 90])  # fmt: skip

    with ThreadPoolExecutor(CORES) as pool:
        list(pool.map(write, plans))
    done.write_text(f"{count} {size} {seed}")
    return folder


# -- the children ----------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def epoch(ds) -> tuple[int, float]:  # noqa: ANN001 - a tf.data.Dataset
    start, images = time.perf_counter(), 0
    for x, _ in ds:
        images += int(x.shape[0])
    return images, time.perf_counter() - start


def child(path: str, folder: Path, img: int, batch: int, limit: int | None) -> dict:
    """One path, one epoch, in this (child) process."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:CORES]))
    from edgecnn.core.keras_env import tf
    from edgecnn.data import load_data
    from edgecnn.tasks import get_task

    tf.constant(0)  # TensorFlow's runtime started: the baseline below includes it
    baseline = peak_rss_mb()
    start = time.perf_counter()
    data = load_data(str(folder), "classify", img)
    if limit is not None:
        data = data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:limit]))
    listed = time.perf_counter() - start
    result = {"path": path, "images_total": len(data), "baseline_rss_mb": round(baseline, 1)}
    task = get_task("classify")
    if path.startswith("stream"):
        result["list_s"] = round(listed, 2)
        ds = task.dataset(None, data, batch, 0, path == "stream", True)
    else:
        from edgecnn.data.images import load_image
        from edgecnn.trainer.fit import make_dataset

        start = time.perf_counter()
        xs = [load_image(Path(p), img, "rgb") for p in data.x.paths]  # the former loader, image after image
        x = np.stack(xs)
        del xs
        result["load_s"] = round(listed + time.perf_counter() - start, 2)
        ds = make_dataset(x, data.y, batch, 0, True, True)
    images, seconds = epoch(ds)
    result.update(images=images, epoch_s=round(seconds, 2), images_per_s=round(images / seconds, 1))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def run_child(path: str, folder: Path, img: int, batch: int, limit: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", path, "--folder", str(folder), "--img", str(img), "--batch", str(batch)]
    cmd += ["--limit", str(limit)] if limit else []
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode != 0:
        raise SystemExit(f"{path} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the report -----------------------------------------------------------------------------------------------


def memory_row(memory: dict) -> str:
    return (
        f"| in-memory (decode all, np.stack, from_tensor_slices) | {memory['images']:,} | "
        f"{memory['images_per_s']:,.0f} | {memory['load_s']:.1f} (decode all) | {memory['peak_rss_mb']:,.0f} | "
        f"{memory['baseline_rss_mb']:,.0f} |"
    )


def extrapolate(memory: list[dict], count: int) -> tuple[float, float, float]:
    """Peak RSS = a + b * images through the subset runs: (a, b MiB per image, the peak at ``count``)."""
    n = np.array([m["images_total"] for m in memory], float)
    peak = np.array([m["peak_rss_mb"] for m in memory], float)
    b, a = np.polyfit(n, peak, 1)
    return float(a), float(b), float(a + b * count)


def report(
    args: argparse.Namespace, stream: dict, decode: dict, memory: list[dict], loads: list[float], pixels_mb: float
) -> str:
    ok = stream["peak_rss_mb"] < TARGET_MB
    lines = [
        "# Input pipeline: streaming vs in-memory",
        "",
        f"`{args.command}`",
        "",
        f"{args.count:,} JPEGs at {args.size} px read at {args.img} px ({pixels_mb:,.0f} MiB of pixels), "
        f"{len(PHOTOS)} classes, batch {args.batch}, one epoch of decode + resize + augment (random shifts and "
        f"zooms), no model, each path in its own process pinned to {CORES} cores. Machine: {os.cpu_count()} "
        f"cores shared with other jobs, load average {loads[0]:.2f} before and {loads[1]:.2f} after (1 min); "
        f"{args.available_mb:,.0f} MiB available at the start.",
        "",
        "| path | images | images/s (epoch) | list / load s | peak RSS MiB | of which TF baseline MiB |",
        "|---|---|---|---|---|---|",
        f"| stream (tf.data from disk) | {stream['images']:,} | {stream['images_per_s']:,.0f} | "
        f"{stream['list_s']:.1f} (header check) | {stream['peak_rss_mb']:,.0f} | {stream['baseline_rss_mb']:,.0f} |",
        f"| stream without augmentation (decode + resize only) | {decode['images']:,} | "
        f"{decode['images_per_s']:,.0f} | {decode['list_s']:.1f} (header check) | {decode['peak_rss_mb']:,.0f} | "
        f"{decode['baseline_rss_mb']:,.0f} |",
        *(memory_row(m) for m in memory),
        "",
        f"Target: stream peak RSS < {TARGET_MB} MiB for {args.count:,} images: "
        f"**{'met' if ok else 'NOT met'}** ({stream['peak_rss_mb']:,.0f} MiB).",
        "",
    ]
    if memory[-1]["images_total"] == args.count:
        lines.append(f"The in-memory path ran on all {args.count:,} images: peak {memory[-1]['peak_rss_mb']:,.0f} MiB.")
    else:
        a, b, peak = extrapolate(memory, args.count)
        why = (
            "--extrapolate"
            if args.extrapolate
            else f"at about {FACTOR}x the pixels it would need more than half the {args.available_mb:,.0f} MiB "
            "this shared machine had free"
        )
        sizes = " and ".join(f"{m['images_total']:,}" for m in memory)
        lines.append(
            f"The in-memory path did not run on all {args.count:,} images ({why}). It ran on seeded "
            f"subsets of {sizes} images; a line through those peaks ({a:,.0f} MiB + {1024 * b:,.1f} KiB per image) "
            f"gives about **{peak:,.0f} MiB** at {args.count:,} images: an extrapolation, not a measurement."
        )
    lines += [
        "",
        "The in-memory images/s excludes decoding (done once, before the first step, in the load time); the "
        "stream decodes every epoch (`--cache memory` or `--cache PREFIX` keeps the decoded images after the "
        "first). The in-memory path holds the pixels several times over: the decoded list and the stacked array "
        "at once, then tf.data's tensor of the array and its full shuffle buffer.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--size", type=int, default=224, help="side of the generated JPEGs")
    parser.add_argument("--img", type=int, default=224, help="the pipeline's input size")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--folder", type=Path, default=None, help="default: runs/benchmarks/jpegs_<size>_<count>")
    parser.add_argument(
        "--extrapolate", action="store_true", help="in-memory path on N/10 and N/5 images only, whatever is free"
    )
    parser.add_argument("--child", choices=("stream", "stream-decode", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.folder or CACHE / f"jpegs_{args.size}_{args.count}"
    if args.child:
        print(json.dumps(child(args.child, folder, args.img, args.batch, args.limit)))
        return 0
    niceness = os.nice(0)
    args.command = (f"nice -n {niceness} " if niceness else "") + ".venv/bin/python " + " ".join(sys.argv)
    start = time.perf_counter()
    generate(folder, args.count, args.size)
    print(f"folder {folder}: {args.count} JPEGs ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    loads = [os.getloadavg()[0]]
    pixels_mb = args.count * args.img * args.img * 3 / 2**20
    args.available_mb = available_mb()
    stream = run_child("stream", folder, args.img, args.batch, None)
    print(json.dumps(stream), file=sys.stderr)
    decode = run_child("stream-decode", folder, args.img, args.batch, None)
    print(json.dumps(decode), file=sys.stderr)
    fits = FACTOR * pixels_mb < args.available_mb / 2 and not args.extrapolate
    memory = []
    for limit in [None] if fits else [args.count // 10, args.count // 5]:
        memory.append(run_child("memory", folder, args.img, args.batch, limit))
        print(json.dumps(memory[-1]), file=sys.stderr)
    loads.append(os.getloadavg()[0])
    text = report(args, stream, decode, memory, loads, pixels_mb)
    from edgecnn.core.fileio import write_text

    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "input_pipeline.md", text)
    print(text)
    return 0 if stream["peak_rss_mb"] < TARGET_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
