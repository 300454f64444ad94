"""VGG (Simonyan & Zisserman, 2014, "Very Deep Convolutional Networks for Large-Scale Image Recognition").

Five blocks of 3x3 convolutions, each closed by a 2x2 max-pool, then a classifier. Configurations
A (VGG-11) and D (VGG-16) from the paper's Table 1.

- ``vgg11`` / ``vgg16``: the paper's 4096-4096 dense head with dropout 0.5 on a flattened 7x7x512
  map (224 input). ``vgg16`` without batch norm has the layers and names of keras.applications.VGG16
  (138,357,544 parameters at 224/1000), so its ImageNet weights load by name.
- ``vgg11_small`` / ``vgg16_small``: the same convolutions for 32x32 data (the five pools bring it
  to 1x1), with batch norm by default and a global-average-pool -> 512 dense head instead of the
  two 4096 layers (CIFAR-style, as in Liu & Deng 2015).

``batch_norm`` puts batch norm between each convolution and its activation; those convolutions
then have no bias (batch norm's offset replaces it).
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import make_divisible
from edgecnn.archs.layers import activation as act
from edgecnn.archs.registry import register
from edgecnn.core.keras_env import keras

BN_MOMENTUM = 0.9  # short runs need faster moving statistics (measured in mobilenet.py)

# He et al. 2015 ("Delving Deep into Rectifiers") trained 22- and 30-layer VGG-style nets from scratch with
# this initialization; with Keras' default (Glorot) the signal's variance halves at every ReLU layer, so the
# untrained net outputs near-equal probabilities (and the paper had to grow D from a trained A).
INIT = "he_normal"

# (filters, convolutions) per block, from Table 1 of the paper
CONFIGS = {
    "A": [(64, 1), (128, 1), (256, 2), (512, 2), (512, 2)],
    "D": [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)],
}


def _conv_stack(x: Any, config: str, width: float, activation: str, batch_norm: bool) -> Any:
    """The five convolution blocks ``block1..block5``, each ending in a 2x2 max-pool."""

    layers = keras.layers
    for block, (filters, convs) in enumerate(CONFIGS[config], start=1):
        for i in range(1, convs + 1):
            name = f"block{block}_conv{i}"
            x = layers.Conv2D(
                make_divisible(filters * width),
                3,
                padding="same",
                use_bias=not batch_norm,
                kernel_initializer=INIT,
                name=name,
            )(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=name + "_bn")(x)
            x = act(activation, name + "_act")(x)
        # 'same' changes nothing on even maps (all of a 224 or 32 input) and lets odd sizes build
        x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{block}_pool")(x)
    return x


def _dense(x: Any, units: int, activation: str, dropout: float, name: str) -> Any:
    """Hidden dense layer ``name`` -> activation -> dropout."""

    x = keras.layers.Dense(units, kernel_initializer=INIT, name=name)(x)
    x = act(activation, name + "_act")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=name + "_dropout")(x)
    return x


def _vgg(x: Any, num_classes: int, config: str, width: float, dropout: float, activation: str, batch_norm: bool) -> Any:
    """Paper head: flatten -> fc1 4096 -> fc2 4096 -> softmax (dropout after each hidden layer)."""

    x = _conv_stack(x, config, width, activation, batch_norm)
    x = keras.layers.Flatten(name="flatten")(x)
    x = _dense(x, make_divisible(4096 * width), activation, dropout, "fc1")
    x = _dense(x, make_divisible(4096 * width), activation, dropout, "fc2")
    return keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)


def _vgg_small(
    x: Any, num_classes: int, config: str, width: float, dropout: float, activation: str, batch_norm: bool
) -> Any:
    """Small-input head: global average pool -> fc1 512 -> softmax."""

    x = _conv_stack(x, config, width, activation, batch_norm)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = _dense(x, make_divisible(512 * width), activation, dropout, "fc1")
    return keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)


@register(family="vgg", default_size=224)
def vgg11(
    x: Any,
    num_classes: int,
    width: float = 1.0,
    dropout: float = 0.5,
    activation: str = "relu",
    batch_norm: bool = False,
) -> Any:
    """VGG-11 (configuration A) with the 4096-4096 dense head (133M parameters at 1000 classes)."""
    return _vgg(x, num_classes, "A", width, dropout, activation, batch_norm)


@register(family="vgg", default_size=224)
def vgg16(
    x: Any,
    num_classes: int,
    width: float = 1.0,
    dropout: float = 0.5,
    activation: str = "relu",
    batch_norm: bool = False,
) -> Any:
    """VGG-16 (configuration D) with the 4096-4096 dense head, as keras.applications.VGG16 (138M)."""
    return _vgg(x, num_classes, "D", width, dropout, activation, batch_norm)


@register(family="vgg", default_size=32)
def vgg11_small(
    x: Any,
    num_classes: int,
    width: float = 1.0,
    dropout: float = 0.5,
    activation: str = "relu",
    batch_norm: bool = True,
) -> Any:
    """VGG-11 convolutions for 32x32 data with batch norm and a 512 dense head (9.5M parameters)."""
    return _vgg_small(x, num_classes, "A", width, dropout, activation, batch_norm)


@register(family="vgg", default_size=32)
def vgg16_small(
    x: Any,
    num_classes: int,
    width: float = 1.0,
    dropout: float = 0.5,
    activation: str = "relu",
    batch_norm: bool = True,
) -> Any:
    """VGG-16 convolutions for 32x32 data with batch norm and a 512 dense head (15M parameters)."""
    return _vgg_small(x, num_classes, "D", width, dropout, activation, batch_norm)
