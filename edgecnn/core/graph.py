"""Keras model graphs: what a converter reads, and layer-by-layer rewrites of a model.

- Tracing: a model as a batch-1 concrete function plus the variables it reads (:class:`Graph`), the
  form every conversion (TFLite, Edge TPU) starts from; a task's export may end it in a custom op.
- Rewriting: copies of a model with some layers replaced, all through ``keras.models.clone_model`` with
  a ``clone_function`` (the pattern tfmot documents): wrapping layers for pruning and clustering,
  exact rewrites for XNNPACK, a mixed-precision training copy.

Keras only (through :mod:`edgecnn.core.keras_env`): the blocks that convert, optimize and train share
these, so they live below all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.core.keras_env import keras, policy, tf


@dataclass(frozen=True)
class Graph:
    """What the converter turns into a .tflite."""

    function: Any  # a concrete function with a static (1, H, W, C) float input
    variables: Any  # a trackable holding the variables it reads
    custom_ops: bool = False  # the graph ends in a custom op (the detection postprocess)
    float_outputs: bool = False  # outputs stay float32 even when the body is int8


def trace_batch1(model: Any) -> Any:
    """A concrete function with a static (1, H, W, C) float input."""
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32, name="pixels")
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def variables_only(model: Any) -> Any:
    """A trackable holding just the model's variables, for the converter's SavedModel step: the .tflite
    gets the same signature and weights, without the converter tracing every layer's call functions
    (SSDLite MobileNet v2 0.35: 4 s instead of 25-35 s; measured)."""
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return holder


def keras_graph(model: Any) -> Graph:
    """The plain graph of a Keras model: its outputs as they are."""
    return Graph(trace_batch1(model), variables_only(model))


def clone_wrapping(model: Any, wrap: Callable[[Any], Any], predicate: Callable[[Any], bool]) -> Any:
    """Clone ``model`` with ``wrap(layer)`` applied to layers where ``predicate`` holds; others are reused."""

    def clone(layer: Any) -> Any:
        return wrap(layer) if predicate(layer) else layer.__class__.from_config(layer.get_config())

    cloned = keras.models.clone_model(model, clone_function=clone)
    for src, dst in zip(model.layers, cloned.layers, strict=True):
        if src.get_weights() and not predicate(src):
            dst.set_weights(src.get_weights())
    return cloned


def exact_rewrites(model: Any) -> Any:
    """The model with its non-overlapping average pools as fixed depthwise convolutions: the same numbers
    (a k x k pool with stride k is a depthwise k x k kernel of 1/k^2, exact in int8 too: each weight is
    one int8 code), but XNNPACK runs int8 depthwise and not int8 AVERAGE_POOL_2D.

    Only top-level layers of a functional or sequential model are rewritten; anything else (subclassed
    models, padded or overlapping pools) is returned as it is.
    """
    if not any(_rewritable(layer) for layer in model.layers):
        return model
    fresh: dict[str, Any] = {}

    def clone(layer: Any) -> Any:
        if not _rewritable(layer):
            return layer  # shared: same weights, nothing copied
        kh, kw = layer.pool_size
        fresh[layer.name] = keras.layers.DepthwiseConv2D(
            (kh, kw),
            strides=(kh, kw),
            use_bias=False,
            trainable=False,
            # set below; a random initializer would draw from the global random stream, so optimize's next
            # fine-tuning step would train differently after measuring the int8 file
            depthwise_initializer="zeros",
            name=layer.name,
        )
        return fresh[layer.name]

    try:
        rewritten = keras.models.clone_model(model, input_tensors=None, clone_function=clone)
    except (ValueError, TypeError, NotImplementedError):  # subclassed or otherwise unclonable
        return model
    for layer in fresh.values():
        kernel = layer.get_weights()[0]
        kh, kw = kernel.shape[:2]
        layer.set_weights([np.full(kernel.shape, 1.0 / (kh * kw), kernel.dtype)])
    return rewritten


def _rewritable(layer: Any) -> bool:
    return (
        isinstance(layer, keras.layers.AveragePooling2D)
        and tuple(layer.pool_size) == tuple(layer.strides)
        and layer.padding == "valid"
        and layer.data_format == "channels_last"
    )


def output_chain(model: Any) -> set[str]:
    """Names of the layers that end the model: from each output back through weightless layers (activations,
    reshapes, concatenations) to, and including, the first layers with weights on each path."""
    keep: set[str] = set()
    todo = [t._keras_history.layer for t in model.outputs]
    while todo:
        layer = todo.pop()
        if layer.name in keep or isinstance(layer, keras.layers.InputLayer):
            continue
        keep.add(layer.name)
        if layer.weights:
            continue
        for node in layer.inbound_nodes:
            todo.extend(node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers])
    return keep


def training_copy(model: Any, precision: str) -> Any:
    """The model to train under ``precision``: ``model`` itself for float32, else a clone with the policy on
    every layer but the output chain, starting from ``model``'s weights."""
    if precision == "float32":
        return model
    keep = output_chain(model)

    def clone(layer: Any) -> Any:
        if isinstance(layer, keras.Model):  # a nested backbone: its layers get the policy too
            return keras.models.clone_model(layer, clone_function=clone)
        config = layer.get_config()
        config["dtype"] = "float32" if layer.name in keep else precision
        return layer.__class__.from_config(config)

    with policy(precision):
        copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
