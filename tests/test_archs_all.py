"""Every registered architecture (from the registry, never a hand-kept list) builds, runs, saves and
reloads, converts to full int8 with uint8 I/O, runs in LiteRT, and stays close to its Keras self on real
images (digits).

The networks are untrained (training ~30 members is the zoo's job, training/zoo.py): BatchNorm gets the
statistics of real images so activations have realistic ranges, but an untrained head's probabilities
sit closer together than the int8 output step (1/256). So the agreement bound here is a smoke check
(a broken conversion gives |dp| ~ 0.1 and chance-level agreement); trained-model parity is asserted in
test_pipeline.py (LeNet-5, within 1 point), test_qat.py and recorded per member in the zoo table.
Members over HEAVY_PARAMS parameters at 32x32 run with ``-m slow`` to keep CI inside its budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecnn.archs import create, list_archs
from edgecnn.trainer.fit import set_bn_statistics

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane

SIZE = 32
HEAVY_PARAMS = 700_000


def _params_at_test_size(name: str) -> int:
    from edgecnn.core.keras_env import keras

    params = create(name, 10, SIZE, 3).count_params()
    keras.backend.clear_session()
    return params


def members() -> list:
    return [
        pytest.param(n, marks=pytest.mark.slow) if _params_at_test_size(n) > HEAVY_PARAMS else n
        for n in list_archs("classify")  # detectors and segmenters: tests/test_detect.py, test_segment.py
    ]


@pytest.fixture(scope="module")
def digits_rgb() -> np.ndarray:
    """Real images: 96 validation digits at 32x32, RGB (uint8)."""
    from edgecnn.data import load_split

    return load_split("digits", "classify", SIZE, channels=3).val.x[:96]


@pytest.mark.parametrize("name", members())
def test_member_end_to_end(name: str, digits_rgb, tmp_path: Path) -> None:
    from edgecnn.convert.tflite import to_tflite
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.core.metadata import ModelInfo
    from edgecnn.runtime import TFLiteModel
    from edgecnn.trainer.load import load_keras

    keras.utils.set_random_seed(0)
    model = create(name, 10, SIZE, 3)
    calib, test = digits_rgb[:48], digits_rgb[48:]
    set_bn_statistics(model, calib)
    probs = model(test.astype(np.float32), training=False).numpy()
    assert probs.shape == (len(test), 10)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)

    path = save_keras(model, tmp_path / f"{name}.keras", ModelInfo(labels=[str(i) for i in range(10)]))
    reloaded, info = load_keras(path)
    np.testing.assert_allclose(reloaded(test.astype(np.float32), training=False).numpy(), probs, atol=1e-5)
    assert info.labels[-1] == "9"

    tflite = tmp_path / f"{name}_int8.tflite"
    tflite.write_bytes(to_tflite(model, "int8", "uint8", calib))
    runner = TFLiteModel(tflite)
    assert runner.input["dtype"] == np.uint8 and runner.input_shape == (1, SIZE, SIZE, 3)
    assert runner.outputs[0]["dtype"] == np.uint8
    int8_probs = runner.predict(test)
    assert int8_probs.shape == probs.shape
    agreement = float((int8_probs.argmax(1) == probs.argmax(1)).mean())
    mean_abs = float(np.abs(int8_probs - probs).mean())
    print(f"{name}: int8 top-1 agreement {agreement:.2f}, mean |dp| {mean_abs:.4f}")
    assert mean_abs < 0.07, mean_abs
    assert agreement >= 0.2, agreement  # twice chance
