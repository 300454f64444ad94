"""The ConvNeXt family: builds, runs, saves, converts to full int8, and has the published size."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecnn.archs import create, get_arch, list_archs
from edgecnn.core.errors import EdgecnnError

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane

VARIANTS = ("convnext_atto", "convnext_tiny", "convnext_edge")
# What an int8 Edge TPU model may contain: QUANTIZE converts the uint8 I/O, BN is folded away.
EDGETPU_OPS = {"QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}

_MODELS: dict[str, Any] = {}


def small(name: str) -> Any:
    """``create(name, 10, 32, 3)``, built once per test session."""
    if name not in _MODELS:
        _MODELS[name] = create(name, 10, 32, 3)
    return _MODELS[name]


def pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3)).astype(np.float32)


def test_registered() -> None:
    assert set(VARIANTS) <= set(list_archs())
    assert [get_arch(n).edgetpu for n in VARIANTS] == [False, False, True]
    assert get_arch("convnext_edge").options() == ["width", "depths", "dropout", "small_input", "kernel_size"]
    assert get_arch("convnext_tiny").options() == ["width", "depths", "dropout", "small_input", "layer_scale"]


# convnext_tiny (28M params) shares atto's builder; it runs with -m slow to keep CI inside its budget
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "convnext_tiny" else n for n in VARIANTS]
)
def test_forward_and_save_reload(name: str, tmp_path: Path) -> None:
    from edgecnn.core.keras_env import keras

    model = small(name)
    x = pixels(2)
    y = model(x, training=False).numpy()
    assert y.shape == (2, 10) and np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_array_equal(again(x, training=False).numpy(), y)


def test_layer_scale_loads_in_a_fresh_process(tmp_path: Path) -> None:
    """load_keras imports Keras, then the families: LayerScale must be registered by then."""
    model = small("convnext_atto")
    assert any(type(layer).__name__ == "LayerScale" for layer in model.layers)
    model.save(tmp_path / "m.keras")
    code = (
        "import sys; from edgecnn.trainer.load import load_keras; "
        "m, _ = load_keras(sys.argv[1]); print(sum(type(l).__name__ == 'LayerScale' for l in m.layers))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "12"  # one per block: 2 + 2 + 6 + 2


def _atto_params(classes: int) -> int:
    """ConvNeXt-Atto's parameters worked out from the layer list (timm reports 3.70M at 1000 classes)."""
    depths, dims = (2, 2, 6, 2), (40, 80, 160, 320)
    # block: depthwise 49C + C, LayerNorm 2C, 1x1 C->4C + 4C, 1x1 4C->C + C, layer scale C = 8C^2 + 58C
    blocks = sum(n * (8 * c * c + 58 * c) for n, c in zip(depths, dims, strict=True))
    stem = 4 * 4 * 3 * dims[0] + dims[0] + 2 * dims[0]
    downsample = sum(2 * a + 2 * 2 * a * b + b for a, b in zip(dims, dims[1:], strict=False))
    head = 2 * dims[-1] + dims[-1] * classes + classes
    return blocks + stem + downsample + head


def test_published_sizes() -> None:
    """ConvNeXt-T: 28,589,128 parameters, as keras.applications.ConvNeXtTiny and the paper's 28M / 4.5 GFLOPs."""
    from edgecnn.core.keras_env import keras
    from edgecnn.insight.profile import profile_model

    tiny = create("convnext_tiny", 1000, 224, 3)
    reference = keras.applications.ConvNeXtTiny(weights=None)
    assert tiny.count_params() == reference.count_params() == 28_589_128
    assert profile_model(tiny).total_macs == pytest.approx(4.5e9, rel=0.02)
    assert _atto_params(1000) == 3_695_520
    assert create("convnext_atto", 1000, 224, 3).count_params() == 3_695_520


def test_options() -> None:
    model = create("convnext_edge", 10, 32, 3, small_input=True, width=0.5, depths=[1, 1, 2, 1], kernel_size=3)
    assert model.get_layer("stem_conv").output_shape == (None, 16, 16, 24)  # 2x2 stride 2; 40 * 0.5 -> 24
    assert model.get_layer("stage_3_block_0_depthwise").kernel_size == (3, 3)
    assert model.get_layer("stage_3_block_0_add").output_shape == (None, 2, 2, 160)
    assert not any(type(layer).__name__ in ("LayerNormalization", "LayerScale") for layer in model.layers)
    with pytest.raises(EdgecnnError, match="depths must be 4"):
        create("convnext_atto", 10, 32, 3, depths=[2, 2, 2])
    with pytest.raises(EdgecnnError, match="kernel_size must be 3 or 5"):
        create("convnext_edge", 10, 32, 3, kernel_size=7)


def _int8_run(model: Any) -> tuple[Counter, np.ndarray]:
    """Full-int8 conversion with uint8 I/O, then one image through LiteRT: (op counts, probabilities)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.convert.tflite import to_tflite

    flatbuffer = to_tflite(model, "int8", "uint8", pixels(16, seed=1).astype(np.uint8))
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    ops = Counter(op["op_name"] for op in interpreter._get_ops_details())
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    interpreter.set_tensor(inp["index"], pixels(1).astype(np.uint8))
    interpreter.invoke()
    scale, zero = out["quantization"]
    return ops, (interpreter.get_tensor(out["index"]).astype(np.float32) - zero) * scale


@pytest.mark.parametrize(
    "name", ["convnext_atto", "convnext_edge", pytest.param("convnext_tiny", marks=pytest.mark.slow)]
)
def test_full_int8_conversion(name: str) -> None:
    model = small(name)
    ops, probs = _int8_run(model)
    expected = model(pixels(1), training=False).numpy()
    assert probs.shape == (1, 10) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs, expected, atol=0.1)
    if get_arch(name).edgetpu:
        assert set(ops) - {"DELEGATE"} <= EDGETPU_OPS, ops  # no LayerNorm arithmetic, GELU or leftover MUL
    else:
        assert ops["GELU"] and ops["RSQRT"]  # why the reference design is not Edge TPU material
