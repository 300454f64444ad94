"""Helpers shared by the family files: channel rounding, activations by name, classifier head."""

from __future__ import annotations

from typing import Any

from edgecnn.core.keras_env import keras


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10% (MobileNet rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


ACTIVATIONS = ("relu", "relu6", "tanh", "swish", "hard_swish", "gelu")


def classifier(x: Any, num_classes: int, dropout: float = 0.0) -> Any:
    """Global average pool -> dropout -> dense softmax: the head every modern family shares."""

    layers = keras.layers
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)
