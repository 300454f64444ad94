"""``edgecnn doctor``: is this machine ready to run edgecnn models, and what to fix if not.

Each check is a small function that returns a :class:`Finding` (ok / warn / fail, what was found,
one line to fix it) and takes what it inspects as arguments with real defaults, so tests pass fakes.
No check imports TensorFlow; together they finish in well under 5 s on a light install:

* python and platform: the supported Python range and the machine (x86_64, aarch64, armv7l);
* numpy: tflite-runtime <= 2.14 was built against numpy 1 and fails under numpy 2;
* interpreter: which package :func:`edgecnn.runtime.interpreter.find_backend` picks;
* int8 speed: times a bundled int8 model against the same network in float (made by
  ``scripts/make_doctor_model.py``): with fast int8 kernels (XNNPACK) int8 is the faster one;
* libedgetpu: the Edge TPU runtime library, its version (``edgetpu_version()``) and devices;
* compiler: ``edgetpu_compiler`` and its version;
* cameras: indices 0-3 that open and deliver a frame, each probe bounded by a timeout;
* OpenCV: the build's video I/O backends (V4L2, GStreamer, FFMPEG);
* onnxruntime, CUDA, TensorRT: the ONNX Runtime build and its execution providers (``--provider``), the
  CUDA driver and its GPUs (``libcuda``), the TensorRT library; each optional, a warning only when a
  provider is there but what it needs is not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.config import opt
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.quiet import native_stderr_silenced
from edgecnn.edgetpu.compiler import find_compiler
from edgecnn.runtime.interpreter import EDGETPU_LIBRARY, find_backend
from edgecnn.runtime.onnx import PROVIDERS

OK, WARN, FAIL = "ok", "warn", "fail"
PYTHON_RANGE = ((3, 10), (3, 12))  # pyproject: requires-python >=3.10,<3.13
DATA = Path(__file__).resolve().parents[1] / "edgetpu" / "data"
INT8_MODEL, FLOAT_MODEL = DATA / "doctor_int8.tflite", DATA / "doctor_float.tflite"
CAMERA_INDICES = (0, 1, 2, 3)
CAMERA_TIMEOUT_S = 1.5  # per camera; a probe that hangs is abandoned (daemon thread)
SPEED_RUNS = 30


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # ok | warn | fail
    detail: str  # what was found, one line
    fix: str = ""  # what to do about it, one line (empty when ok)


# ------------------------------------------------------------------------------------ checks
def check_python(version: tuple[int, ...] | None = None, machine: str | None = None) -> Finding:
    """Python within edgecnn's supported range, and the CPU architecture."""
    version = tuple(version or sys.version_info[:3])
    machine = machine or platform.machine()
    detail = f"Python {'.'.join(map(str, version))} on {platform.system()} {machine}"
    low, high = PYTHON_RANGE
    if not low <= version[:2] <= high:
        return Finding("python", FAIL, detail, "use Python 3.10 to 3.12 (edgecnn's supported range)")
    if machine == "armv7l":
        return Finding(
            "python",
            WARN,
            detail,
            "32-bit ARM: ai-edge-litert has no armv7l wheel; pip install tflite-runtime 'numpy<2'",
        )
    return Finding("python", OK, detail)


def installed_versions(
    dists: Iterable[str] = ("numpy", "ai-edge-litert", "tflite-runtime", "tensorflow"),
) -> dict[str, str]:
    """Installed distribution versions by name (missing ones left out)."""
    found = {}
    for dist in dists:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def check_numpy(versions: dict[str, str] | None = None) -> Finding:
    """numpy 2 with tflite-runtime <= 2.14 (built for numpy 1) is a crash at import."""
    versions = installed_versions() if versions is None else versions
    numpy_version = versions.get("numpy", np.__version__)
    tflite = versions.get("tflite-runtime")
    others = ", ".join(f"{d} {v}" for d, v in versions.items() if d != "numpy")
    detail = f"numpy {numpy_version}" + (f" with {others}" if others else "")
    if tflite and _major_minor(numpy_version)[0] >= 2 and _major_minor(tflite) <= (2, 14):
        fix = "pip install 'numpy<2' (tflite-runtime only)" if "ai-edge-litert" not in versions else ""
        return Finding(
            "numpy",
            WARN if "ai-edge-litert" in versions else FAIL,
            detail + f": tflite-runtime {tflite} needs numpy<2",
            fix or "pip uninstall tflite-runtime (ai-edge-litert is installed and works with numpy 2)",
        )
    return Finding("numpy", OK, detail)


def check_interpreter(find: Callable[[], Any] | None = None) -> Finding:
    """The interpreter package edgecnn will use (``EDGECNN_RUNTIME`` pins one)."""

    try:
        backend = (find or find_backend)()
    except EdgecnnError as exc:
        return Finding("interpreter", FAIL, str(exc), "pip install ai-edge-litert (or tflite-runtime on armv7l)")
    pinned = (
        f" (pinned by EDGECNN_RUNTIME={os.environ['EDGECNN_RUNTIME']})" if os.environ.get("EDGECNN_RUNTIME") else ""
    )
    fix = "" if backend.name != "tensorflow" else "pip install ai-edge-litert: the full TensorFlow is not needed to run"
    return Finding("interpreter", WARN if fix else OK, f"{backend.name} {backend.version}{pinned}", fix)


def time_model(backend: Any, path: Path, runs: int = SPEED_RUNS) -> float:
    """Median latency (ms) of one single-threaded invoke of ``path`` with the backend's default kernels."""
    interpreter = backend.Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    for _ in range(3):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def check_int8_speed(
    find: Callable[[], Any] | None = None, timer: Callable[[Any, Path], float] = time_model
) -> Finding:
    """Is int8 faster than float here? The bundled pair has 32 channels, where fast int8 kernels win 2-3x."""

    try:
        backend = (find or find_backend)()
    except EdgecnnError as exc:
        return Finding("int8 speed", FAIL, f"not measured: {exc}", "install an interpreter first (see above)")
    if not INT8_MODEL.is_file() or not FLOAT_MODEL.is_file():
        return Finding("int8 speed", FAIL, f"bundled model missing in {DATA}", "reinstall edgecnn")
    try:
        with native_stderr_silenced():
            int8_ms, float_ms = timer(backend, INT8_MODEL), timer(backend, FLOAT_MODEL)
    except (ValueError, RuntimeError) as exc:
        return Finding(
            "int8 speed",
            FAIL,
            f"the interpreter cannot run the int8 test model: {exc}",
            "pip install -U ai-edge-litert",
        )
    ratio = float_ms / int8_ms if int8_ms > 0 else float("inf")
    detail = f"int8 {int8_ms:.3f} ms vs float {float_ms:.3f} ms (1 thread, 4.7 M MACs): int8 {ratio:.1f}x as fast"
    if ratio < 1.0:
        return Finding(
            "int8 speed",
            WARN,
            detail,
            "this interpreter lacks fast int8 kernels: pip install -U ai-edge-litert (or a newer tflite-runtime)",
        )
    return Finding("int8 speed", OK, detail)


def _edgetpu_library_name(system: str | None = None) -> str:
    return EDGETPU_LIBRARY.get(system or platform.system(), "libedgetpu.so.1")


def load_libedgetpu(
    find_library: Callable[[str], str | None] = ctypes.util.find_library, system: str | None = None
) -> Any | None:
    """The Edge TPU runtime as a ctypes library, or None when it is not installed."""
    for name in (find_library("edgetpu"), _edgetpu_library_name(system)):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def check_libedgetpu(load: Callable[[], Any | None] = load_libedgetpu) -> Finding:
    """libedgetpu present? Its version string and the number of attached Edge TPUs (edgetpu_c.h API)."""
    library = load()
    if library is None:
        return Finding(
            "libedgetpu",
            WARN,
            f"{_edgetpu_library_name()} not found (needed only with --delegate edgetpu)",
            "install the Edge TPU runtime from Coral's apt repository: sudo apt-get install libedgetpu1-std",
        )
    version = _call_text(library, "edgetpu_version") or "version unknown"
    devices = _count_devices(library)
    count = "" if devices is None else f", {devices} device{'s' if devices != 1 else ''} attached"
    if devices == 0:
        return Finding("libedgetpu", WARN, f"{version}{count}", "plug in the Coral accelerator (USB 3 port)")
    return Finding("libedgetpu", OK, f"{version}{count}")


def _call_text(library: Any, name: str) -> str | None:
    function = getattr(library, name, None)
    if function is None:
        return None
    function.restype = ctypes.c_char_p
    value = function()
    return value.decode(errors="replace") if value else None


def _count_devices(library: Any) -> int | None:
    """edgetpu_list_devices(size_t*) -> edgetpu_device*; freed with edgetpu_free_devices."""
    listing, free = getattr(library, "edgetpu_list_devices", None), getattr(library, "edgetpu_free_devices", None)
    if listing is None:
        return None
    count = ctypes.c_size_t(0)
    listing.restype = ctypes.c_void_p
    devices = listing(ctypes.byref(count))
    if devices and free is not None:
        free(ctypes.c_void_p(devices))
    return int(count.value)


def check_compiler(find: Callable[[], Any] | None = None, machine: str | None = None) -> Finding:
    """edgetpu_compiler and its version; only Debian/Ubuntu x86_64 can have it."""

    compiler = (find or find_compiler)()
    machine = machine or platform.machine()
    if compiler is not None:
        version = compiler.version or "version unknown"
        return Finding("edgetpu_compiler", OK, f"{compiler.path} {version}")
    if machine not in ("x86_64", "AMD64") or platform.system() != "Linux":
        return Finding(
            "edgetpu_compiler", OK, f"not available for {platform.system()} {machine}; compile on x86_64 Linux"
        )
    return Finding(
        "edgetpu_compiler",
        WARN,
        "not found (needed to compile models for the Edge TPU)",
        "sudo apt-get install edgetpu-compiler (Coral's apt repository); edgecnn convert --edgetpu prints the steps",
    )


def open_camera(index: int) -> bool:
    """Does camera ``index`` open and deliver one frame? (V4L2 on Linux; skips absent /dev/videoN fast)."""
    import cv2

    if platform.system() == "Linux" and not Path(f"/dev/video{index}").exists():
        return False
    backend = cv2.CAP_V4L2 if platform.system() == "Linux" else cv2.CAP_ANY
    capture = cv2.VideoCapture(index, backend)
    try:
        return bool(capture.isOpened() and capture.read()[0])
    finally:
        capture.release()


def probe_cameras(
    indices: Iterable[int] = CAMERA_INDICES,
    opener: Callable[[int], bool] = open_camera,
    timeout: float = CAMERA_TIMEOUT_S,
) -> tuple[list[int], list[int]]:
    """(indices that opened, indices that did not answer within ``timeout``), probed in parallel."""
    results: dict[int, bool] = {}

    def probe(index: int) -> None:
        try:
            results[index] = opener(index)
        except Exception:  # a broken driver is "does not open", never a doctor crash
            results[index] = False

    threads = {i: threading.Thread(target=probe, args=(i,), daemon=True) for i in indices}
    for thread in threads.values():
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    opened = sorted(i for i, ok in results.items() if ok)
    hung = sorted(i for i in threads if i not in results)
    return opened, hung


def check_cameras(probe: Callable[[], tuple[list[int], list[int]]] = probe_cameras) -> Finding:
    opened, hung = probe()
    slow = f"; no answer in {CAMERA_TIMEOUT_S} s from {hung}" if hung else ""
    if opened:
        return Finding("cameras", OK, f"camera index {', '.join(map(str, opened))} opens{slow}")
    return Finding(
        "cameras",
        WARN,
        f"no camera opens at indices {CAMERA_INDICES[0]}-{CAMERA_INDICES[-1]}{slow}",
        "connect a camera (and add the user to group video), or run the demo on a file: --source clip.mp4",
    )


PI_MODEL_FILE = Path("/proc/device-tree/model")  # "Raspberry Pi 5 Model B Rev 1.0" on a Pi


def check_picamera2(find: Callable[[str], Any] = importlib.util.find_spec, model_file: Path = PI_MODEL_FILE) -> Finding:
    """The Raspberry Pi camera module's stack: picamera2 (libcamera), which ``--source picam`` uses."""
    on_pi = model_file.is_file() and "Raspberry Pi" in model_file.read_text(errors="ignore")
    if find("picamera2") is not None:
        return Finding("picamera2", OK, "picamera2 imports: --source picam opens the Raspberry Pi camera module")
    if on_pi:
        return Finding(
            "picamera2",
            WARN,
            "picamera2 does not import: the Raspberry Pi camera module will not open (USB cameras still do)",
            "sudo apt install python3-picamera2, and create the venv with --system-site-packages",
        )
    return Finding("picamera2", OK, "not installed; only the Raspberry Pi camera module (--source picam) needs it")


def opencv_video_io(build_info: str) -> dict[str, str]:
    """The 'Video I/O' lines of cv2.getBuildInformation(): {'V4L2': 'YES (...)', 'GStreamer': 'NO', ...}."""
    wanted = {"v4l/v4l2": "V4L2", "gstreamer": "GStreamer", "ffmpeg": "FFMPEG"}
    found: dict[str, str] = {}
    for line in build_info.splitlines():
        key, sep, value = line.strip().partition(":")
        name = wanted.get(key.strip().lower())
        if sep and name and name not in found:
            found[name] = value.strip()
    return found


def check_opencv(version: str | None = None, build_info: str | None = None, system: str | None = None) -> Finding:
    """The OpenCV build: V4L2 for USB cameras on Linux, GStreamer for CSI pipelines, FFMPEG for files."""
    try:
        import cv2
    except ImportError as exc:
        return Finding("opencv", FAIL, f"cv2 does not import ({exc})", "pip install opencv-python-headless")
    version = version or cv2.__version__
    io = opencv_video_io(build_info if build_info is not None else cv2.getBuildInformation())
    detail = f"OpenCV {version}: " + ", ".join(
        f"{k} {io.get(k, 'unknown').split(' ')[0]}" for k in ("V4L2", "GStreamer", "FFMPEG")
    )
    if (system or platform.system()) == "Linux" and not io.get("V4L2", "").startswith("YES"):
        return Finding("opencv", WARN, detail, "USB cameras need V4L2: pip install opencv-python-headless (PyPI wheel)")
    if not io.get("FFMPEG", "").startswith("YES"):
        return Finding("opencv", WARN, detail, "video files and --save need FFMPEG: pip install opencv-python-headless")
    return Finding("opencv", OK, detail)


def onnx_providers(find: Callable[[str], Any] = importlib.util.find_spec) -> tuple[str, list[str]] | None:
    """(onnxruntime version, its execution providers), or None when onnxruntime is not installed."""
    if find("onnxruntime") is None:
        return None
    import onnxruntime  # installed (the onnx extra): ~0.2 s, only here

    return onnxruntime.__version__, list(onnxruntime.get_available_providers())


def check_onnxruntime(probe: Callable[[], tuple[str, list[str]] | None] = onnx_providers) -> Finding:
    """ONNX Runtime and the ``--provider`` values its build offers (.onnx models only)."""
    found = probe()
    if found is None:
        return Finding("onnxruntime", OK, "not installed; only .onnx models need it: pip install 'edgecnn[onnx]'")
    version, eps = found
    ours = [name for name, p in PROVIDERS.items() if p.ep in eps]
    return Finding(
        "onnxruntime", OK, f"onnxruntime {version}: --provider {', '.join(ours) or 'none'} ({', '.join(eps)})"
    )


def cuda_devices(load: Callable[[str], Any] = ctypes.CDLL) -> tuple[str, list[str]] | None:
    """(CUDA driver version, GPU names) through the driver API (libcuda), or None without a driver."""
    try:
        cuda = load("libcuda.so.1" if platform.system() == "Linux" else "nvcuda.dll")
    except OSError:
        return None
    version, count = ctypes.c_int(0), ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return f"{version.value // 1000}.{version.value % 1000 // 10}", []
    cuda.cuDeviceGetCount(ctypes.byref(count))
    names = []
    for i in range(count.value):
        device, name = ctypes.c_int(0), ctypes.create_string_buffer(100)
        cuda.cuDeviceGet(ctypes.byref(device), i)
        cuda.cuDeviceGetName(name, 100, device)
        names.append(name.value.decode(errors="replace"))
    return f"{version.value // 1000}.{version.value % 1000 // 10}", names


def check_cuda(
    probe: Callable[[], tuple[str, list[str]] | None] = cuda_devices,
    onnx: Callable[[], tuple[str, list[str]] | None] = onnx_providers,
) -> Finding:
    """The CUDA driver and its GPUs, which --provider cuda and tensorrt run on."""
    found, runtime = probe(), onnx()
    wants = runtime is not None and PROVIDERS["cuda"].ep in runtime[1]
    if not found or not found[1]:
        detail = "no CUDA driver (libcuda)" if not found else f"CUDA driver {found[0]} but no GPU"
        if wants:
            return Finding("cuda", WARN, detail + ": onnxruntime-gpu has nothing to run on", "use --provider cpu")
        return Finding("cuda", OK, detail + "; only --provider cuda and tensorrt need a CUDA GPU")
    gpus = ", ".join(found[1])
    fix = "" if wants else "onnxruntime has no CUDA provider: pip install onnxruntime-gpu (for --provider cuda)"
    return Finding("cuda", WARN if fix else OK, f"CUDA driver {found[0]}, {len(found[1])} GPU: {gpus}", fix)


def tensorrt_version(
    find_library: Callable[[str], str | None] = ctypes.util.find_library, load: Callable[[str], Any] = ctypes.CDLL
) -> str | None:
    """The TensorRT library's version (getInferLibVersion), or None when it is not installed."""
    for name in (find_library("nvinfer"), "libnvinfer.so.10", "libnvinfer.so.8"):
        if not name:
            continue
        try:
            code = int(load(name).getInferLibVersion())
        except (OSError, AttributeError):
            continue
        major, minor, patch = (
            (code // 10000, code // 100 % 100, code % 100)
            if code >= 10000
            else (code // 1000, code // 100 % 10, code % 100)
        )
        return f"{major}.{minor}.{patch}"
    return None


def check_tensorrt(
    probe: Callable[[], str | None] = tensorrt_version,
    onnx: Callable[[], tuple[str, list[str]] | None] = onnx_providers,
) -> Finding:
    """TensorRT, which --provider tensorrt builds its engines with."""
    version, runtime = probe(), onnx()
    wants = runtime is not None and PROVIDERS["tensorrt"].ep in runtime[1]
    if version is None:
        if wants:
            return Finding(
                "tensorrt",
                WARN,
                "libnvinfer not found: --provider tensorrt will not start",
                "pip install tensorrt (or NVIDIA's TensorRT packages)",
            )
        return Finding("tensorrt", OK, "not installed; only --provider tensorrt needs it")
    fix = "" if wants else "onnxruntime has no TensorRT provider: pip install onnxruntime-gpu"
    return Finding("tensorrt", WARN if fix else OK, f"TensorRT {version}", fix)


CHECKS: tuple[Callable[[], Finding], ...] = (
    check_python,
    check_numpy,
    check_interpreter,
    check_int8_speed,
    check_libedgetpu,
    check_compiler,
    check_cameras,
    check_picamera2,
    check_opencv,
    check_onnxruntime,
    check_cuda,
    check_tensorrt,
)


def doctor(checks: Iterable[Callable[[], Finding]] | None = None, cameras: bool = True) -> list[Finding]:
    """Run every check (default :data:`CHECKS`); an unexpected error in one is reported as its failure."""
    findings = []
    for check in CHECKS if checks is None else checks:
        if check is check_cameras and not cameras:
            continue
        try:
            findings.append(check())
        except Exception as exc:  # the doctor must finish and report
            name = check.__name__.removeprefix("check_")
            findings.append(Finding(name, FAIL, f"check crashed: {type(exc).__name__}: {exc}", "report this bug"))
    return findings


def format_doctor(findings: list[Finding], seconds: float | None = None) -> str:
    lines = [
        f"{f.status:<4s}  {f.check:<16s} {f.detail}" + (f"\n      {'':<16s} fix: {f.fix}" if f.fix else "")
        for f in findings
    ]
    counts = {s: sum(f.status == s for f in findings) for s in (OK, WARN, FAIL)}
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines.append(f"{counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failures{took}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- command
@dataclass(frozen=True)
class DoctorOptions:
    no_cameras: bool = field(default=False, metadata=opt("skip probing cameras 0-3"))
    json: bool = field(default=False, metadata=opt("print the findings as JSON"))


def run_doctor(options: DoctorOptions = DoctorOptions()) -> int:
    """Run ``edgecnn doctor``: 0 when nothing failed (warnings allowed), 1 otherwise."""
    start = time.perf_counter()
    findings = doctor(cameras=not options.no_cameras)
    seconds = time.perf_counter() - start
    if options.json:
        print(json.dumps({"findings": [asdict(f) for f in findings], "seconds": round(seconds, 3)}))
    else:
        print(format_doctor(findings, seconds))
    return 1 if any(f.status == FAIL for f in findings) else 0
