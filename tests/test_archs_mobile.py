"""MobileNet v1/v3, EfficientNet-Lite and the custom layers they use (hard-swish, squeeze-excite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecnn.archs import create, get_arch, list_archs

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane

MOBILENET_V1 = ["mobilenet_v1", "mobilenet_v1_050", "mobilenet_v1_025"]
MOBILENET_V3 = ["mobilenet_v3_small", "mobilenet_v3_small_075", "mobilenet_v3_large", "mobilenet_v3_large_075"]
EFFICIENTNET_LITE = [f"efficientnet_lite{i}" for i in range(5)]
# the classifier head is a Dense layer here, a 1x1 convolution in keras.applications
HEAD_LAYERS = ("predictions", "conv_preds", "Conv_2", "Logits")


def test_new_variants_are_registered_with_their_options() -> None:
    assert set(MOBILENET_V1 + MOBILENET_V3 + EFFICIENTNET_LITE) <= set(list_archs())
    assert get_arch("mobilenet_v1").options() == ["alpha", "dropout", "small_input"]
    assert get_arch("mobilenet_v3_small_075").options() == ["dropout", "small_input"]
    assert get_arch("efficientnet_lite2").options() == ["dropout", "small_input"]
    assert all(get_arch(name).edgetpu for name in MOBILENET_V1 + EFFICIENTNET_LITE)
    assert not any(get_arch(name).edgetpu for name in MOBILENET_V3)  # HARD_SWISH is not an Edge TPU op
    assert [get_arch(name).default_size for name in EFFICIENTNET_LITE] == [224, 240, 260, 280, 300]


def _backbone_weights(model: object) -> dict[str, tuple[int, ...]]:
    return {w.name: tuple(w.shape) for w in model.weights if not w.name.startswith(HEAD_LAYERS)}


@pytest.mark.parametrize(
    ("name", "options", "reference", "alpha"),
    [
        ("mobilenet_v1", {}, "MobileNet", 1.0),
        ("mobilenet_v1", {"alpha": 0.25}, "MobileNet", 0.25),
        ("mobilenet_v3_small", {}, "MobileNetV3Small", 1.0),
        ("mobilenet_v3_large_075", {}, "MobileNetV3Large", 0.75),
    ],
)
def test_mobilenets_match_keras_applications(name: str, options: dict, reference: str, alpha: float) -> None:
    """Same parameter count at 224x224 / 1000 classes, same backbone weight names and shapes (SE included)."""
    from edgecnn.core.keras_env import keras

    ours = create(name, 1000, 224, 3, **options)
    ref = getattr(keras.applications, reference)(weights=None, alpha=alpha)
    assert ours.count_params() == ref.count_params()
    assert _backbone_weights(ours) == _backbone_weights(ref)


def test_efficientnet_lite_compound_scaling() -> None:
    from edgecnn.archs.efficientnet_lite import B0_STAGES, LITE, round_filters, round_repeats, scaled_stages

    assert scaled_stages(1.0, 1.0) == B0_STAGES
    # Lite4 (width 1.4, depth 1.8): repeats ceil(1.8 n) except the fixed first and last stage;
    # channels 1.4 c rounded to a multiple of 8: 22.4->24, 33.6->32, 56, 112, 156.8->160, 268.8->272, 448
    lite4 = scaled_stages(LITE["lite4"].width, LITE["lite4"].depth)
    assert [s.repeats for s in lite4] == [1, 4, 4, 6, 6, 8, 1]
    assert [s.out_ch for s in lite4] == [24, 32, 56, 112, 160, 272, 448]
    assert [s.in_ch for s in lite4] == [48, 24, 32, 56, 112, 160, 272]  # 32*1.4=44.8 -> 48
    lite2 = scaled_stages(LITE["lite2"].width, LITE["lite2"].depth)
    assert [s.repeats for s in lite2] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.out_ch for s in lite2] == [16, 24, 48, 88, 120, 208, 352]
    assert round_filters(16, 1.2) == 24  # 19.2 rounds down to 16, more than 10% off, so up to 24
    assert round_repeats(3, 1.1) == 4


def test_efficientnet_lite0_has_the_published_parameter_count() -> None:
    """4.65M trainable parameters at 1000 classes (stem 32 and head 1280 fixed, no squeeze-excite)."""
    model = create("efficientnet_lite0", 1000)
    assert model.input_shape == (None, 224, 224, 3)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 4_652_008


@pytest.mark.parametrize(
    ("name", "options"),
    [("mobilenet_v1_025", {"small_input": True}), ("mobilenet_v3_small_075", {}), ("efficientnet_lite0", {})],
)
def test_new_variants_classify_32px_raw_pixels(name: str, options: dict) -> None:
    model = create(name, 10, 32, 3, **options)
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    probs = model(x, training=False).numpy()
    assert probs.shape == (2, 10)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_hard_swish_and_hard_sigmoid_values() -> None:
    from edgecnn.archs.layers import HardSigmoid, HardSwish, activation

    x = np.array([-4.0, -3.0, 0.0, 1.0, 3.0, 4.0], np.float32)
    np.testing.assert_allclose(HardSwish()(x).numpy(), [0, 0, 0, 2 / 3, 3, 4], atol=1e-6)
    np.testing.assert_allclose(HardSigmoid()(x).numpy(), [0, 0, 0.5, 2 / 3, 1, 1], atol=1e-6)
    assert isinstance(activation("hard_swish", "act"), HardSwish)


def test_squeeze_excite_config_round_trip() -> None:
    from edgecnn.archs.layers import SqueezeExcite
    from edgecnn.core.keras_env import keras

    layer = SqueezeExcite(ratio=0.5, divisor=4, gate="sigmoid", name="se")
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(copy, SqueezeExcite)
    assert copy.get_config() == layer.get_config()
    assert (copy.ratio, copy.divisor, copy.gate, copy.reduced_filters) == (0.5, 4, "sigmoid", None)
    copy.build((None, 4, 4, 12))  # reduce to make_divisible(12 * 0.5, 4) = 8 channels and back to 12
    assert [tuple(w.shape) for w in copy.weights] == [(1, 1, 12, 8), (8,), (1, 1, 8, 12), (12,)]
    with pytest.raises(ValueError, match="unknown gate"):
        SqueezeExcite(gate="tanh")


def test_custom_layers_survive_save_and_reload(tmp_path: Path) -> None:
    from edgecnn.archs.layers import HardSwish, SqueezeExcite
    from edgecnn.core.keras_env import keras
    from edgecnn.trainer.load import load_keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = HardSwish(name="hs")(x)
    x = SqueezeExcite(name="se")(x)
    model = keras.Model(inputs, x)
    model.get_layer("se").set_weights([np.full(w.shape, 0.1, np.float32) for w in model.get_layer("se").weights])
    model.save(tmp_path / "m.keras")
    loaded, _ = load_keras(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    assert isinstance(loaded.get_layer("se"), SqueezeExcite)


@pytest.mark.slow
def test_mobilenet_v3_small_converts_to_full_int8(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.convert.tflite import to_tflite

    model = create("mobilenet_v3_small", 10, 32, 3)
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    interpreter = Interpreter(model_content=to_tflite(model, "int8", "uint8", images))
    interpreter.allocate_tensors()
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "HARD_SWISH" in ops and not any("FLEX" in op or "CUSTOM" in op for op in ops)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], images[:1])
    interpreter.invoke()
    scale, zero = out["quantization"]
    probs = (interpreter.get_tensor(out["index"]).astype(np.float32) - zero) * scale
    np.testing.assert_allclose(probs, model(images[:1].astype(np.float32)).numpy(), atol=0.02)
