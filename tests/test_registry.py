"""The architecture registry: names, options, errors, and the built models' contracts."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.archs import create, get_arch, list_archs
from edgecnn.core.errors import EdgecnnError

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane


def test_registry_lists_spine_members() -> None:
    names = list_archs()
    assert {"lenet5", "mobilenet_v2", "mobilenet_v2_035"} <= set(names)
    assert names == sorted(names)


def test_unknown_name_suggests() -> None:
    with pytest.raises(EdgecnnError, match=r"unknown architecture 'lenet6'; did you mean lenet5\b"):
        get_arch("lenet6")


def test_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(EdgecnnError, match=r"lenet5 has no option alpha; its options are: activation, dropout"):
        create("lenet5", 10, 32, 1, alpha=0.5)


def test_lenet5_is_the_classic_61706_parameters() -> None:
    model = create("lenet5", 10, 32, 1)
    assert model.count_params() == 61706
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.35])
def test_mobilenet_v2_matches_keras_applications(alpha: float) -> None:
    """Same layers, names and parameter counts as keras.applications.MobileNetV2 (224x224, 1000 classes)."""
    from edgecnn.core.keras_env import keras

    ours = create("mobilenet_v2", 1000, 224, 3, alpha=alpha)
    ref = keras.applications.MobileNetV2(weights=None, alpha=alpha)
    assert ours.count_params() == ref.count_params()
    ref_weights = {w.name: tuple(w.shape) for w in ref.weights}
    ours_weights = {w.name: tuple(w.shape) for w in ours.weights}
    assert ours_weights == ref_weights


def test_models_take_raw_pixels() -> None:
    model = create("mobilenet_v2_035", 10, 32, 3, small_input=True)
    assert model.layers[1].name == "normalize"
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    probs = model(x, training=False).numpy()
    assert probs.shape == (2, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
