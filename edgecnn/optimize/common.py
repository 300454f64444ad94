"""What the optimization steps share: which layers carry prunable/clusterable kernels, sparsity and
compressed size measurements. The apply-by-clone helper (tfmot's documented pattern) is
:func:`edgecnn.core.graph.clone_wrapping`."""

from __future__ import annotations

import gzip
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras


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
