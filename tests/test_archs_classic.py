"""The classic families (AlexNet, VGG, GoogLeNet, ResNet, DenseNet) against their published sizes."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.archs import create
from edgecnn.core.errors import EdgecnnError

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane


def _trainable_params(model: object) -> int:
    """What PyTorch counts: Keras' count_params also includes batch norm's moving mean and variance."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize(
    ("ours", "reference", "params"),
    [("vgg16", "VGG16", 138_357_544), ("resnet50", "ResNet50", 25_636_712), ("densenet121", "DenseNet121", 8_062_504)],
)
def test_matches_keras_applications(ours: str, reference: str, params: int) -> None:
    """Same parameter count, weight names and shapes as keras.applications at 224x224 and 1000 classes."""
    from edgecnn.core.keras_env import keras

    model = create(ours, 1000, 224, 3)
    ref = getattr(keras.applications, reference)(weights=None)
    assert model.count_params() == ref.count_params() == params
    assert {w.name: tuple(w.shape) for w in model.weights} == {w.name: tuple(w.shape) for w in ref.weights}


@pytest.mark.parametrize(
    ("name", "trainable"),
    [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("alexnet", 61_100_840), ("vgg11", 132_863_336)],
)
def test_matches_torchvision_parameter_counts(name: str, trainable: int) -> None:
    model = create(name, 1000, 224, 3)
    assert _trainable_params(model) == trainable


def test_googlenet_modules_follow_the_paper_table() -> None:
    """Output channels and sizes of every inception module at 224 (Szegedy et al. 2014, Table 1)."""
    model = create("googlenet", 1000, 224, 3)
    expected = {
        "3a": (28, 256),
        "3b": (28, 480),
        "4a": (14, 512),
        "4b": (14, 512),
        "4c": (14, 512),
        "4d": (14, 528),
        "4e": (14, 832),
        "5a": (7, 832),
        "5b": (7, 1024),
    }
    for name, (size, channels) in expected.items():
        assert model.get_layer(f"inception_{name}").output_shape == (None, size, size, channels), name


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet18_cifar", 11_183_562),
        ("resnet20", 274_042),
        ("densenet_small", 793_150),
        ("vgg11_small", 9_496_522),
        ("vgg16_small", 14_995_146),
    ],
)
def test_small_variants_classify_32x32(name: str, params: int) -> None:
    model = create(name, 10, 32, 3)
    assert model.count_params() == params
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    y = model(x, training=False).numpy()
    assert y.shape == (2, 10)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "googlenet", "resnet18"])
def test_imagenet_variants_also_build_at_32x32(name: str) -> None:
    """Pool padding that changes nothing at 224 lets the ImageNet layouts run on 32x32 data too."""
    model = create(name, 10, 32, 3)
    assert model.output_shape == (None, 10)


def test_densenet_small_rejects_a_depth_that_is_not_6n_plus_4() -> None:
    with pytest.raises(EdgecnnError, match="depth must be 6n \\+ 4"):
        create("densenet_small", 10, 32, 3, depth=50)
