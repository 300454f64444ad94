"""Runtime selection, delegates, quantization helpers: the light path's contracts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime import interpreter as rt


def test_prefers_ai_edge_litert() -> None:
    backend = rt.find_backend()
    assert backend.name == "ai_edge_litert" and backend.version


def test_pinned_unknown_runtime_is_an_error(monkeypatch) -> None:
    monkeypatch.setenv("EDGECNN_RUNTIME", "onnx")
    with pytest.raises(EdgecnnError, match=r"unknown runtime 'onnx'; use one of: ai_edge_litert, tflite_runtime"):
        rt.find_backend()


def test_tflite_runtime_214_under_numpy2_is_one_clear_line(monkeypatch) -> None:
    versions = {"ai-edge-litert": None, "tflite-runtime": "2.14.0", "tensorflow": None, "tensorflow-cpu": None}
    monkeypatch.setattr(rt, "_dist_version", lambda dist: versions.get(dist))
    monkeypatch.setattr(rt.np, "__version__", "2.1.0")
    with pytest.raises(EdgecnnError) as err:
        rt.find_backend()
    assert str(err.value) == (
        "no TFLite interpreter can be used: ai-edge-litert is not installed; tflite-runtime 2.14.0 needs numpy<2 "
        "but numpy 2.1.0 is installed; run: pip install ai-edge-litert (or pip install 'numpy<2'); "
        "tensorflow is not installed"
    )


def test_tflite_runtime_fine_under_numpy1() -> None:
    assert rt._numpy_problem("tflite_runtime", "2.14.0") is not None
    assert rt._numpy_problem("ai_edge_litert", "2.3.0") is None


# ai_edge_litert's Delegate.__del__ trips over its own half-built object when the library is missing
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_missing_edgetpu_library_is_clear() -> None:
    backend = rt.find_backend()
    with pytest.raises(EdgecnnError, match=r"cannot load the Edge TPU delegate libedgetpu\.so\.1 .*libedgetpu1-std"):
        rt.make_delegates(backend, "edgetpu", "usb:0")


def test_unknown_delegate() -> None:
    with pytest.raises(EdgecnnError, match=r"unknown delegate 'gpu'; use one of: none, xnnpack, edgetpu"):
        rt.make_delegates(rt.find_backend(), "gpu")


@pytest.mark.parametrize("dtype,scale,zp", [(np.uint8, 1.0, 0), (np.int8, 1.0, -128), (np.int8, 0.5, 3)])
def test_quantize_dequantize_round_trip(dtype, scale, zp) -> None:
    detail = {"dtype": dtype, "quantization": (scale, zp)}
    pixels = np.arange(0, 256, 5, dtype=np.uint8)
    q = rt.quantize(pixels, detail)
    assert q.dtype == dtype
    back = rt.dequantize(q, detail)
    lo, hi = (np.iinfo(dtype).min - zp) * scale, (np.iinfo(dtype).max - zp) * scale
    expected = np.clip(pixels.astype(np.float32), lo, hi)
    assert np.max(np.abs(back - expected)) <= scale / 2 + 1e-6


def test_float_tensors_pass_through() -> None:
    detail = {"dtype": np.float32, "quantization": (0.0, 0)}
    x = np.array([0, 128, 255], np.uint8)
    assert rt.quantize(x, detail).tolist() == [0.0, 128.0, 255.0]


def test_demo_resize_stays_within_a_level_of_area_averaging() -> None:
    from skimage import data

    from edgecnn.runtime.image import to_model_pixels

    frame = cv2.resize(data.astronaut()[:, :, ::-1], (640, 480), interpolation=cv2.INTER_AREA)
    exact = to_model_pixels(frame, (224, 224), "rgb")
    fast = to_model_pixels(frame, (224, 224), "rgb", exact=False)
    assert fast.shape == exact.shape == (224, 224, 3) and fast.dtype == np.uint8
    diff = np.abs(fast.astype(int) - exact)
    assert diff.mean() < 0.5 and diff.max() <= 16, (diff.mean(), diff.max())
    assert not np.array_equal(fast, exact)  # the two-step path ran
    small = frame[:400, :400]  # under twice the model's size: the exact path either way
    np.testing.assert_array_equal(
        to_model_pixels(small, (224, 224), "rgb", exact=False), to_model_pixels(small, (224, 224), "rgb")
    )
