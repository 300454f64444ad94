"""U-Net (Ronneberger et al., 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation").

An encoder that halves the resolution level by level, a decoder that doubles it back, and at every
level the encoder's features concatenated into the decoder ("skip connections"), so the output
keeps the input's full resolution and its edges. Two variants:

- ``unet``: the classic symmetric network, two 3x3 convolutions per level, ``width`` filters at the
  first level doubling at each of ``depth`` levels. Where the paper's decoder uses a learned 2x2
  "up-convolution" that halves the channels, here a 1x1 convolution halves them at the low
  resolution and a bilinear upsampling doubles the size (same shapes, fewer MACs, no checkerboard).
- ``unet_mobilenet_v2``: a MobileNetV2 encoder (:func:`mobilenet_v2_features`, strides 2 to 32) and
  a light decoder of depthwise-separable blocks, with skips at strides 16, 8, 4 and 2, as in
  TensorFlow's image-segmentation tutorial (which upsamples with Conv2DTranspose instead).

Every convolution is followed by BatchNorm and ReLU6. Upsampling is ``UpSampling2D(interpolation=
"bilinear")``: one RESIZE_BILINEAR op, no weights, no checkerboard artefacts. edgecnn's Edge TPU check
maps it after full-int8 conversion, as it maps the alternatives (RESIZE_NEAREST_NEIGHBOR;
TRANSPOSE_CONV version 2 from ``Conv2DTranspose``). Of the three, the bilinear resize has only a
size-dependent caveat (Coral: it may not map at some sizes; google-coral/edgetpu#31 maps it at 128x128
but not 512x512), whereas the compiler is reported to reject strided Conv2DTranspose (#509) and
TRANSPOSE_CONV version 4 from newer converters (#845).

Both end in :func:`segmentation_head`: a 1x1 convolution to per-pixel class scores ("logits") and a
softmax ("predictions"), (batch, H, W, num_classes) with class 0 the background. The Edge TPU runs
SOFTMAX on one-dimensional inputs only, so in an int8 .tflite the final per-pixel softmax runs on the
CPU after everything else; :func:`edgecnn.segmentation.logits_model` cuts it off for deployment
(argmax is the same), and the rest then maps fully.
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import make_divisible
from edgecnn.archs.mobilenet import BN_MOMENTUM, mobilenet_v2_features
from edgecnn.archs.registry import register
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras

LOGITS = "logits"  # the layer that computes the per-pixel class scores
PREDICTIONS = "predictions"  # the softmax over them


# ------------------------------------------------------------------------------------------- checks
def check_classes(num_classes: int) -> None:
    """A segmenter's classes include the background, so there are at least 2."""
    if num_classes < 2:
        raise EdgecnnError(f"a segmentation model needs 2 or more classes (background included), got {num_classes}")


def check_divisible(x: Any, multiple: int, arch: str) -> None:
    """Each downsampling must halve the size exactly, or the skips do not line up with the decoder."""
    h, w = (int(d) if d is not None else None for d in x.shape[1:3])
    if h is None or w is None:
        raise EdgecnnError(f"{arch} needs a fixed input size; build it with --img (a multiple of {multiple})")
    if h % multiple or w % multiple:
        near = -(-max(h, w) // multiple) * multiple  # the next multiple up
        raise EdgecnnError(f"{arch} needs an input size divisible by {multiple}, got {h}x{w}; use e.g. --img {near}")


# ------------------------------------------------------------------------------------------- blocks
def conv_bn(x: Any, filters: int, kernel: int, name: str) -> Any:
    """Conv (no bias: BatchNorm has one) -> BatchNorm -> ReLU6."""

    layers = keras.layers
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x)


def separable_bn(x: Any, filters: int, name: str) -> Any:
    """3x3 depthwise -> BN -> ReLU6 -> 1x1 pointwise -> BN -> ReLU6: a 3x3 conv at a ninth of the MACs."""

    layers = keras.layers
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    return conv_bn(x, filters, 1, f"{name}_pw")


def upsample(x: Any, factor: int | tuple[int, int], name: str, interpolation: str = "bilinear") -> Any:
    """Enlarge by an integer factor with UpSampling2D: one RESIZE_BILINEAR (or _NEAREST_NEIGHBOR) op."""

    return keras.layers.UpSampling2D(factor, interpolation=interpolation, name=name)(x)


def up_and_concat(x: Any, skip: Any, name: str) -> Any:
    """Double the resolution and concatenate the encoder's features of that resolution."""

    x = upsample(x, 2, f"{name}_up")
    return keras.layers.Concatenate(name=f"{name}_concat")([x, skip])


def segmentation_head(x: Any, num_classes: int, scale: int = 1) -> Any:
    """1x1 conv to class scores ("logits"), bilinear upsampling by ``scale`` when the features are
    coarser than the input (cheap: ``num_classes`` channels), then the per-pixel softmax ("predictions")."""

    logits = keras.layers.Conv2D(num_classes, 1, name=LOGITS)(x)
    if scale > 1:
        logits = upsample(logits, scale, f"{LOGITS}_up")
    return keras.layers.Softmax(name=PREDICTIONS)(logits)


# ------------------------------------------------------------------------------------------ builders
def _unet(x: Any, num_classes: int, width: int, depth: int) -> Any:
    """Classic U-Net: ``depth`` levels of two 3x3 convs + 2x2 max-pool, a bottleneck, a mirrored decoder."""

    check_classes(num_classes)
    if width < 1:
        raise EdgecnnError(f"unet width must be 1 or more filters, got {width}")
    if not 1 <= depth <= 6:
        raise EdgecnnError(f"unet depth must be 1 to 6 levels, got {depth}")
    check_divisible(x, 2**depth, "unet")
    skips = []
    for level in range(depth):
        x = conv_bn(x, width * 2**level, 3, f"enc{level}_conv1")
        x = conv_bn(x, width * 2**level, 3, f"enc{level}_conv2")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = conv_bn(x, width * 2**depth, 3, "bottleneck_conv1")
    x = conv_bn(x, width * 2**depth, 3, "bottleneck_conv2")
    for level in reversed(range(depth)):
        x = conv_bn(x, width * 2**level, 1, f"dec{level}_reduce")  # the paper's channel-halving up-conv
        x = up_and_concat(x, skips[level], f"dec{level}")
        x = conv_bn(x, width * 2**level, 3, f"dec{level}_conv1")
        x = conv_bn(x, width * 2**level, 3, f"dec{level}_conv2")
    return segmentation_head(x, num_classes)


# decoder widths at strides 16, 8, 4, 2 and 1 for alpha 1.0, scaled by alpha like the encoder
MOBILE_DECODER = (192, 128, 96, 64, 48)


def _unet_mobilenet_v2(x: Any, num_classes: int, alpha: float) -> Any:
    """MobileNetV2 encoder, separable decoder blocks with skips at strides 16, 8, 4, 2, full-size output."""
    check_classes(num_classes)
    if alpha <= 0:
        raise EdgecnnError(f"alpha must be positive (e.g. 0.35, 0.5, 1.0), got {alpha}")
    check_divisible(x, 32, "unet_mobilenet_v2")
    *skips, x = mobilenet_v2_features(x, alpha)  # strides 2, 4, 8, 16 and 32
    widths = [make_divisible(c * alpha) for c in MOBILE_DECODER]
    x = conv_bn(x, widths[0], 1, "decoder_reduce")  # 1280 channels down to the decoder's width, at stride 32
    for stride, skip, filters in zip((16, 8, 4, 2), reversed(skips), widths[:4], strict=True):
        x = up_and_concat(x, skip, f"decoder_s{stride}")
        x = separable_bn(x, filters, f"decoder_s{stride}")
    x = upsample(x, 2, "decoder_s1_up")
    x = separable_bn(x, widths[-1], "decoder_s1")
    return segmentation_head(x, num_classes)


@register(family="unet", default_size=128, edgetpu=True, task="segment")
def unet(x: Any, num_classes: int, width: int = 16, depth: int = 4) -> Any:
    """U-Net, 16 filters doubling over 4 levels (input a multiple of 2**depth)."""
    return _unet(x, num_classes, width, depth)


@register(family="unet", default_size=224, edgetpu=True, task="segment")
def unet_mobilenet_v2(x: Any, num_classes: int, alpha: float = 0.35) -> Any:
    """U-Net with a MobileNetV2 encoder, width 0.35 (input a multiple of 32)."""
    return _unet_mobilenet_v2(x, num_classes, alpha)
