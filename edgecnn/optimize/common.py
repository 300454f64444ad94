"""What the optimization steps share: which layers carry prunable/clusterable kernels, sparsity and
compressed size measurements, and the apply-by-clone helper (tfmot's documented pattern)."""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data.base import Split
from edgecnn.data.registry import model_split
from edgecnn.errors import EdgecnnError
from edgecnn.keras_env import keras
from edgecnn.metadata import ModelInfo


def kernel_layer_types() -> tuple[type, ...]:
    """Layers whose kernels pruning and clustering act on (tfmot supports all three)."""

    return (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def is_quantization_aware(model: Any) -> bool:
    return any(
        type(layer).__name__ == "QuantizeWrapperV2" or type(layer).__name__ == "QuantizeWrapper"
        for layer in model.layers
    )


def refuse_if_quantized(model: Any, step: str) -> None:
    """Pruning or clustering a QAT model would destroy its learned quantization ranges."""
    if is_quantization_aware(model):
        raise EdgecnnError(
            f"cannot {step} a quantization-aware model: {step} the float model first, then add --qat "
            "(the steps run in the order distill, prune, cluster, qat)"
        )


def clone_wrapping(model: Any, wrap: Callable[[Any], Any], predicate: Callable[[Any], bool]) -> Any:
    """Clone ``model`` with ``wrap(layer)`` applied to layers where ``predicate`` holds; others are reused."""

    def clone(layer: Any) -> Any:
        return wrap(layer) if predicate(layer) else layer.__class__.from_config(layer.get_config())

    cloned = keras.models.clone_model(model, clone_function=clone)
    for src, dst in zip(model.layers, cloned.layers, strict=True):
        if src.get_weights() and not predicate(src):
            dst.set_weights(src.get_weights())
    return cloned


def kernels(model: Any) -> list[np.ndarray]:
    """Kernel weights (not biases, not BN statistics) of conv/dense layers."""
    out = []
    for layer in model.layers:
        if isinstance(layer, kernel_layer_types()):
            weight = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
            out.append(weight.numpy())
    return out


def sparsity(model: Any) -> float:
    """Fraction of zero kernel weights over all conv/dense kernels."""
    ks = kernels(model)
    total = sum(k.size for k in ks)
    return float(sum((k == 0).sum() for k in ks) / total) if total else 0.0


def unique_values(model: Any) -> int:
    """Largest number of distinct values in any kernel (the cluster count after clustering)."""
    return max((len(np.unique(k)) for k in kernels(model)), default=0)


def gzip_size(data: bytes) -> int:
    """Compressed size as a download or flash image would see it (gzip level 9, as tfmot's guides do)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def fine_tune_data(
    model: Any, info: ModelInfo | None, data: str, seed: int, run: Path | None = None
) -> tuple[ModelInfo, Split]:
    """``optimize --data``: the record and train/validation split to fine-tune ``model`` on ``data``.

    A model edgecnn trained keeps its record with the dataset replaced (its classes must match). A Keras
    model edgecnn did not train (a classifier on a keras.applications backbone saved as .keras) gets a
    classification record from its input shape and the data's classes, which must be as many as its
    outputs; the optimized models carry that record, so convert, eval and benchmark know them after.
    ``run``: the model's run folder; when its split.json is of ``data``, that split is used (the images
    the model was validated on stay out of fine-tuning), else ``data`` is split with ``seed``."""
    if info is None:
        _, h, w, c = model.input_shape
        if h is None or w is None or c not in (1, 3):
            raise EdgecnnError(
                f"model {model.name!r} has input {model.input_shape}; --data needs a fixed (H, W, 1 or 3) input"
            )
        info = ModelInfo(
            labels=[],
            input_size=[int(h), int(w)],
            channels=int(c),
            pixel_format="gray" if c == 1 else "rgb",
            arch=model.name,
            normalization="unknown (a model edgecnn did not train: fed 0..255 pixels)",
        )
    fraction = info.data.get("val_fraction", 0.2)
    info = dataclasses.replace(info, data={"spec": data, "seed": seed, "val_fraction": fraction})
    split = model_split(info, run=run)
    labels = list(split.train.labels)
    outputs = int(model.output_shape[-1])
    if info.task == "classify" and len(labels) != outputs:
        raise EdgecnnError(f"--data {data} has {len(labels)} classes but the model outputs {outputs}; give its classes")
    if info.labels and list(info.labels) != labels:
        raise EdgecnnError(f"--data {data} has classes {labels[:5]}... but the model has {info.labels[:5]}...")
    return dataclasses.replace(info, labels=labels), split
