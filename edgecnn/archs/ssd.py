"""SSDLite: single-shot detection with depthwise-separable heads, for mobile and edge accelerators.

- SSD (Liu et al., 2016, "SSD: Single Shot MultiBox Detector"): box offsets and class scores are
  predicted for a fixed set of anchors (default boxes) at every cell of several feature maps, from
  fine (small objects) to coarse (large objects); extra stride-2 layers extend the backbone down to 1x1.
- SSDLite (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", section 6.2):
  every 3x3 convolution of SSD's extra layers and prediction heads becomes a 3x3 depthwise + 1x1
  convolution, which cuts the head's cost by about an order of magnitude.

Here the taps are the backbone's stride 8, 16 and 32 feature maps (4, 8, 16 with ``small_input``);
each extra layer is 1x1 conv -> 3x3 depthwise stride 2 -> 1x1 conv (BatchNorm and ReLU6 after each),
added until the map is 1x1. Each level has two heads, 3x3 depthwise -> BN -> ReLU6 -> 1x1 conv, one
for k * 4 box offsets and one for k * classes class logits. The outputs are ``box_encodings``
(batch, A, 4) and ``class_scores`` (batch, A, classes) after a sigmoid (no background column: an
anchor is background when every class is low, as in RetinaNet's focal-loss setup). The class bias
starts at the RetinaNet prior (Lin et al., 2017, "Focal Loss for Dense Object Detection": p = 0.01).

Anchors follow the feature-map sizes the model actually has, so any input size divisible by 32
works; :mod:`edgecnn.detection.anchors` documents the config returned in ``Built.extra``. Every op
(Conv2D, DepthwiseConv2D, BatchNorm folded into them, ReLU6, Reshape, Concatenate, Logistic) maps to
the Edge TPU at full int8; the TFLite detection postprocess op added at export runs on the CPU.
"""

from __future__ import annotations

import math
from typing import Any

from edgecnn.archs.common import make_divisible
from edgecnn.archs.efficientnet_lite import LITE, efficientnet_lite_features
from edgecnn.archs.mobilenet import BN_MOMENTUM, mobilenet_v2_features, mobilenet_v3_features
from edgecnn.archs.registry import Built, register
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras
from edgecnn.detection.anchors import anchor_config, anchors_per_cell

# Output channels of the extra layers, in order (the TF Object Detection API's SSDLite MobileNet v2
# feature map layout [512, 256, 256, 128]; further levels, at larger inputs, keep 128)
EXTRA_DEPTHS = (512, 256, 256, 128)
MIN_DEPTH = 16
BOX_SCALE = [10.0, 10.0, 5.0, 5.0]  # y, x, h, w scales of the box coder (TF Object Detection API defaults)
PRIOR_PROBABILITY = 0.01


def _conv_bn(x: Any, filters: int, name: str) -> Any:
    """1x1 conv -> BN -> ReLU6."""

    layers = keras.layers
    x = layers.Conv2D(filters, 1, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=name + "_bn")(x)
    return layers.ReLU(6.0, name=name + "_relu")(x)


def _depthwise_bn(x: Any, stride: int, name: str) -> Any:
    """3x3 depthwise -> BN -> ReLU6."""

    layers = keras.layers
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=name + "_bn")(x)
    return layers.ReLU(6.0, name=name + "_relu")(x)


def _extra_layer(x: Any, depth: int, index: int) -> Any:
    """One SSDLite extra level: 1x1 to half depth -> 3x3 depthwise stride 2 -> 1x1 to ``depth``."""
    prefix = f"extra_{index}"
    x = _conv_bn(x, max(MIN_DEPTH, depth // 2), prefix + "_reduce")
    x = _depthwise_bn(x, 2, prefix + "_depthwise")
    return _conv_bn(x, depth, prefix + "_project")


def _predictor(x: Any, per_anchor: int, anchors: int, name: str, bias: float = 0.0) -> Any:
    """SSDLite head: 3x3 depthwise -> BN -> ReLU6 -> 1x1 conv to anchors * per_anchor, reshaped to
    (batch, fh * fw * anchors, per_anchor): row-major cells, then anchors, as the anchor generator."""

    layers = keras.layers
    h, w = int(x.shape[1]), int(x.shape[2])
    x = _depthwise_bn(x, 1, name + "_depthwise")
    x = layers.Conv2D(
        anchors * per_anchor,
        1,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        bias_initializer=keras.initializers.Constant(bias),
        name=name + "_conv",
    )(x)
    return layers.Reshape((h * w * anchors, per_anchor), name=name + "_reshape")(x)


def _ssdlite(taps: list[Any], num_classes: int, alpha: float) -> Built:
    """Extra layers below the last tap down to 1x1, two heads per level, the anchor config of the levels."""

    layers = keras.layers
    if num_classes < 1:
        raise EdgecnnError(f"a detector needs 1 or more classes, got {num_classes}")
    levels = list(taps)
    while max(int(levels[-1].shape[1]), int(levels[-1].shape[2])) > 1:
        index = len(levels) - len(taps)
        depth = EXTRA_DEPTHS[min(index, len(EXTRA_DEPTHS) - 1)]
        levels.append(_extra_layer(levels[-1], max(MIN_DEPTH, make_divisible(depth * alpha)), index))
    sizes = [(int(f.shape[1]), int(f.shape[2])) for f in levels]
    config = anchor_config(sizes)
    k = anchors_per_cell(config)
    prior_bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    boxes = [_predictor(f, 4, k, f"box_head_{i}") for i, f in enumerate(levels)]
    logits = [_predictor(f, num_classes, k, f"class_head_{i}", prior_bias) for i, f in enumerate(levels)]
    box_encodings = layers.Concatenate(axis=1, name="box_encodings")(boxes)
    class_logits = layers.Concatenate(axis=1, name="class_logits")(logits)
    class_scores = layers.Activation("sigmoid", name="class_scores")(class_logits)
    return Built([box_encodings, class_scores], {"anchors": config, "box_scale": list(BOX_SCALE)})


def _check_size(x: Any) -> None:
    h, w = x.shape[1], x.shape[2]
    if h is None or w is None or h % 32 or w % 32:
        raise EdgecnnError(f"SSDLite needs an input size divisible by 32 (e.g. 128, 160, 192), got {h}x{w}")


@register(family="ssd", default_size=192, edgetpu=True, task="detect")
def ssdlite_mobilenet_v2(x: Any, num_classes: int, alpha: float = 1.0, small_input: bool = False) -> Built:
    """SSDLite on MobileNet v2, width 1.0 (``alpha`` scales backbone and extra layers)."""
    _check_size(x)
    features = mobilenet_v2_features(x, alpha, small_input)
    return _ssdlite(features[2:], num_classes, alpha)


@register(family="ssd", default_size=192, edgetpu=True, task="detect")
def ssdlite_mobilenet_v2_035(x: Any, num_classes: int, small_input: bool = False) -> Built:
    """SSDLite on MobileNet v2, width 0.35."""
    _check_size(x)
    features = mobilenet_v2_features(x, 0.35, small_input)
    return _ssdlite(features[2:], num_classes, 0.35)


@register(family="ssd", default_size=192, edgetpu=True, task="detect")
def ssdlite_efficientnet_lite0(x: Any, num_classes: int, small_input: bool = False) -> Built:
    """SSDLite on EfficientNet-Lite0."""
    _check_size(x)
    features = efficientnet_lite_features(x, LITE["lite0"], small_input)
    return _ssdlite(features[2:], num_classes, 1.0)


@register(family="ssd", default_size=192, edgetpu=False, task="detect")
def ssdlite_mobilenet_v3_small(x: Any, num_classes: int, alpha: float = 1.0, small_input: bool = False) -> Built:
    """SSDLite on MobileNet v3 Small (hard-swish and squeeze-excite: CPU-only, not Edge TPU)."""
    _check_size(x)
    features = mobilenet_v3_features(x, "small", alpha, small_input)
    return _ssdlite(features[2:], num_classes, alpha)
