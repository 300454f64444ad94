"""DeepLabV3 with a MobileNetV2 backbone, the "lite" head for mobile (Chen et al., 2017, "Rethinking
Atrous Convolution for Semantic Image Segmentation"; Sandler et al., 2018, MobileNetV2 section 6.3).

DeepLabV3 classifies every pixel of a coarse feature map (output stride 16) with an "atrous spatial
pyramid pooling" head, then upsamples the class scores to the input size. The MobileNetV2 paper's
mobile variant keeps only two ASPP branches, which cut the head's MACs sharply at little loss:

- a 1x1 convolution of the stride-16 features (BN, ReLU6);
- image pooling: the features averaged over the whole map, a 1x1 convolution (ReLU6), and the result
  copied back to every position: the global context of the scene.

Both are concatenated and projected by a 1x1 convolution. With ``skip_stride`` 4 or 8 a DeepLabV3+
style decoder (Chen et al., 2018) upsamples them to that stride, concatenates the backbone's
features there (reduced by a 1x1 convolution) and refines with a separable 3x3 conv, for sharper
edges; ``skip_stride=0`` is plain DeepLabV3. The class scores are finally upsampled bilinearly to
the input size and a per-pixel softmax gives "predictions" (batch, H, W, num_classes).

Output stride 16 "via the backbone": the head reads :func:`mobilenet_v2_features`' stride-16 map
(the 96-channel stage, scaled by ``alpha``); the stride-32 stages are not built into the model.
(DeepLab instead runs those stages at stride 16 with dilated kernels; dilated depthwise kernels do
not map on Edge TPU runtimes up to 12, and the backbone has no dilation option.)

Edge TPU: the image pooling is an ``AveragePooling2D`` over the full, static map (AVERAGE_POOL_2D, no
limits on any runtime; GlobalAveragePooling2D would be MEAN, which also maps) and the copy back is a
nearest-neighbour resize from 1x1 (an exact broadcast). Everything maps in edgecnn's check except the
final per-pixel SOFTMAX (the Edge TPU's softmax is 1-D only), which runs on the CPU last;
:func:`edgecnn.segmentation.logits_model` removes it for deployment. The pooled branch has no
BatchNorm: at 1x1 its batch statistics would come from a handful of numbers per channel.
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import make_divisible
from edgecnn.archs.mobilenet import mobilenet_v2_features
from edgecnn.archs.registry import register
from edgecnn.archs.unet import check_classes, check_divisible, conv_bn, segmentation_head, separable_bn, upsample
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras

SKIP_STRIDES = (0, 4, 8)  # 0: no low-level skip (plain DeepLabV3)
HEAD_WIDTH = 256  # ASPP width in the paper, scaled by alpha here like the backbone
SKIP_WIDTH = 48  # low-level projection width in DeepLabV3+, scaled by alpha


def aspp_lite(x: Any, filters: int) -> Any:
    """1x1 conv branch + image-pooling branch, concatenated and projected to ``filters`` channels."""

    layers = keras.layers
    h, w = int(x.shape[1]), int(x.shape[2])
    direct = conv_bn(x, filters, 1, "aspp_conv")
    pooled = layers.AveragePooling2D(pool_size=(h, w), name="aspp_pool")(x)
    pooled = layers.Conv2D(filters, 1, name="aspp_pool_conv")(pooled)
    pooled = layers.ReLU(6.0, name="aspp_pool_relu")(pooled)
    pooled = upsample(pooled, (h, w), "aspp_pool_up", interpolation="nearest")
    x = layers.Concatenate(name="aspp_concat")([direct, pooled])
    return conv_bn(x, filters, 1, "aspp_project")


def skip_decoder(x: Any, low: Any, factor: int, filters: int, low_filters: int) -> Any:
    """DeepLabV3+ decoder: upsample ``x`` by ``factor``, concatenate the reduced low-level features, refine."""

    low = conv_bn(low, low_filters, 1, "decoder_low")
    x = upsample(x, factor, "decoder_up")
    x = keras.layers.Concatenate(name="decoder_concat")([x, low])
    return separable_bn(x, filters, "decoder_refine")


def _deeplabv3_mobilenet_v2(x: Any, num_classes: int, alpha: float, skip_stride: int) -> Any:
    check_classes(num_classes)
    if alpha <= 0:
        raise EdgecnnError(f"alpha must be positive (e.g. 0.35, 0.5, 1.0), got {alpha}")
    if skip_stride not in SKIP_STRIDES:
        raise EdgecnnError(f"skip_stride must be one of {SKIP_STRIDES} (0: no skip), got {skip_stride}")
    check_divisible(x, 16, "deeplabv3_mobilenet_v2")
    _, f4, f8, f16, _ = mobilenet_v2_features(x, alpha)
    width = make_divisible(HEAD_WIDTH * alpha)
    x = aspp_lite(f16, width)
    if skip_stride:
        low = {4: f4, 8: f8}[skip_stride]
        x = skip_decoder(x, low, 16 // skip_stride, width, make_divisible(SKIP_WIDTH * alpha))
    return segmentation_head(x, num_classes, scale=skip_stride or 16)


@register(family="deeplab", default_size=224, edgetpu=True, task="segment")
def deeplabv3_mobilenet_v2(x: Any, num_classes: int, alpha: float = 0.5, skip_stride: int = 4) -> Any:
    """DeepLabV3 lite head (1x1 + image pooling) on MobileNetV2 0.5, stride-4 skip (input a multiple of 16)."""
    return _deeplabv3_mobilenet_v2(x, num_classes, alpha, skip_stride)
