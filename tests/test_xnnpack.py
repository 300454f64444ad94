"""The CPU int8 format: ops XNNPACK runs only in float stay float, exact rewrites, and --all-int8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from edgecnn.archs import create
from edgecnn.core.graph import exact_rewrites
from edgecnn.core.keras_env import keras
from edgecnn.core.keras_io import save_keras
from edgecnn.core.metadata import ModelInfo
from edgecnn.runtime.interpreter import TFLiteModel

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane


def test_average_pools_become_exact_depthwise_convolutions() -> None:
    keras.utils.set_random_seed(0)
    model = create("lenet5", 10, 32, 3)
    rewritten = exact_rewrites(model)
    kinds = {layer.name: type(layer).__name__ for layer in rewritten.layers}
    assert kinds["s2"] == kinds["s4"] == "DepthwiseConv2D"
    assert not rewritten.get_layer("s2").trainable
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert model.get_layer("s2").__class__.__name__ == "AveragePooling2D"  # the original is untouched


@pytest.mark.parametrize(
    "pool",
    [
        {"pool_size": 3, "strides": 2},  # overlapping windows
        {"pool_size": 2, "padding": "same"},  # padded windows average fewer pixels at the border
    ],
)
def test_pools_that_are_not_a_plain_kernel_are_left_alone(pool: dict) -> None:
    inputs = keras.Input((9, 9, 2))
    model = keras.Model(inputs, keras.layers.AveragePooling2D(**pool)(inputs))
    assert exact_rewrites(model) is model


@pytest.fixture(scope="module")
def mobilenet_v3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(0)
    model = create("mobilenet_v3_small", 10, 32, 3)
    info = ModelInfo(labels=[str(i) for i in range(10)], input_size=[32, 32], channels=3, arch="mobilenet_v3_small")
    return save_keras(model, tmp_path_factory.mktemp("mnv3") / "mnv3.keras", info)


def _convert(model: Path, out: Path, *flags: str) -> dict:
    result = run_cli(
        "convert", str(model), "--int8", "--calib", "random", "--no-eval", "-o", str(out), "--json", *flags
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_int8_keeps_hard_swish_float_so_xnnpack_runs_the_whole_graph(mobilenet_v3: Path, tmp_path: Path) -> None:
    default = _convert(mobilenet_v3, tmp_path / "default.tflite")
    strict = _convert(mobilenet_v3, tmp_path / "strict.tflite", "--all-int8")
    assert default["float_ops"] == {"HARD_SWISH": 19} and strict["float_ops"] == {}
    assert default["inputs"][0]["dtype"] == strict["inputs"][0]["dtype"] == "uint8"
    assert default["ops"]["CONV_2D"] == strict["ops"]["CONV_2D"] == 41
    assert TFLiteModel(tmp_path / "default.tflite").undelegated_ops() == ["QUANTIZE", "SOFTMAX", "QUANTIZE"]
    assert TFLiteModel(tmp_path / "strict.tflite").undelegated_ops().count("HARD_SWISH") == 19


def test_int8_with_float_hard_swish_matches_keras(mobilenet_v3: Path, tmp_path: Path) -> None:
    from edgecnn.trainer.load import load_keras

    pixels = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    _convert(mobilenet_v3, tmp_path / "m.tflite")
    tflite = TFLiteModel(tmp_path / "m.tflite")
    model, _ = load_keras(mobilenet_v3)
    expected = model(pixels.astype(np.float32)).numpy()
    got = tflite.predict(pixels)
    np.testing.assert_allclose(got, expected, atol=0.02)  # random calibration; one uint8 output step is 1/256


def test_lenet5_int8_is_one_xnnpack_partition_and_all_int8_is_not(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    info = ModelInfo(labels=[str(i) for i in range(10)], input_size=[32, 32], channels=3, arch="lenet5")
    model = save_keras(create("lenet5", 10, 32, 3), tmp_path / "lenet5.keras", info)
    default = _convert(model, tmp_path / "default.tflite")
    strict = _convert(model, tmp_path / "strict.tflite", "--all-int8")
    assert "AVERAGE_POOL_2D" not in default["ops"] and default["ops"]["DEPTHWISE_CONV_2D"] == 2
    assert strict["ops"]["AVERAGE_POOL_2D"] == 2 and "DEPTHWISE_CONV_2D" not in strict["ops"]
    assert TFLiteModel(tmp_path / "default.tflite").undelegated_ops() == ["QUANTIZE", "SOFTMAX", "QUANTIZE"]
