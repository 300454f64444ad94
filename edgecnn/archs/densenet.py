"""DenseNet (Huang et al., 2016, "Densely Connected Convolutional Networks").

Inside a dense block every layer (BN -> ReLU -> 1x1 conv to 4k -> BN -> ReLU -> 3x3 conv to k,
the "BC" bottleneck) sees the concatenation of all earlier outputs, so channels grow by the growth
rate k per layer. Transitions (BN -> ReLU -> 1x1 conv halving the channels -> 2x2 average pool)
shrink the map between blocks.

- ``densenet121``: k=32, blocks 6-12-24-16, layers and names as keras.applications.DenseNet121
  (8,062,504 parameters at 224/1000), so its ImageNet weights load by name.
- ``densenet_small``: the paper's CIFAR network DenseNet-BC (Section 4.1): 3x3 stem of 2k channels,
  three blocks of (depth - 4) / 6 layers at 32x32, 16x16, 8x8; depth 100 and k=12 give 0.8M.
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import classifier
from edgecnn.archs.layers import activation as act
from edgecnn.archs.registry import register
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras

# keras.applications' epsilon; momentum 0.9 for short runs (measured in mobilenet.py)
BN_EPSILON = 1.001e-5
BN_MOMENTUM = 0.9
COMPRESSION = 0.5  # transition layers keep half of the channels (the "C" of DenseNet-BC)


def _bn_act(x: Any, activation: str, name: str) -> Any:
    """Pre-activation: batch norm ``<name>_bn`` then the activation."""

    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name + "_bn")(x)
    return act(activation, name + "_relu")(x)


def _conv_block(x: Any, growth_rate: int, activation: str, name: str) -> Any:
    """One dense layer: bottleneck to ``4 * growth_rate``, 3x3 to ``growth_rate``, concatenated to the input."""

    layers = keras.layers
    y = _bn_act(x, activation, name + "_0")
    y = layers.Conv2D(4 * growth_rate, 1, use_bias=False, name=name + "_1_conv")(y)
    y = _bn_act(y, activation, name + "_1")
    y = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=name + "_2_conv")(y)
    return layers.Concatenate(name=name + "_concat")([x, y])


def _transition(x: Any, activation: str, name: str) -> Any:
    """Halve the channels (1x1 conv) and the resolution (2x2 average pool)."""

    layers = keras.layers
    x = _bn_act(x, activation, name)
    x = layers.Conv2D(int(x.shape[-1] * COMPRESSION), 1, use_bias=False, name=name + "_conv")(x)
    # 'same' changes nothing on even maps (every map of a 224 input) and keeps odd ones' last row
    return layers.AveragePooling2D(2, strides=2, padding="same", name=name + "_pool")(x)


def _imagenet_stem(x: Any, activation: str) -> Any:
    """7x7/2 convolution of 64 channels then 3x3/2 max-pool (224 -> 56), as keras.applications."""

    layers = keras.layers
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1/conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="conv1/bn")(x)
    x = act(activation, "conv1/relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)  # zeros are neutral for a max-pool after ReLU
    return layers.MaxPooling2D(3, strides=2, name="pool1")(x)


def _densenet(
    x: Any,
    num_classes: int,
    blocks: list[int],
    growth_rate: int,
    cifar_stem: bool,
    dropout: float,
    activation: str,
) -> Any:
    """Stem -> dense blocks ``conv2..`` with transitions ``pool2..`` between -> BN-ReLU -> softmax."""

    if cifar_stem:
        x = keras.layers.Conv2D(2 * growth_rate, 3, padding="same", use_bias=False, name="conv1/conv")(x)
    else:
        x = _imagenet_stem(x, activation)
    for stage, layers_in_block in enumerate(blocks, start=2):
        for i in range(layers_in_block):
            x = _conv_block(x, growth_rate, activation, f"conv{stage}_block{i + 1}")
        if stage < len(blocks) + 1:
            x = _transition(x, activation, f"pool{stage}")
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bn")(x)
    x = act(activation, "relu")(x)
    return classifier(x, num_classes, dropout)


@register(family="densenet", default_size=224)
def densenet121(x: Any, num_classes: int, growth_rate: int = 32, dropout: float = 0.0, activation: str = "relu") -> Any:
    """DenseNet-121: growth 32, blocks 6-12-24-16, same layers and names as keras.applications."""
    return _densenet(x, num_classes, [6, 12, 24, 16], growth_rate, False, dropout, activation)


@register(family="densenet", default_size=32)
def densenet_small(
    x: Any,
    num_classes: int,
    growth_rate: int = 12,
    depth: int = 100,
    dropout: float = 0.0,
    activation: str = "relu",
) -> Any:
    """DenseNet-BC for 32x32 data: growth 12, depth 100 (3 blocks of 16 layers, 0.8M parameters)."""
    if depth < 10 or (depth - 4) % 6:
        raise EdgecnnError(f"densenet_small depth must be 6n + 4 with n >= 1 (10, 16, 22, 40, 100, ...), not {depth}")
    per_block = (depth - 4) // 6
    return _densenet(x, num_classes, [per_block] * 3, growth_rate, True, dropout, activation)
