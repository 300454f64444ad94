"""Weight clustering with tfmot (Han et al., 2016, "Deep Compression"): every kernel keeps only
``clusters`` distinct values, so the int8 model compresses well; apply, fine-tune, strip.

``preserve_sparsity`` keeps pruned zeros at zero while clustering (the PC step of PCQAT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.graph import clone_wrapping
from edgecnn.core.keras_env import tfmot
from edgecnn.optimize.common import kernel_layer_types, refuse_if_quantized


@dataclass
class ClusterConfig:
    clusters: int = 16
    preserve_sparsity: bool = False

    def validate(self) -> None:
        if not 2 <= self.clusters <= 256:
            raise EdgecnnError(f"--cluster must be between 2 and 256 clusters, got {self.clusters}")


def apply_clustering(model: Any, config: ClusterConfig) -> Any:
    config.validate()
    refuse_if_quantized(model, "cluster")
    clustering = tfmot.clustering.keras
    kwargs = {
        "number_of_clusters": config.clusters,
        "cluster_centroids_init": clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
    }
    if config.preserve_sparsity:
        kwargs["preserve_sparsity"] = True

    def wants(layer: Any) -> bool:
        # a kernel with fewer weights than clusters cannot be clustered (and gains nothing)
        return isinstance(layer, kernel_layer_types()) and layer.weights[0].shape.num_elements() > config.clusters

    return clone_wrapping(model, lambda layer: clustering.cluster_weights(layer, **kwargs), wants)


def strip(model: Any) -> Any:
    return tfmot.clustering.keras.strip_clustering(model)
