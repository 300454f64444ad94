"""EfficientNet-Lite0..4: EfficientNet (Tan & Le, 2019, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks") adapted by its authors for int8 edge accelerators (TensorFlow blog,
"Higher accuracy on vision models with EfficientNet-Lite", 2020).

EfficientNet-B0's MBConv stages, scaled by compound coefficients, with the Lite changes of the official
builder (tensorflow/tpu, models/official/efficientnet/lite/efficientnet_lite_builder.py and
efficientnet_model.py): ReLU6 instead of swish, no squeeze-and-excite (``use_se=False``), and
``fix_head_stem=True``, meaning the stem (32) and head (1280) widths are not scaled by width and the
first and last stages keep their repeat count (1) whatever the depth coefficient. Everything else is
computed here from (width, depth, resolution, dropout): channels by :func:`round_filters` (multiples
of 8, never more than 10% below), repeats by :func:`round_repeats` (ceiling). Drop-connect (stochastic
depth) grows linearly to 0.2 over the blocks as in the official and keras.applications models.
Every op maps to the Edge TPU at full int8.

Layer names follow keras.applications.EfficientNet (``stem_conv``, ``block2a_expand_conv``,
``top_conv``, ...); the head is edgecnn's ``pool -> dropout -> predictions``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from edgecnn.archs.common import classifier, make_divisible
from edgecnn.archs.mobilenet import BN_MOMENTUM
from edgecnn.archs.registry import register
from edgecnn.core.keras_env import keras


class Stage(NamedTuple):
    """One MBConv stage: ``repeats`` blocks, the first with ``stride`` and ``in_ch -> out_ch``."""

    kernel: int
    repeats: int
    in_ch: int
    out_ch: int
    expand: int
    stride: int


# EfficientNet-B0 (Table 1 of the paper; the official _DEFAULT_BLOCKS_ARGS)
B0_STAGES = [
    Stage(3, 1, 32, 16, 1, 1),
    Stage(3, 2, 16, 24, 6, 2),
    Stage(5, 2, 24, 40, 6, 2),
    Stage(3, 3, 40, 80, 6, 2),
    Stage(5, 3, 80, 112, 6, 1),
    Stage(5, 4, 112, 192, 6, 2),
    Stage(3, 1, 192, 320, 6, 1),
]


class Coefficients(NamedTuple):
    width: float
    depth: float
    resolution: int
    dropout: float


# the official efficientnet_lite_params
LITE: dict[str, Coefficients] = {
    "lite0": Coefficients(1.0, 1.0, 224, 0.2),
    "lite1": Coefficients(1.0, 1.1, 240, 0.2),
    "lite2": Coefficients(1.1, 1.2, 260, 0.3),
    "lite3": Coefficients(1.2, 1.4, 280, 0.3),
    "lite4": Coefficients(1.4, 1.8, 300, 0.3),
}
STEM_FILTERS = 32  # fixed (fix_head_stem)
HEAD_FILTERS = 1280  # fixed (fix_head_stem)
DROP_CONNECT = 0.2  # the last block's drop-connect rate; block b of B gets DROP_CONNECT * b / B
DEPTH_DIVISOR = 8


def round_filters(filters: int, width: float) -> int:
    """Channels scaled by the width coefficient, rounded to a multiple of 8 (the official round_filters)."""
    return make_divisible(filters * width, DEPTH_DIVISOR)


def round_repeats(repeats: int, depth: float) -> int:
    """Blocks per stage scaled by the depth coefficient, rounded up (the official round_repeats)."""
    return int(math.ceil(depth * repeats))


def scaled_stages(width: float, depth: float) -> list[Stage]:
    """The B0 stages scaled by (width, depth); Lite leaves the first and last stages' repeats unscaled."""
    last = len(B0_STAGES) - 1
    return [
        stage._replace(
            repeats=stage.repeats if i in (0, last) else round_repeats(stage.repeats, depth),
            in_ch=round_filters(stage.in_ch, width),
            out_ch=round_filters(stage.out_ch, width),
        )
        for i, stage in enumerate(B0_STAGES)
    ]


def _mbconv(x: Any, filters: int, kernel: int, expand: int, stride: int, drop_rate: float, prefix: str) -> Any:
    """[1x1 expand -> BN -> ReLU6] -> kxk depthwise -> BN -> ReLU6 -> 1x1 project -> BN [-> drop-connect + skip]."""

    layers = keras.layers
    in_channels = x.shape[-1]
    inputs = x
    if expand != 1:
        x = layers.Conv2D(in_channels * expand, 1, use_bias=False, name=prefix + "expand_conv")(x)
        x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=prefix + "expand_bn")(x)
        x = layers.ReLU(6.0, name=prefix + "expand_activation")(x)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=prefix + "dwconv")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=prefix + "bn")(x)
    x = layers.ReLU(6.0, name=prefix + "activation")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=prefix + "project_conv")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=prefix + "project_bn")(x)
    if stride == 1 and in_channels == filters:
        if drop_rate > 0:  # drops the whole residual branch per sample; identity at inference
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=prefix + "drop")(x)
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


def efficientnet_lite_features(x: Any, coefficients: Coefficients, small_input: bool = False) -> list[Any]:
    """Feature maps at strides 2, 4, 8, 16 and 32 (halved with ``small_input``): the last tensor of
    each resolution, for detection and segmentation heads."""

    layers = keras.layers
    stages = scaled_stages(coefficients.width, coefficients.depth)
    x = layers.Conv2D(
        STEM_FILTERS, 3, strides=1 if small_input else 2, padding="same", use_bias=False, name="stem_conv"
    )(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)
    features: list[Any] = []  # the input of each stride-2 stage
    total = sum(stage.repeats for stage in stages)
    block = 0
    for i, stage in enumerate(stages):
        if stage.stride == 2:
            features.append(x)
        for j in range(stage.repeats):
            stride = stage.stride if j == 0 else 1
            prefix = f"block{i + 1}{chr(ord('a') + j)}_"
            x = _mbconv(x, stage.out_ch, stage.kernel, stage.expand, stride, DROP_CONNECT * block / total, prefix)
            block += 1
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name="top_bn")(x)
    x = layers.ReLU(6.0, name="top_activation")(x)
    return [*features, x]


def _efficientnet_lite(x: Any, num_classes: int, coefficients: Coefficients, dropout: float, small_input: bool) -> Any:
    return classifier(efficientnet_lite_features(x, coefficients, small_input)[-1], num_classes, dropout)


@register(family="efficientnet_lite", default_size=LITE["lite0"].resolution)
def efficientnet_lite0(
    x: Any, num_classes: int, dropout: float = LITE["lite0"].dropout, small_input: bool = False
) -> Any:
    """EfficientNet-Lite0: B0 stages, ReLU6, no squeeze-excite (width 1.0, depth 1.0, 224 px)."""
    return _efficientnet_lite(x, num_classes, LITE["lite0"], dropout, small_input)


@register(family="efficientnet_lite", default_size=LITE["lite1"].resolution)
def efficientnet_lite1(
    x: Any, num_classes: int, dropout: float = LITE["lite1"].dropout, small_input: bool = False
) -> Any:
    """EfficientNet-Lite1 (width 1.0, depth 1.1, 240 px)."""
    return _efficientnet_lite(x, num_classes, LITE["lite1"], dropout, small_input)


@register(family="efficientnet_lite", default_size=LITE["lite2"].resolution)
def efficientnet_lite2(
    x: Any, num_classes: int, dropout: float = LITE["lite2"].dropout, small_input: bool = False
) -> Any:
    """EfficientNet-Lite2 (width 1.1, depth 1.2, 260 px)."""
    return _efficientnet_lite(x, num_classes, LITE["lite2"], dropout, small_input)


@register(family="efficientnet_lite", default_size=LITE["lite3"].resolution)
def efficientnet_lite3(
    x: Any, num_classes: int, dropout: float = LITE["lite3"].dropout, small_input: bool = False
) -> Any:
    """EfficientNet-Lite3 (width 1.2, depth 1.4, 280 px)."""
    return _efficientnet_lite(x, num_classes, LITE["lite3"], dropout, small_input)


@register(family="efficientnet_lite", default_size=LITE["lite4"].resolution)
def efficientnet_lite4(
    x: Any, num_classes: int, dropout: float = LITE["lite4"].dropout, small_input: bool = False
) -> Any:
    """EfficientNet-Lite4 (width 1.4, depth 1.8, 300 px)."""
    return _efficientnet_lite(x, num_classes, LITE["lite4"], dropout, small_input)
