"""MobileNet v2 (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks").

Inverted residual blocks: 1x1 expansion -> 3x3 depthwise -> linear 1x1 projection, ReLU6
throughout, residual when shape allows. Layer names follow keras.applications so that its
ImageNet weights load by name.
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import classifier, make_divisible
from edgecnn.archs.registry import register

# keras.applications uses 0.999, tuned for ImageNet-length runs. On digits (450 steps in 10 epochs)
# 0.999 and even 0.99 leave the moving statistics so far behind that inference-mode accuracy is
# 10% while training-mode accuracy is 96% (measured); 0.9 gives 90%. Weights load the same.
BN_MOMENTUM = 0.9

# (expansion t, output channels c, repeats n, first stride s), from Table 2 of the paper
V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _inverted_residual(x: Any, expansion: int, filters: int, stride: int, block_id: int) -> Any:
    from edgecnn.keras_env import keras

    layers = keras.layers
    in_channels = x.shape[-1]
    prefix = f"block_{block_id}_"
    inputs = x
    if block_id:
        x = layers.Conv2D(expansion * in_channels, 1, use_bias=False, name=prefix + "expand")(x)
        x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=prefix + "expand_BN")(x)
        x = layers.ReLU(6.0, name=prefix + "expand_relu")(x)
    else:
        prefix = "expanded_conv_"
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=prefix + "depthwise")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=prefix + "depthwise_BN")(x)
    x = layers.ReLU(6.0, name=prefix + "depthwise_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=prefix + "project")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=prefix + "project_BN")(x)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=prefix + "add")([inputs, x])
    return x


def _mobilenet_v2(x: Any, num_classes: int, alpha: float, dropout: float, small_input: bool) -> Any:
    from edgecnn.keras_env import keras

    layers = keras.layers
    stem_stride = 1 if small_input else 2
    x = layers.Conv2D(make_divisible(32 * alpha), 3, strides=stem_stride, padding="same", use_bias=False, name="Conv1")(
        x
    )
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name="bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    block_id = 0
    for t, c, n, s in V2_STAGES:
        for i in range(n):
            x = _inverted_residual(x, t, make_divisible(c * alpha), s if i == 0 else 1, block_id)
            block_id += 1
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = layers.Conv2D(last, 1, use_bias=False, name="Conv_1")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name="Conv_1_bn")(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    return classifier(x, num_classes, dropout)


@register(family="mobilenet", default_size=224)
def mobilenet_v2(x: Any, num_classes: int, alpha: float = 1.0, dropout: float = 0.2, small_input: bool = False) -> Any:
    """MobileNet v2, width 1.0 (``alpha`` scales every layer's channels)."""
    return _mobilenet_v2(x, num_classes, alpha, dropout, small_input)


@register(family="mobilenet", default_size=224)
def mobilenet_v2_050(x: Any, num_classes: int, dropout: float = 0.2, small_input: bool = False) -> Any:
    """MobileNet v2, width 0.5."""
    return _mobilenet_v2(x, num_classes, 0.5, dropout, small_input)


@register(family="mobilenet", default_size=224)
def mobilenet_v2_035(x: Any, num_classes: int, dropout: float = 0.2, small_input: bool = False) -> Any:
    """MobileNet v2, width 0.35."""
    return _mobilenet_v2(x, num_classes, 0.35, dropout, small_input)
