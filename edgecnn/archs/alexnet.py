"""AlexNet (Krizhevsky et al., 2012, "ImageNet Classification with Deep Convolutional Neural Networks").

The single-tower variant of torchvision (from Krizhevsky's 2014 "One weird trick" paper): five
convolutions of 64-192-384-256-256 channels behind an 11x11 stride-4 stem, three 3x3/2 max-pools,
then two 4096 dense layers with dropout 0.5: 61,100,840 parameters at 224/1000 like torchvision.
No local response normalization (it does not map to the Edge TPU and later work found it useless).

At 224 the last pool leaves 6x6x256, the 9216 features torchvision's adaptive pool produces; other
sizes flatten whatever the last pool leaves (a tf_keras model is built for one input size).
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import make_divisible
from edgecnn.archs.layers import activation as act
from edgecnn.archs.registry import register
from edgecnn.core.keras_env import keras

# He et al. 2015 ("Delving Deep into Rectifiers"): an initialization that keeps the signal's variance through
# ReLU layers. With Keras' default (Glorot) the variance halves at every layer, so the untrained net outputs
# near-equal probabilities: it trains slowly, and int8 rounding cannot even resolve its top class.
INIT = "he_normal"

# (filters, kernel, max-pool after) for conv2..conv5; conv1 is the 11x11/4 stem
CONVS = [(192, 5, True), (384, 3, False), (256, 3, False), (256, 3, True)]


def _max_pool(x: Any, name: str) -> Any:
    """3x3/2 max-pool, 'valid' as in the paper; 'same' only once the map is smaller than the window.

    Every map of a 224 input is at least 13x13, so the switch only lets small inputs (down to 7x7) build.
    """

    padding = "valid" if min(x.shape[1], x.shape[2]) >= 3 else "same"
    return keras.layers.MaxPooling2D(3, strides=2, padding=padding, name=name)(x)


def _alexnet(x: Any, num_classes: int, width: float, dropout: float, activation: str) -> Any:
    layers = keras.layers
    x = layers.ZeroPadding2D(2, name="conv1_pad")(x)
    x = layers.Conv2D(make_divisible(64 * width), 11, strides=4, kernel_initializer=INIT, name="conv1")(x)
    x = act(activation, "conv1_act")(x)
    x = _max_pool(x, "pool1")
    for index, (filters, kernel, pool) in enumerate(CONVS, start=2):
        x = layers.Conv2D(
            make_divisible(filters * width), kernel, padding="same", kernel_initializer=INIT, name=f"conv{index}"
        )(x)
        x = act(activation, f"conv{index}_act")(x)
        if pool:
            x = _max_pool(x, f"pool{index}")
    x = layers.Flatten(name="flatten")(x)
    for name in ("fc6", "fc7"):
        if dropout:
            x = layers.Dropout(dropout, name=name + "_dropout")(x)  # torchvision drops before each hidden layer
        x = layers.Dense(make_divisible(4096 * width), kernel_initializer=INIT, name=name)(x)
        x = act(activation, name + "_act")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)


@register(family="alexnet", default_size=224)
def alexnet(x: Any, num_classes: int, width: float = 1.0, dropout: float = 0.5, activation: str = "relu") -> Any:
    """AlexNet, single tower: convolutions 64-192-384-256-256, dense 4096-4096 (61M parameters)."""
    return _alexnet(x, num_classes, width, dropout, activation)
