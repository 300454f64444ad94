"""LeNet-5 (LeCun et al., 1998, "Gradient-based learning applied to document recognition").

Two 5x5 convolutions with 2x2 average pooling, then 120-84-N dense layers. ReLU by default
(the paper's scaled tanh is available as ``activation="tanh"``).
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.layers import activation as act
from edgecnn.archs.registry import register
from edgecnn.core.keras_env import keras


@register(family="lenet", default_size=32, edgetpu=True)
def lenet5(x: Any, num_classes: int, activation: str = "relu", dropout: float = 0.0) -> Any:
    """LeNet-5: conv(6,5x5) pool conv(16,5x5) pool fc120 fc84 softmax."""

    layers = keras.layers
    x = layers.Conv2D(6, 5, name="c1")(x)
    x = act(activation, "c1_act")(x)
    x = layers.AveragePooling2D(2, name="s2")(x)
    x = layers.Conv2D(16, 5, name="c3")(x)
    x = act(activation, "c3_act")(x)
    x = layers.AveragePooling2D(2, name="s4")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, name="c5")(x)
    x = act(activation, "c5_act")(x)
    x = layers.Dense(84, name="f6")(x)
    x = act(activation, "f6_act")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)
