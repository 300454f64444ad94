"""Helpers shared by the family files: channel rounding, activations by name, classifier head."""

from __future__ import annotations

from typing import Any

from edgecnn.errors import EdgecnnError


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10% (MobileNet rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


ACTIVATIONS = ("relu", "relu6", "tanh", "swish", "hard_swish", "gelu")


def activation(name: str, label: str | None = None) -> Any:
    """A Keras layer for an activation name; ReLU6 and ReLU map fully to int8 and the Edge TPU."""
    from edgecnn.keras_env import keras

    layers = keras.layers
    table = {
        "relu": lambda: layers.ReLU(name=label),
        "relu6": lambda: layers.ReLU(6.0, name=label),
        "tanh": lambda: layers.Activation("tanh", name=label),
        "swish": lambda: layers.Activation("swish", name=label),
        "hard_swish": lambda: _hard_swish(label),
        "gelu": lambda: layers.Activation("gelu", name=label),
    }
    if name not in table:
        raise EdgecnnError(f"unknown activation {name!r}; use one of: {', '.join(ACTIVATIONS)}")
    return table[name]()


def _hard_swish(label: str | None) -> Any:
    """edgecnn's HardSwish layer (tf_keras has no hard_swish activation); imported here, not at the top,
    so that this module stays importable without TensorFlow."""
    from edgecnn.archs.layers import HardSwish

    return HardSwish(name=label)


def classifier(x: Any, num_classes: int, dropout: float = 0.0) -> Any:
    """Global average pool -> dropout -> dense softmax: the head every modern family shares."""
    from edgecnn.keras_env import keras

    layers = keras.layers
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)
