"""GoogLeNet / Inception v1 (Szegedy et al., 2014, "Going Deeper with Convolutions").

Inception modules run four branches side by side and concatenate them: 1x1; 1x1 -> 3x3;
1x1 -> 5x5; 3x3 max-pool -> 1x1. Channel counts are those of the paper's Table 1, so the modules
output 256, 480 (3a, 3b), 512, 512, 512, 528, 832 (4a..4e), 832, 1024 (5a, 5b).

Departures from the paper, all the usual ones: no auxiliary classifiers (they only help training
and ``classifier`` gives one output), no local response normalization (no Edge TPU op, and it
adds nothing once batch norm is there), and batch norm after every convolution by default (as
torchvision's GoogLeNet; ``batch_norm=False`` gives the paper's biased convolutions). Unlike
torchvision, the 5x5 branch really is 5x5. Pools use 'same' padding, which gives the paper's
sizes at 224 (112 -> 56 -> 28 -> 14 -> 7, like torchvision's ceil mode) and lets 32x32 build.
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import classifier, make_divisible
from edgecnn.archs.layers import activation as act
from edgecnn.archs.registry import register
from edgecnn.core.keras_env import keras

BN_EPSILON = 1e-3  # torchvision's GoogLeNet
BN_MOMENTUM = 0.9  # short runs need faster moving statistics (measured in mobilenet.py)
# He et al. 2015: keeps the signal's variance through ReLU layers; without batch norm, Keras' default
# (Glorot) halves it at every layer and the untrained net outputs near-equal probabilities.
INIT = "he_normal"

# Table 1: (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "pool" is a 3x3/2 max-pool
TABLE: list[tuple[str, int, int, int, int, int, int] | str] = [
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    "pool",
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    "pool",
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
]


def _conv(x: Any, filters: int, kernel: int, activation: str, batch_norm: bool, name: str, stride: int = 1) -> Any:
    """Convolution ('same') -> optional batch norm -> activation, the unit every branch is built from."""

    layers = keras.layers
    x = layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=not batch_norm, kernel_initializer=INIT, name=name
    )(x)
    if batch_norm:
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name + "_bn")(x)
    return act(activation, name + "_act")(x)


def _max_pool(x: Any, name: str, stride: int = 2) -> Any:
    return keras.layers.MaxPooling2D(3, strides=stride, padding="same", name=name)(x)


def _inception_module(
    x: Any, channels: tuple[int, ...], width: float, activation: str, batch_norm: bool, name: str
) -> Any:
    """The four branches of ``inception_<name>`` concatenated; ``channels`` is one row of Table 1."""

    c1, c3r, c3, c5r, c5, cp = (make_divisible(c * width) for c in channels)
    prefix = f"inception_{name}"
    b1 = _conv(x, c1, 1, activation, batch_norm, prefix + "_1x1")
    b3 = _conv(x, c3r, 1, activation, batch_norm, prefix + "_3x3_reduce")
    b3 = _conv(b3, c3, 3, activation, batch_norm, prefix + "_3x3")
    b5 = _conv(x, c5r, 1, activation, batch_norm, prefix + "_5x5_reduce")
    b5 = _conv(b5, c5, 5, activation, batch_norm, prefix + "_5x5")
    bp = _max_pool(x, prefix + "_pool", stride=1)
    bp = _conv(bp, cp, 1, activation, batch_norm, prefix + "_pool_proj")
    return keras.layers.Concatenate(name=prefix)([b1, b3, b5, bp])


def _googlenet(x: Any, num_classes: int, width: float, dropout: float, activation: str, batch_norm: bool) -> Any:
    """Stem (7x7/2, pool, 1x1, 3x3, pool) -> inception 3a..5b with pools between -> softmax."""
    x = _conv(x, make_divisible(64 * width), 7, activation, batch_norm, "conv1_7x7", stride=2)
    x = _max_pool(x, "pool1")
    x = _conv(x, make_divisible(64 * width), 1, activation, batch_norm, "conv2_3x3_reduce")
    x = _conv(x, make_divisible(192 * width), 3, activation, batch_norm, "conv2_3x3")
    x = _max_pool(x, "pool2")
    pools = 2
    for row in TABLE:
        if isinstance(row, str):
            pools += 1
            x = _max_pool(x, f"pool{pools}")
        else:
            x = _inception_module(x, row[1:], width, activation, batch_norm, row[0])
    return classifier(x, num_classes, dropout)


@register(family="inception", default_size=224)
def googlenet(
    x: Any,
    num_classes: int,
    width: float = 1.0,
    dropout: float = 0.4,
    activation: str = "relu",
    batch_norm: bool = True,
) -> Any:
    """GoogLeNet (Inception v1) without auxiliary heads: modules 3a..5b of the paper's table."""
    return _googlenet(x, num_classes, width, dropout, activation, batch_norm)
