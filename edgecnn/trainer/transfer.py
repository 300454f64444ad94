"""Transfer learning: backbone weights from keras.applications or a file, freezing, fine-tuning.

Weights are copied layer by layer *by name* where shapes agree, so any edgecnn model whose layers
follow keras.applications naming (MobileNet v1/v2, ResNet-50, DenseNet-121, VGG-16) takes ImageNet
weights, and any earlier edgecnn run (or compatible .h5/.keras) can seed a new one whatever its
number of classes: the classifier head never matches and is left freshly initialized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras
from edgecnn.trainer.load import load_keras

# Layers from which on a model is "head": the pooling/flatten that ends the feature extractor.
HEAD_START = ("pool", "flatten")

# edgecnn arch -> (keras.applications constructor, its kwargs, input sizes it has weights for)
IMAGENET: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "mobilenet_v2": ("MobileNetV2", {"alpha": 1.0}, (96, 128, 160, 192, 224)),
    "mobilenet_v2_050": ("MobileNetV2", {"alpha": 0.5}, (96, 128, 160, 192, 224)),
    "mobilenet_v2_035": ("MobileNetV2", {"alpha": 0.35}, (96, 128, 160, 192, 224)),
    "mobilenet_v1": ("MobileNet", {"alpha": 1.0}, (128, 160, 192, 224)),
    "mobilenet_v1_050": ("MobileNet", {"alpha": 0.5}, (128, 160, 192, 224)),
    "mobilenet_v1_025": ("MobileNet", {"alpha": 0.25}, (128, 160, 192, 224)),
    "resnet50": ("ResNet50", {}, (224,)),
    "densenet121": ("DenseNet121", {}, (224,)),
    "vgg16": ("VGG16", {}, (224,)),
}


@dataclass
class WeightTransfer:
    source: str
    loaded: list[str]
    skipped: list[str]  # layers with weights that found no same-named, same-shaped source layer

    def summary(self) -> str:
        return (
            f"loaded weights of {len(self.loaded)} layers from {self.source}; {len(self.skipped)} left as initialized"
        )


def _weighted_layers(model: Any) -> dict[str, Any]:
    return {layer.name: layer for layer in model.layers if layer.weights}


def copy_weights_by_name(source: Any, target: Any, source_name: str) -> WeightTransfer:
    """Copy backbone layers only: the head (from the global pool / flatten on) always starts fresh,
    even when the class counts happen to agree, because it belongs to the old task."""
    src = _weighted_layers(source)
    backbone = {layer.name for layer in target.layers[: head_start(target)]}
    loaded, skipped = [], []
    for name, layer in _weighted_layers(target).items():
        other = src.get(name) if name in backbone else None
        if other is not None and [w.shape for w in other.weights] == [w.shape for w in layer.weights]:
            layer.set_weights(other.get_weights())
            loaded.append(name)
        else:
            skipped.append(name)
    if not loaded:
        raise EdgecnnError(
            f"no layer of {source_name} matches the model by name and shape; give weights of the same architecture"
        )
    return WeightTransfer(source_name, loaded, skipped)


def imagenet_source(arch: str, input_shape: tuple[int, int, int]) -> tuple[Any, str]:
    """The keras.applications backbone with ImageNet weights (downloaded once into ~/.keras/models)."""

    if arch not in IMAGENET:
        raise EdgecnnError(
            f"no ImageNet weights for {arch}; they exist for: {', '.join(IMAGENET)} "
            "(or pass --weights PATH to a .keras/.h5 file)"
        )
    if input_shape[-1] != 3:
        raise EdgecnnError(f"ImageNet weights need 3-channel input, the model has {input_shape[-1]}; add --channels 3")
    constructor, kwargs, sizes = IMAGENET[arch]
    size = min(sizes, key=lambda s: abs(s - input_shape[0]))  # conv weights do not depend on input size
    try:
        model = getattr(keras.applications, constructor)(
            include_top=False, weights="imagenet", input_shape=(size, size, 3), **kwargs
        )
    except Exception as exc:  # get_file raises URLError/HTTPError/OSError/ValueError offline
        raise EdgecnnError(
            f"cannot get ImageNet weights for {arch} ({type(exc).__name__}): "
            "without network access put the keras.applications .h5 file in ~/.keras/models/ "
            "or pass --weights PATH"
        ) from exc
    return model, f"keras.applications.{constructor} ImageNet"


def file_source(path: str) -> tuple[Any, str]:
    """A whole model saved as .keras/.h5 (an edgecnn run folder works too)."""

    model, _ = load_keras(Path(path))
    return model, str(path)


def load_backbone(model: Any, arch: str, weights: str) -> WeightTransfer:
    source, name = imagenet_source(arch, model.input_shape[1:]) if weights == "imagenet" else file_source(weights)
    return copy_weights_by_name(source, model, name)


def head_start(model: Any) -> int:
    """Index of the first head layer (global pool or flatten); everything before it is backbone."""
    for i, layer in enumerate(model.layers):
        if layer.name in HEAD_START:
            return i
    raise EdgecnnError(f"cannot find where the head of {model.name} starts (no layer named pool or flatten)")


def resolve_layer_index(model: Any, at: int | str) -> int:
    """--fine-tune-at as a layer index or a layer name."""
    if isinstance(at, int) or str(at).lstrip("-").isdigit():
        index = int(at)
        if not 0 <= index < len(model.layers):
            raise EdgecnnError(f"--fine-tune-at {index} is outside the model's {len(model.layers)} layers")
        return index
    names = [layer.name for layer in model.layers]
    if at not in names:
        raise EdgecnnError(f"--fine-tune-at {at!r}: no such layer; run 'edgecnn profile' to see layer names")
    return names.index(at)


def set_trainable(model: Any, first_trainable: int, keep_bn_frozen: bool = True) -> None:
    """Freeze layers before ``first_trainable``; BatchNorm stays frozen (inference mode) while fine-tuning,
    as the Keras transfer-learning guide advises, so small batches do not wreck its statistics."""

    for i, layer in enumerate(model.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= first_trainable and not (keep_bn_frozen and is_bn)
