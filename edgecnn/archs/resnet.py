"""ResNet (He et al., 2015, "Deep Residual Learning for Image Recognition").

Stacks of residual blocks whose shortcut adds the block's input to its output; a 1x1 projection
(with batch norm) replaces the identity where the stride or channel count changes (option B).

- ``resnet50``: bottleneck blocks (1x1 -> 3x3 -> 1x1, 4x expansion), laid out and named exactly
  as keras.applications.ResNet50 (convolutions with bias, stride on the first 1x1, as in the
  paper's Caffe release), so its ImageNet weights load by name: 25,636,712 parameters at 224/1000.
- ``resnet18`` / ``resnet34``: basic blocks (two 3x3) laid out as torchvision's (bias-free
  convolutions before batch norm): 11,689,512 trainable parameters for ResNet-18 like torchvision;
  Keras also counts batch norm's moving mean and variance, 9,600 more.
- ``resnet18_cifar``: ResNet-18's stages behind a 3x3 stride-1 stem without max-pool, the usual
  layout for 32x32 data; ``resnet20``: the paper's own CIFAR-10 network (Section 4.2: three stages
  of 16-32-64 channels, 3 blocks each; projection shortcuts instead of the paper's zero-padding).
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import classifier, make_divisible
from edgecnn.archs.layers import activation as act
from edgecnn.archs.registry import register
from edgecnn.core.keras_env import keras

# keras.applications' epsilon (so its weights give the same outputs); momentum 0.9 instead of 0.99
# for the reason measured in mobilenet.py: short runs leave slower moving statistics far behind.
BN_EPSILON = 1.001e-5
BN_MOMENTUM = 0.9

# (filters, blocks, first stride) per stage; stages are named conv2..conv5 as in the paper's Table 1
IMAGENET_STAGES = {
    18: [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)],
    34: [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)],
    50: [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)],
}
CIFAR20_STAGES = [(16, 3, 1), (32, 3, 2), (64, 3, 2)]


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, use_bias: bool, name: str) -> Any:
    """Convolution ('same' padding) followed by batch norm; ``name`` is the prefix of both layers."""

    layers = keras.layers
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=use_bias, name=name + "_conv")(x)
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name + "_bn")(x)


def _shortcut(x: Any, filters: int, stride: int, use_bias: bool, name: str) -> Any:
    """Identity when shapes match, else the 1x1 strided projection ``<name>_0``."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    return _conv_bn(x, filters, 1, stride, use_bias, name + "_0")


def _basic_block(x: Any, filters: int, stride: int, activation: str, use_bias: bool, name: str) -> Any:
    """Two 3x3 convolutions (ResNet-18/34), the first one strided."""

    shortcut = _shortcut(x, filters, stride, use_bias, name)
    x = _conv_bn(x, filters, 3, stride, use_bias, name + "_1")
    x = act(activation, name + "_1_act")(x)
    x = _conv_bn(x, filters, 3, 1, use_bias, name + "_2")
    x = keras.layers.Add(name=name + "_add")([shortcut, x])
    return act(activation, name + "_out")(x)


def _bottleneck_block(x: Any, filters: int, stride: int, activation: str, use_bias: bool, name: str) -> Any:
    """1x1 reduce (strided) -> 3x3 -> 1x1 expand to ``4 * filters`` (ResNet-50, keras.applications layout)."""

    shortcut = _shortcut(x, 4 * filters, stride, use_bias, name)
    x = _conv_bn(x, filters, 1, stride, use_bias, name + "_1")
    x = act(activation, name + "_1_act")(x)
    x = _conv_bn(x, filters, 3, 1, use_bias, name + "_2")
    x = act(activation, name + "_2_act")(x)
    x = _conv_bn(x, 4 * filters, 1, 1, use_bias, name + "_3")
    x = keras.layers.Add(name=name + "_add")([shortcut, x])
    return act(activation, name + "_out")(x)


def _imagenet_stem(x: Any, filters: int, activation: str, use_bias: bool) -> Any:
    """7x7/2 convolution then 3x3/2 max-pool, with the paper's symmetric padding (224 -> 56)."""

    layers = keras.layers
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = layers.Conv2D(filters, 7, strides=2, use_bias=use_bias, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="conv1_bn")(x)
    x = act(activation, "conv1_act")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)  # zeros are neutral for a max-pool after ReLU
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def _cifar_stem(x: Any, filters: int, activation: str, use_bias: bool) -> Any:
    """3x3 stride-1 convolution, no pooling: keeps the resolution small inputs cannot spare."""
    x = _conv_bn(x, filters, 3, 1, use_bias, "conv1")
    return act(activation, "conv1_act")(x)


def _resnet(
    x: Any,
    num_classes: int,
    stages: list[tuple[int, int, int]],
    bottleneck: bool,
    cifar_stem: bool,
    stem_filters: int,
    width: float,
    dropout: float,
    activation: str,
    use_bias: bool,
) -> Any:
    """Stem -> residual stages (``conv2``, ``conv3``, ...) -> global average pool -> softmax."""
    stem = _cifar_stem if cifar_stem else _imagenet_stem
    x = stem(x, make_divisible(stem_filters * width), activation, use_bias)
    block = _bottleneck_block if bottleneck else _basic_block
    for stage, (filters, blocks, stride) in enumerate(stages, start=2):
        for i in range(blocks):
            name = f"conv{stage}_block{i + 1}"
            x = block(x, make_divisible(filters * width), stride if i == 0 else 1, activation, use_bias, name)
    return classifier(x, num_classes, dropout)


@register(family="resnet", default_size=224)
def resnet18(x: Any, num_classes: int, width: float = 1.0, dropout: float = 0.0, activation: str = "relu") -> Any:
    """ResNet-18: basic blocks 2-2-2-2, torchvision layout (11.7M parameters at 1000 classes)."""
    return _resnet(x, num_classes, IMAGENET_STAGES[18], False, False, 64, width, dropout, activation, False)


@register(family="resnet", default_size=224)
def resnet34(x: Any, num_classes: int, width: float = 1.0, dropout: float = 0.0, activation: str = "relu") -> Any:
    """ResNet-34: basic blocks 3-4-6-3, torchvision layout (21.8M parameters at 1000 classes)."""
    return _resnet(x, num_classes, IMAGENET_STAGES[34], False, False, 64, width, dropout, activation, False)


@register(family="resnet", default_size=224)
def resnet50(x: Any, num_classes: int, width: float = 1.0, dropout: float = 0.0, activation: str = "relu") -> Any:
    """ResNet-50: bottleneck blocks 3-4-6-3, same layers and names as keras.applications.ResNet50."""
    return _resnet(x, num_classes, IMAGENET_STAGES[50], True, False, 64, width, dropout, activation, True)


@register(family="resnet", default_size=32)
def resnet18_cifar(x: Any, num_classes: int, width: float = 1.0, dropout: float = 0.0, activation: str = "relu") -> Any:
    """ResNet-18 for 32x32 data: 3x3 stride-1 stem, no max-pool (11.2M parameters at 10 classes)."""
    return _resnet(x, num_classes, IMAGENET_STAGES[18], False, True, 64, width, dropout, activation, False)


@register(family="resnet", default_size=32)
def resnet20(x: Any, num_classes: int, width: float = 1.0, dropout: float = 0.0, activation: str = "relu") -> Any:
    """ResNet-20, the paper's CIFAR-10 network: 16-32-64 channels, 3 basic blocks per stage (0.27M)."""
    return _resnet(x, num_classes, CIFAR20_STAGES, False, True, 16, width, dropout, activation, False)
