"""MobileNet v1, v2 and v3: the depthwise-separable families built for phones and edge accelerators.

- v1 (Howard et al., 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications"): 3x3 depthwise + 1x1 pointwise pairs, BatchNorm and ReLU6 after each, no residuals.
- v2 (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks"): inverted
  residual blocks, 1x1 expansion -> 3x3 depthwise -> linear 1x1 projection, ReLU6 throughout,
  residual when shape allows.
- v3 (Howard et al., 2019, "Searching for MobileNetV3"): v2 blocks with squeeze-and-excite, 5x5
  depthwise kernels and hard-swish in the later stages, and a lighter pooled head.

Layer names follow keras.applications (MobileNet, MobileNetV2, MobileNetV3Small/Large) so that its
ImageNet weights load by name. v1 and v2 map entirely to int8 and the Edge TPU. v3 uses edgecnn's
HardSwish and SqueezeExcite layers (no Lambda ops) and converts to full int8 TFLite, but HARD_SWISH is
not in the Edge TPU's supported-op list, so the compiler would leave everything from the stem's
hard-swish on the CPU: ``edgetpu=False``.

Stride-2 layers use ``padding="same"`` where keras.applications pads explicitly then uses "valid":
for even input sizes the two pad identically, and weights have the same shapes either way.
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import classifier, make_divisible
from edgecnn.archs.layers import HardSwish, SqueezeExcite, activation
from edgecnn.archs.registry import register
from edgecnn.core.keras_env import keras

# keras.applications uses 0.999, tuned for ImageNet-length runs. On digits (450 steps in 10 epochs)
# 0.999 and even 0.99 leave the moving statistics so far behind that inference-mode accuracy is
# 10% while training-mode accuracy is 96% (measured); 0.9 gives 90%. Weights load the same.
BN_MOMENTUM = 0.9

# (expansion t, output channels c, repeats n, first stride s), from Table 2 of the paper
V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _inverted_residual(x: Any, expansion: int, filters: int, stride: int, block_id: int) -> Any:
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


def mobilenet_v2_features(x: Any, alpha: float = 1.0, small_input: bool = False) -> list[Any]:
    """The backbone's feature maps at strides 2, 4, 8, 16 and 32 (halved with ``small_input``): the
    last tensor of each resolution, as detection (SSDLite) and segmentation (U-Net, DeepLab) heads
    tap them. Layer names are keras.applications', so ImageNet weights still load by name."""

    layers = keras.layers
    stem_stride = 1 if small_input else 2
    x = layers.Conv2D(make_divisible(32 * alpha), 3, strides=stem_stride, padding="same", use_bias=False, name="Conv1")(
        x
    )
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name="bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    features: list[Any] = []  # the input of each stride-2 stage: strides 2, 4, 8, 16
    block_id = 0
    for t, c, n, s in V2_STAGES:
        if s == 2:
            features.append(x)
        for i in range(n):
            x = _inverted_residual(x, t, make_divisible(c * alpha), s if i == 0 else 1, block_id)
            block_id += 1
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = layers.Conv2D(last, 1, use_bias=False, name="Conv_1")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name="Conv_1_bn")(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    return [*features, x]


def _mobilenet_v2(x: Any, num_classes: int, alpha: float, dropout: float, small_input: bool) -> Any:
    return classifier(mobilenet_v2_features(x, alpha, small_input)[-1], num_classes, dropout)


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


# ---------------------------------------------------------------------------------------------------------------
# MobileNet v1

# (pointwise output channels, depthwise stride) of the 13 depthwise-separable blocks, Table 1 of the paper
V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def _depthwise_separable(x: Any, filters: int, stride: int, block_id: int) -> Any:
    """3x3 depthwise -> BN -> ReLU6 -> 1x1 pointwise -> BN -> ReLU6 (keras.applications.MobileNet names)."""

    layers = keras.layers
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"conv_dw_{block_id}")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=f"conv_dw_{block_id}_bn")(x)
    x = layers.ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"conv_pw_{block_id}")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=f"conv_pw_{block_id}_bn")(x)
    return layers.ReLU(6.0, name=f"conv_pw_{block_id}_relu")(x)


def _mobilenet_v1(x: Any, num_classes: int, alpha: float, dropout: float, small_input: bool) -> Any:
    """Channels are ``int(c * alpha)`` as in keras.applications (not rounded to multiples of 8)."""

    layers = keras.layers
    stem_stride = 1 if small_input else 2
    x = layers.Conv2D(int(32 * alpha), 3, strides=stem_stride, padding="same", use_bias=False, name="conv1")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name="conv1_bn")(x)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    for block_id, (filters, stride) in enumerate(V1_BLOCKS, start=1):
        x = _depthwise_separable(x, int(filters * alpha), stride, block_id)
    return classifier(x, num_classes, dropout)


# keras.applications.MobileNet's default dropout: v1 was trained with almost none
V1_DROPOUT = 1e-3


@register(family="mobilenet", default_size=224)
def mobilenet_v1(
    x: Any, num_classes: int, alpha: float = 1.0, dropout: float = V1_DROPOUT, small_input: bool = False
) -> Any:
    """MobileNet v1, width 1.0 (``alpha`` scales every layer's channels)."""
    return _mobilenet_v1(x, num_classes, alpha, dropout, small_input)


@register(family="mobilenet", default_size=224)
def mobilenet_v1_050(x: Any, num_classes: int, dropout: float = V1_DROPOUT, small_input: bool = False) -> Any:
    """MobileNet v1, width 0.5."""
    return _mobilenet_v1(x, num_classes, 0.5, dropout, small_input)


@register(family="mobilenet", default_size=224)
def mobilenet_v1_025(x: Any, num_classes: int, dropout: float = V1_DROPOUT, small_input: bool = False) -> Any:
    """MobileNet v1, width 0.25."""
    return _mobilenet_v1(x, num_classes, 0.25, dropout, small_input)


# ---------------------------------------------------------------------------------------------------------------
# MobileNet v3

# (kernel, expansion ratio, output channels, squeeze-excite, activation, stride), Tables 1 and 2 of the paper.
# Expansion is a ratio of the block's input channels (the paper's "exp size" / input), as keras.applications
# stores it, so that alpha scales the expanded width the same way.
V3Block = tuple[int, float, int, bool, str, int]
V3_SMALL: list[V3Block] = [
    (3, 1, 16, True, "relu", 2),
    (3, 72 / 16, 24, False, "relu", 2),
    (3, 88 / 24, 24, False, "relu", 1),
    (5, 4, 40, True, "hard_swish", 2),
    (5, 6, 40, True, "hard_swish", 1),
    (5, 6, 40, True, "hard_swish", 1),
    (5, 3, 48, True, "hard_swish", 1),
    (5, 3, 48, True, "hard_swish", 1),
    (5, 6, 96, True, "hard_swish", 2),
    (5, 6, 96, True, "hard_swish", 1),
    (5, 6, 96, True, "hard_swish", 1),
]
V3_LARGE: list[V3Block] = [
    (3, 1, 16, False, "relu", 1),
    (3, 4, 24, False, "relu", 2),
    (3, 3, 24, False, "relu", 1),
    (5, 3, 40, True, "relu", 2),
    (5, 3, 40, True, "relu", 1),
    (5, 3, 40, True, "relu", 1),
    (3, 6, 80, False, "hard_swish", 2),
    (3, 2.5, 80, False, "hard_swish", 1),
    (3, 2.3, 80, False, "hard_swish", 1),
    (3, 2.3, 80, False, "hard_swish", 1),
    (3, 6, 112, True, "hard_swish", 1),
    (3, 6, 112, True, "hard_swish", 1),
    (5, 6, 160, True, "hard_swish", 2),
    (5, 6, 160, True, "hard_swish", 1),
    (5, 6, 160, True, "hard_swish", 1),
]
# width of the pooled 1x1 layer before the classifier ("last point" in keras.applications)
V3_LAST_POINT = {"small": 1024, "large": 1280}


def _v3_block(x: Any, block: V3Block, filters: int, block_id: int) -> Any:
    """Inverted residual: [1x1 expand -> BN -> act] -> kxk depthwise -> BN -> act -> [SE] -> 1x1 project -> BN."""

    layers = keras.layers
    kernel, expansion, _, squeeze_excite, act, stride = block
    in_channels = x.shape[-1]
    prefix = f"expanded_conv_{block_id}/" if block_id else "expanded_conv/"
    inputs = x
    if block_id:  # the first block has expansion 1 and no expand layer, as in keras.applications
        x = layers.Conv2D(make_divisible(in_channels * expansion), 1, use_bias=False, name=prefix + "expand")(x)
        x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=prefix + "expand/BatchNorm")(x)
        x = activation(act, prefix + "expand/" + act)(x)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=prefix + "depthwise")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=prefix + "depthwise/BatchNorm")(x)
    x = activation(act, prefix + "depthwise/" + act)(x)
    if squeeze_excite:
        x = SqueezeExcite(ratio=0.25, divisor=8, gate="hard_sigmoid", name=prefix + "squeeze_excite")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=prefix + "project")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=prefix + "project/BatchNorm")(x)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=prefix + "Add")([inputs, x])
    return x


def mobilenet_v3_features(x: Any, size: str = "small", alpha: float = 1.0, small_input: bool = False) -> list[Any]:
    """Feature maps at strides 2, 4, 8, 16 and 32 (halved with ``small_input``): the input of each
    stride-2 block, and the last map after the 1x1 conv to 6x the last width (hard-swish)."""

    layers = keras.layers
    stem_stride = 1 if small_input else 2
    x = layers.Conv2D(16, 3, strides=stem_stride, padding="same", use_bias=False, name="Conv")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name="Conv/BatchNorm")(x)
    x = HardSwish(name="Conv/hard_swish")(x)
    features: list[Any] = []
    for block_id, block in enumerate(V3_SMALL if size == "small" else V3_LARGE):
        if block[5] == 2:
            features.append(x)
        x = _v3_block(x, block, make_divisible(block[2] * alpha), block_id)
    x = layers.Conv2D(make_divisible(x.shape[-1] * 6), 1, use_bias=False, name="Conv_1")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name="Conv_1/BatchNorm")(x)
    x = HardSwish(name="Conv_1/hard_swish")(x)
    return [*features, x]


def _mobilenet_v3(x: Any, num_classes: int, size: str, alpha: float, dropout: float, small_input: bool) -> Any:
    """Features -> pool -> 1x1 -> classes.

    keras.applications ends with 1x1 convolutions on the pooled 1x1 map ("Conv_2", "Logits"); here
    they are Dense layers after a pooling layer named ``pool`` (edgecnn's head convention): same
    parameter counts, and the same int8 ops after conversion.
    """

    layers = keras.layers
    x = mobilenet_v3_features(x, size, alpha, small_input)[-1]
    last_point = V3_LAST_POINT[size]
    last_point = make_divisible(last_point * alpha) if alpha > 1.0 else last_point
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(last_point, name="Conv_2")(x)
    x = HardSwish(name="Conv_2/hard_swish")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)


@register(family="mobilenet", default_size=224, edgetpu=False)
def mobilenet_v3_small(
    x: Any, num_classes: int, alpha: float = 1.0, dropout: float = 0.2, small_input: bool = False
) -> Any:
    """MobileNet v3 Small, width 1.0 (``alpha`` scales the block channels)."""
    return _mobilenet_v3(x, num_classes, "small", alpha, dropout, small_input)


@register(family="mobilenet", default_size=224, edgetpu=False)
def mobilenet_v3_small_075(x: Any, num_classes: int, dropout: float = 0.2, small_input: bool = False) -> Any:
    """MobileNet v3 Small, width 0.75."""
    return _mobilenet_v3(x, num_classes, "small", 0.75, dropout, small_input)


@register(family="mobilenet", default_size=224, edgetpu=False)
def mobilenet_v3_large(
    x: Any, num_classes: int, alpha: float = 1.0, dropout: float = 0.2, small_input: bool = False
) -> Any:
    """MobileNet v3 Large, width 1.0 (``alpha`` scales the block channels)."""
    return _mobilenet_v3(x, num_classes, "large", alpha, dropout, small_input)


@register(family="mobilenet", default_size=224, edgetpu=False)
def mobilenet_v3_large_075(x: Any, num_classes: int, dropout: float = 0.2, small_input: bool = False) -> Any:
    """MobileNet v3 Large, width 0.75."""
    return _mobilenet_v3(x, num_classes, "large", 0.75, dropout, small_input)
