"""Mixed precision training that leaves nothing but float32 behind.

``--precision mixed_float16`` (GPUs with tensor cores) or ``mixed_bfloat16`` (TPUs, recent CPUs and GPUs)
trains a copy of the model built under that Keras policy: float16/bfloat16 compute, float32 variables,
and the output chain (the last layers with weights and the weightless layers after them, e.g. the
softmax) kept in float32 for a numerically sound loss. Loss scaling (mixed_float16 only) comes with
``compile``, which wraps the optimizer in a LossScaleOptimizer under that policy.

The model that is saved and exported is the float32-policy original, which shares nothing with the copy
but receives its trained weights (the variables are float32 in both): no float16 cast can reach a .tflite.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from edgecnn.config import PRECISIONS
from edgecnn.keras_env import keras

__all__ = ["PRECISIONS", "compute_dtypes", "output_chain", "policy", "training_copy"]


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """The global Keras dtype policy ``name`` inside the block; the previous one after it."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


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


def compute_dtypes(model: Any) -> dict[str, str]:
    """Each layer's compute dtype (for tests and the run's record)."""
    return {layer.name: layer.compute_dtype for layer in model.layers}
