"""The one place that imports TensorFlow and Keras.

tensorflow-model-optimization only supports Keras 2, so every model is a ``tf_keras`` model and
``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first imported. Everything else does
``from edgecnn.core.keras_env import keras, tf, tfmot`` (and the .tflite flatbuffer writer); nothing
imports TensorFlow, keras or tfmot directly.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import contextlib
from collections.abc import Iterator

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.quiet import native_stderr_silenced

try:
    with native_stderr_silenced():
        import tensorflow as tf
        import tensorflow_model_optimization as tfmot  # after the variable above: tfmot needs Keras 2
        import tf_keras as keras
        from tensorflow.lite.python import schema_py_generated as tflite_schema
        from tensorflow.lite.tools import flatbuffer_utils

        tf.config.list_physical_devices("GPU")  # CUDA probing logs happen here, once
except ImportError as exc:  # the light (Pi) install has no TensorFlow
    raise EdgecnnError(
        f"this command needs TensorFlow ({exc.name} is not installed); install it with: pip install 'edgecnn[train]'"
    ) from exc

tf.get_logger().setLevel("ERROR")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and turn on deterministic ops, for the rest of the process: a step
    that trains (train, optimize) gives the same result whatever ran before it in the process. Without the
    second half, QAT of one model gave 87.19% int8 from the CLI and 84.96% after a train in the same
    process (benchmarks/quant_debug.py's candidate): determinism switched on by the train, not the seed."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """The global Keras dtype policy ``name`` inside the block; the previous one after it."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


__all__ = ["flatbuffer_utils", "keras", "seed_everything", "tf", "tflite_schema", "tfmot"]
