"""edgecnn doctor: every check with fakes for what it inspects, and the whole run under 5 s without TensorFlow."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgecnn.core.errors import EdgecnnError
from edgecnn.edgetpu.compiler import CompilerInfo
from edgecnn.pipelines import doctor as dr
from edgecnn.pipelines.doctor import FAIL, OK, WARN, Finding

SYSTEM = platform.system()


def test_python_version_and_machine() -> None:
    assert dr.check_python((3, 11, 7), "x86_64") == Finding("python", OK, f"Python 3.11.7 on {SYSTEM} x86_64")
    assert dr.check_python((3, 9, 18), "aarch64") == Finding(
        "python", FAIL, f"Python 3.9.18 on {SYSTEM} aarch64", "use Python 3.10 to 3.12 (edgecnn's supported range)"
    )
    armv7 = dr.check_python((3, 11, 2), "armv7l")
    assert armv7.status == WARN
    assert armv7.fix == "32-bit ARM: ai-edge-litert has no armv7l wheel; pip install tflite-runtime 'numpy<2'"


def test_numpy_against_tflite_runtime() -> None:
    broken = dr.check_numpy({"numpy": "2.0.1", "tflite-runtime": "2.14.0"})
    assert broken == Finding(
        "numpy",
        FAIL,
        "numpy 2.0.1 with tflite-runtime 2.14.0: tflite-runtime 2.14.0 needs numpy<2",
        "pip install 'numpy<2' (tflite-runtime only)",
    )
    both = dr.check_numpy({"numpy": "2.0.1", "ai-edge-litert": "2.3.0", "tflite-runtime": "2.14.0"})
    assert both.status == WARN
    assert both.fix == "pip uninstall tflite-runtime (ai-edge-litert is installed and works with numpy 2)"
    assert dr.check_numpy({"numpy": "1.26.4", "tflite-runtime": "2.14.0"}).status == OK
    assert dr.check_numpy({"numpy": "2.1.0", "ai-edge-litert": "2.3.0"}) == Finding(
        "numpy", OK, "numpy 2.1.0 with ai-edge-litert 2.3.0"
    )


def _backend(name: str = "ai_edge_litert", version: str = "2.3.0") -> SimpleNamespace:
    return SimpleNamespace(name=name, version=version)


def _no_backend() -> None:
    raise EdgecnnError("no TFLite interpreter can be used: ai-edge-litert is not installed")


def test_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGECNN_RUNTIME", raising=False)
    assert dr.check_interpreter(lambda: _backend()) == Finding("interpreter", OK, "ai_edge_litert 2.3.0")
    assert dr.check_interpreter(_no_backend) == Finding(
        "interpreter",
        FAIL,
        "no TFLite interpreter can be used: ai-edge-litert is not installed",
        "pip install ai-edge-litert (or tflite-runtime on armv7l)",
    )
    assert dr.check_interpreter(lambda: _backend("tensorflow", "2.21.0")).status == WARN
    monkeypatch.setenv("EDGECNN_RUNTIME", "tflite_runtime")
    pinned = dr.check_interpreter(lambda: _backend("tflite_runtime", "2.14.0"))
    assert pinned.detail == "tflite_runtime 2.14.0 (pinned by EDGECNN_RUNTIME=tflite_runtime)"


def test_int8_speed_with_fake_timings() -> None:
    def timer(int8_ms: float, float_ms: float):
        return lambda backend, path: int8_ms if path == dr.INT8_MODEL else float_ms

    fast = dr.check_int8_speed(lambda: _backend(), timer(0.05, 0.125))
    assert fast == Finding(
        "int8 speed", OK, "int8 0.050 ms vs float 0.125 ms (1 thread, 4.7 M MACs): int8 2.5x as fast"
    )
    slow = dr.check_int8_speed(lambda: _backend(), timer(0.3, 0.1))
    assert slow.status == WARN and slow.detail.endswith("int8 0.3x as fast")
    assert (
        slow.fix
        == "this interpreter lacks fast int8 kernels: pip install -U ai-edge-litert (or a newer tflite-runtime)"
    )
    assert dr.check_int8_speed(_no_backend).status == FAIL


def test_int8_speed_with_the_bundled_models() -> None:
    from edgecnn.edgetpu.tflite_graph import read_graph

    int8, flt = read_graph(dr.INT8_MODEL), read_graph(dr.FLOAT_MODEL)
    assert [op.name for op in int8.operators] == ["CONV_2D", "CONV_2D"]
    assert int8.tensors[int8.inputs[0]].type == "INT8" and int8.tensors[int8.inputs[0]].shape == (1, 16, 16, 32)
    assert flt.tensors[flt.inputs[0]].type == "FLOAT32"
    assert int8.size < 32 * 1024 and flt.size < 48 * 1024  # small enough to ship as package data
    finding = dr.check_int8_speed()
    assert finding.status in (OK, WARN) and "ms vs float" in finding.detail


class _FakeFunction:
    def __init__(self, body):
        self.body, self.restype = body, None

    def __call__(self, *args):
        return self.body(*args)


def _fake_libedgetpu(devices: int) -> SimpleNamespace:
    def listing(count_ref):
        count_ref._obj.value = devices  # ctypes.byref(x)._obj is x
        return None  # NULL list: nothing to free

    return SimpleNamespace(
        edgetpu_version=_FakeFunction(lambda: b"BuildLabel(COMPILER=6.3.0), RuntimeVersion(14)"),
        edgetpu_list_devices=_FakeFunction(listing),
        edgetpu_free_devices=_FakeFunction(lambda ptr: None),
    )


def test_libedgetpu() -> None:
    missing = dr.check_libedgetpu(lambda: None)
    assert missing.status == WARN and missing.detail.endswith("not found (needed only with --delegate edgetpu)")
    assert (
        missing.fix == "install the Edge TPU runtime from Coral's apt repository: sudo apt-get install libedgetpu1-std"
    )
    assert dr.check_libedgetpu(lambda: _fake_libedgetpu(1)) == Finding(
        "libedgetpu", OK, "BuildLabel(COMPILER=6.3.0), RuntimeVersion(14), 1 device attached"
    )
    none_plugged = dr.check_libedgetpu(lambda: _fake_libedgetpu(0))
    assert none_plugged.status == WARN and none_plugged.fix == "plug in the Coral accelerator (USB 3 port)"
    assert dr.load_libedgetpu(lambda name: "/nonexistent/libedgetpu.so.1", "Windows") is None  # edgetpu.dll: absent


def test_compiler() -> None:
    found = CompilerInfo("/usr/bin/edgetpu_compiler", "16.0.384591198")
    assert dr.check_compiler(lambda: found) == Finding(
        "edgetpu_compiler", OK, "/usr/bin/edgetpu_compiler 16.0.384591198"
    )
    if SYSTEM == "Linux":
        absent = dr.check_compiler(lambda: None, "x86_64")
        assert absent.status == WARN and absent.fix.startswith("sudo apt-get install edgetpu-compiler")
    assert dr.check_compiler(lambda: None, "aarch64") == Finding(
        "edgetpu_compiler", OK, f"not available for {SYSTEM} aarch64; compile on x86_64 Linux"
    )


def test_camera_probe_runs_in_parallel_with_a_timeout() -> None:
    """Cameras 0 and 1 open only together (a barrier both must reach: a probe one at a time would break it),
    camera 3 hangs until the probe has returned: the probe reports it as not answering instead of waiting."""
    together = threading.Barrier(2)
    release = threading.Event()

    def opener(index: int) -> bool:
        if index == 2:
            raise RuntimeError("broken driver")
        if index == 3:
            release.wait(60)  # a camera that hangs
            return True
        together.wait(5)
        return True

    try:
        assert dr.probe_cameras((0, 1, 2, 3), opener, timeout=1.0) == ([0, 1], [3])
        assert not release.is_set()  # it returned while camera 3 still hung
    finally:
        release.set()


def test_cameras_finding() -> None:
    assert dr.check_cameras(lambda: ([0, 2], [])) == Finding("cameras", OK, "camera index 0, 2 opens")
    none = dr.check_cameras(lambda: ([], [1]))
    assert none == Finding(
        "cameras",
        WARN,
        "no camera opens at indices 0-3; no answer in 1.5 s from [1]",
        "connect a camera (and add the user to group video), or run the demo on a file: --source clip.mp4",
    )


BUILD_INFO = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
      avcodec:                   YES (58.134.100)
    GStreamer:                   YES (1.20.3)
    v4l/v4l2:                    YES (linux/videodev2.h)
"""


def test_opencv_build() -> None:
    assert dr.opencv_video_io(BUILD_INFO) == {
        "FFMPEG": "YES",
        "GStreamer": "YES (1.20.3)",
        "V4L2": "YES (linux/videodev2.h)",
    }
    assert dr.check_opencv("4.10.0", BUILD_INFO, "Linux") == Finding(
        "opencv", OK, "OpenCV 4.10.0: V4L2 YES, GStreamer YES, FFMPEG YES"
    )
    no_v4l2 = dr.check_opencv("4.10.0", BUILD_INFO.replace("YES (linux/videodev2.h)", "NO"), "Linux")
    assert no_v4l2.status == WARN
    assert no_v4l2.fix == "USB cameras need V4L2: pip install opencv-python-headless (PyPI wheel)"


def test_a_crashing_check_is_reported_not_raised() -> None:
    def check_boom() -> Finding:
        raise RuntimeError("boom")

    findings = dr.doctor([check_boom, lambda: Finding("x", OK, "fine")])
    assert findings[0] == Finding("boom", FAIL, "check crashed: RuntimeError: boom", "report this bug")
    assert "1 ok, 0 warnings, 1 failures" in dr.format_doctor(findings)


def test_run_doctor_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(dr, "CHECKS", (lambda: Finding("a", OK, "fine"), lambda: Finding("b", FAIL, "bad", "fix it")))
    assert dr.run_doctor(dr.DoctorOptions(no_cameras=True, json=True)) == 1
    data = json.loads(capsys.readouterr().out)
    assert [f["status"] for f in data["findings"]] == [OK, FAIL] and data["findings"][1]["fix"] == "fix it"


def test_full_doctor_without_tensorflow() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'): raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgecnn.cli import main\n"
        "rc = main(['doctor', '--json'])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')]\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr
    data = json.loads(done.stdout)
    names = [f["check"] for f in data["findings"]]
    assert names == [
        "python",
        "numpy",
        "interpreter",
        "int8 speed",
        "libedgetpu",
        "edgetpu_compiler",
        "cameras",
        "picamera2",
        "opencv",
        "onnxruntime",
        "cuda",
        "tensorrt",
    ]
    assert data["seconds"] > 0  # how long it takes is measured by benchmarks/doctor.py, not asserted here
    assert Path(dr.INT8_MODEL).is_file()


def test_picamera2_check(tmp_path: Path) -> None:
    pi = tmp_path / "model"
    pi.write_text("Raspberry Pi 5 Model B Rev 1.0\x00")
    found, missing = (lambda name: object()), (lambda name: None)
    assert dr.check_picamera2(found, pi).status == OK
    on_pi = dr.check_picamera2(missing, pi)
    assert (on_pi.status, on_pi.fix) == (
        WARN,
        "sudo apt install python3-picamera2, and create the venv with --system-site-packages",
    )
    elsewhere = dr.check_picamera2(missing, tmp_path / "no-such-file")
    assert elsewhere.status == OK and "only the Raspberry Pi camera module" in elsewhere.detail
