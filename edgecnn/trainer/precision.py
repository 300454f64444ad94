"""Mixed precision training that leaves nothing but float32 behind.

``--precision mixed_float16`` (GPUs with tensor cores) or ``mixed_bfloat16`` (TPUs, recent CPUs and GPUs)
trains a copy of the model built under that Keras policy: float16/bfloat16 compute, float32 variables,
and the output chain (the last layers with weights and the weightless layers after them, e.g. the
softmax) kept in float32 for a numerically sound loss. Loss scaling (mixed_float16 only) comes with
``compile``, which wraps the optimizer in a LossScaleOptimizer under that policy.

The model that is saved and exported is the float32-policy original, which shares nothing with the copy
but receives its trained weights (the variables are float32 in both): no float16 cast can reach a .tflite.
The copy is :func:`edgecnn.core.graph.training_copy` (a clone_model rewrite), under
:func:`edgecnn.core.keras_env.policy`.
"""

from __future__ import annotations

from typing import Any

from edgecnn.core.config import PRECISIONS

__all__ = ["PRECISIONS", "compute_dtypes"]


def compute_dtypes(model: Any) -> dict[str, str]:
    """Each layer's compute dtype (for tests and the run's record)."""
    return {layer.name: layer.compute_dtype for layer in model.layers}
