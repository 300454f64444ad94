"""ConvNeXt (Liu et al., 2022, "A ConvNet for the 2020s").

A ResNet modernized step by step towards a vision Transformer: a patchify stem (4x4 stride-4 conv +
LayerNorm), four stages of blocks at 1/4, 1/8, 1/16, 1/32 resolution with separate downsampling layers
(LayerNorm + 2x2 stride-2 conv) between them, and an inverted-bottleneck block: 7x7 depthwise conv ->
LayerNorm -> 1x1 expansion x4 -> GELU -> 1x1 projection -> layer scale (a learned per-channel factor,
initialized at 1e-6) -> residual add. Head: global average pool -> LayerNorm -> dense.

Two choices differ from the reference code, with the same parameter count and the same function:
the depthwise conv is a DepthwiseConv2D (not a Conv2D with ``groups=C``) and the pointwise layers are
1x1 Conv2D (not Dense on a 4-D tensor), because TFLite maps those to DEPTHWISE_CONV_2D and CONV_2D,
which every runtime and delegate runs, where a grouped CONV_2D or a reshaped FULLY_CONNECTED is not.
So keras.applications' ImageNet weights do not load by name (the kernels have other shapes).

``convnext_edge`` keeps the macro design (stages, widths, inverted bottleneck, patchify stem,
separate downsampling) and swaps the parts that an int8 Edge TPU model cannot carry:

* LayerNorm -> BatchNormalization. LayerNorm computes statistics per pixel at run time (MEAN,
  SQUARED_DIFFERENCE, RSQRT in TFLite): the Edge TPU does not map that sequence, so it and everything
  after it falls back to the CPU, and in int8 the normalized values lose precision. BatchNormalization
  is a constant affine map at inference: the converter folds it into the adjacent convolution.
  Because a following-BN folds where a preceding one does not, the stem and the downsampling layers
  become conv -> BN (the reference has LayerNorm before the downsampling conv).
* GELU -> ReLU6. The Edge TPU has no GELU; ReLU6 is fused into the convolution and its fixed 0..6
  range quantizes well.
* 7x7 depthwise -> 5x5 (``kernel_size``, 3 or 5): kernels the Edge TPU runs well, the receptive field
  still grows fast.
* Layer scale -> a BatchNormalization after the projection with its scale initialized to zero: like
  layer scale it starts every block as the identity and learns a per-channel factor, and it folds
  into the projection conv, so no multiply is left in the int8 graph.
* Head: global average pool -> BatchNormalization -> dense (the BN is a per-channel MUL and ADD).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import Any

from edgecnn.archs.common import make_divisible
from edgecnn.archs.registry import register
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras

# (blocks per stage, channels per stage)
ATTO = ((2, 2, 6, 2), (40, 80, 160, 320))  # timm's convnext_atto
TINY = ((3, 3, 9, 3), (96, 192, 384, 768))  # Table 9 of the paper: ConvNeXt-T

LN_EPSILON = 1e-6  # as in the reference implementation
EXPANSION = 4  # inverted bottleneck: hidden width = 4 x block width
BN_MOMENTUM = 0.9  # short runs on small data; see mobilenet.py


@functools.cache
def layer_scale_class() -> type:
    """The ``LayerScale`` layer class, built on first use so this module imports without TensorFlow.

    Registered as ``edgecnn>LayerScale`` for .keras loading; the module registers it on import when
    Keras is already loaded (``load_keras`` imports Keras, then every family).
    """

    @keras.saving.register_keras_serializable(package="edgecnn")
    class LayerScale(keras.layers.Layer):
        """Multiply each channel by a learned factor initialized at ``init_value`` (CaiT, Touvron et al. 2021)."""

        def __init__(self, init_value: float = 1e-6, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.init_value = init_value

        def build(self, input_shape: Any) -> None:
            self.gamma = self.add_weight(
                name="gamma",
                shape=(input_shape[-1],),
                initializer=keras.initializers.Constant(self.init_value),
                trainable=True,
            )
            super().build(input_shape)

        def call(self, inputs: Any) -> Any:
            return inputs * self.gamma

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "init_value": self.init_value}

    return LayerScale


def __getattr__(name: str) -> Any:
    """``from edgecnn.archs.convnext import LayerScale`` builds (and registers) the class."""
    if name == "LayerScale":
        return layer_scale_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if "tf_keras" in sys.modules:  # a saved model is about to be loaded: make the layer findable
    layer_scale_class()


def _block(x: Any, dim: int, kernel_size: int, layer_scale: float, name: str) -> Any:
    """Reference block: depthwise k x k -> LayerNorm -> 1x1 x4 -> GELU -> 1x1 -> layer scale -> + input."""

    layers = keras.layers
    shortcut = x
    x = layers.DepthwiseConv2D(kernel_size, padding="same", name=name + "_depthwise")(x)
    x = layers.LayerNormalization(epsilon=LN_EPSILON, name=name + "_norm")(x)
    x = layers.Conv2D(EXPANSION * dim, 1, name=name + "_expand")(x)
    x = layers.Activation("gelu", name=name + "_gelu")(x)
    x = layers.Conv2D(dim, 1, name=name + "_project")(x)
    if layer_scale:
        x = layer_scale_class()(layer_scale, name=name + "_layer_scale")(x)
    return layers.Add(name=name + "_add")([shortcut, x])


def _edge_block(x: Any, dim: int, kernel_size: int, name: str) -> Any:
    """Edge block: depthwise k x k -> BN -> 1x1 x4 -> ReLU6 -> 1x1 -> BN (zero scale) -> + input."""

    layers = keras.layers
    shortcut = x
    x = layers.DepthwiseConv2D(kernel_size, padding="same", use_bias=False, name=name + "_depthwise")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=name + "_bn")(x)
    x = layers.Conv2D(EXPANSION * dim, 1, name=name + "_expand")(x)
    x = layers.ReLU(6.0, name=name + "_relu")(x)
    x = layers.Conv2D(dim, 1, use_bias=False, name=name + "_project")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, gamma_initializer="zeros", name=name + "_scale")(x)
    return layers.Add(name=name + "_add")([shortcut, x])


def _stage_config(config: tuple[Sequence[int], Sequence[int]], width: float, depths: Sequence[int] | None) -> Any:
    """(depths, dims) after the ``depths`` override and the ``width`` multiplier (channels rounded to 8)."""
    default_depths, dims = config
    depths = list(default_depths if depths is None else depths)
    if len(depths) != 4 or any(not isinstance(d, int) or d < 0 for d in depths):
        raise EdgecnnError(f"depths must be 4 non-negative integers (blocks per stage), got {depths!r}")
    if width <= 0:
        raise EdgecnnError(f"width must be positive, got {width}")
    return depths, [make_divisible(d * width, 8) for d in dims]


def _convnext(
    x: Any,
    num_classes: int,
    config: tuple[Sequence[int], Sequence[int]],
    width: float,
    depths: Sequence[int] | None,
    dropout: float,
    small_input: bool,
    layer_scale: float,
) -> Any:
    layers = keras.layers
    depths, dims = _stage_config(config, width, depths)
    patch = 2 if small_input else 4
    x = layers.Conv2D(dims[0], patch, strides=patch, name="stem_conv")(x)
    x = layers.LayerNormalization(epsilon=LN_EPSILON, name="stem_norm")(x)
    for stage, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
        if stage:
            x = layers.LayerNormalization(epsilon=LN_EPSILON, name=f"downsample_{stage}_norm")(x)
            x = layers.Conv2D(dim, 2, strides=2, name=f"downsample_{stage}_conv")(x)
        for block in range(depth):
            x = _block(x, dim, 7, layer_scale, f"stage_{stage}_block_{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.LayerNormalization(epsilon=LN_EPSILON, name="head_norm")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)


def _convnext_edge(
    x: Any,
    num_classes: int,
    config: tuple[Sequence[int], Sequence[int]],
    width: float,
    depths: Sequence[int] | None,
    dropout: float,
    small_input: bool,
    kernel_size: int,
) -> Any:
    layers = keras.layers
    if kernel_size not in (3, 5):
        raise EdgecnnError(f"kernel_size must be 3 or 5 for the Edge TPU, got {kernel_size}")
    depths, dims = _stage_config(config, width, depths)
    patch = 2 if small_input else 4
    x = layers.Conv2D(dims[0], patch, strides=patch, use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    for stage, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
        if stage:
            x = layers.Conv2D(dim, 2, strides=2, use_bias=False, name=f"downsample_{stage}_conv")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"downsample_{stage}_bn")(x)
        for block in range(depth):
            x = _edge_block(x, dim, kernel_size, f"stage_{stage}_block_{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="head_bn")(x)
    x = layers.Dropout(dropout, name="dropout")(x) if dropout else x
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)


@register(family="convnext", default_size=224, edgetpu=False)
def convnext_atto(
    x: Any,
    num_classes: int,
    width: float = 1.0,
    depths: Sequence[int] | None = None,
    dropout: float = 0.0,
    small_input: bool = False,
    layer_scale: float = 1e-6,
) -> Any:
    """ConvNeXt-Atto (timm): depths 2-2-6-2, widths 40-80-160-320; LayerNorm and GELU (CPU/GPU)."""
    return _convnext(x, num_classes, ATTO, width, depths, dropout, small_input, layer_scale)


@register(family="convnext", default_size=224, edgetpu=False)
def convnext_tiny(
    x: Any,
    num_classes: int,
    width: float = 1.0,
    depths: Sequence[int] | None = None,
    dropout: float = 0.0,
    small_input: bool = False,
    layer_scale: float = 1e-6,
) -> Any:
    """ConvNeXt-T: depths 3-3-9-3, widths 96-192-384-768 (28.6M parameters at 1000 classes)."""
    return _convnext(x, num_classes, TINY, width, depths, dropout, small_input, layer_scale)


@register(family="convnext", default_size=224, edgetpu=True)
def convnext_edge(
    x: Any,
    num_classes: int,
    width: float = 1.0,
    depths: Sequence[int] | None = None,
    dropout: float = 0.0,
    small_input: bool = False,
    kernel_size: int = 5,
) -> Any:
    """ConvNeXt-Atto layout for int8 / Edge TPU: BatchNorm, ReLU6, 5x5 depthwise, foldable scale."""
    return _convnext_edge(x, num_classes, ATTO, width, depths, dropout, small_input, kernel_size)
