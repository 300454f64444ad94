"""Segmentation training helpers (TF): masked loss, Dice, the (image, mask) pipeline, and the
logits model that deploys to the Edge TPU. The light runtime side is :mod:`edgecnn.runtime.segment`
and the metrics :mod:`edgecnn.benchmarks.segmentation` (neither imports TensorFlow)."""

from __future__ import annotations

from typing import Any

from edgecnn.archs.unet import PREDICTIONS
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras
from edgecnn.segmentation.loss import (
    IGNORE,
    make_dataset,
    masked_sparse_ce,
    segmentation_loss,
    soft_dice_loss,
)


def logits_model(model: Any) -> Any:
    """``model`` without its final per-pixel softmax: (batch, H, W, classes) scores, same argmax.

    The Edge TPU runs SOFTMAX on 1-D inputs only, so in an int8 .tflite a (1, H, W, C) softmax and
    everything after it run on the CPU; converted without it the whole model maps. Weights are shared.
    """

    last = model.layers[-1]
    if last.name != PREDICTIONS or type(last).__name__ not in ("Softmax", "Activation"):
        raise EdgecnnError(
            f"model {model.name!r} does not end in a softmax layer named {PREDICTIONS!r} "
            f"(it ends in {type(last).__name__} {last.name!r}); build it with edgecnn's segmentation architectures"
        )
    return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")


__all__ = [
    "IGNORE",
    "PREDICTIONS",
    "logits_model",
    "make_dataset",
    "masked_sparse_ce",
    "segmentation_loss",
    "soft_dice_loss",
]
