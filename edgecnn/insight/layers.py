"""Finding a layer in any Keras model (nested backbones included) and reading its output on a forward pass.

keras.applications backbones nest a whole Functional model as one layer of the classifier, so "the last
convolution" is two levels down and a sub-model from the outer input to it cannot be built (Keras calls
that graph disconnected). Instead, :func:`capture` records what the layer returns while the whole model
runs, which works at any depth and keeps the tensor on a ``GradientTape``.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras


def walk(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every layer as (path, layer) in graph order, nested models' layers at the nested model's place;
    a path is the layer names from the top joined by '/', e.g. 'mobilenetv2_0.35_224/Conv1'."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        yield path, layer
        if hasattr(layer, "layers") and isinstance(layer, keras.Model):
            yield from walk(layer, path + "/")


def path_of(model: Any, layer: Any) -> str:
    """``layer``'s path in ``model`` ('outer/inner' inside a nested model), as :func:`walk` names it."""
    return next((path for path, found in walk(model) if found is layer), layer.name)


def conv_types() -> tuple[type, ...]:
    return (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def is_conv(layer: Any) -> bool:
    return isinstance(layer, conv_types()) and not isinstance(layer, keras.layers.Conv2DTranspose)


def find_layer(model: Any, name: str) -> Any:
    """The layer called ``name`` (its own name or its path), at any depth; a user error naming close ones."""
    found = [layer for path, layer in walk(model) if name in (path, layer.name)]
    if found:
        return found[0]
    names = [layer.name for _, layer in walk(model)]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"its layers include {', '.join(names[-5:])}"
    raise EdgecnnError(f"model {model.name!r} has no layer {name!r}; {hint} (edgecnn profile MODEL lists them)")


def conv_layers(model: Any) -> list[Any]:
    """The 2-D convolutions (regular, depthwise, separable), in graph order, nested ones included."""
    return [layer for _, layer in walk(model) if is_conv(layer)]


def last_conv(model: Any) -> Any:
    """The last convolution: the deepest layer that still has a spatial map (Grad-CAM's default)."""
    convs = conv_layers(model)
    if not convs:
        raise EdgecnnError(f"model {model.name!r} has no convolutional layer; pass --layer NAME of a 4-D layer")
    return convs[-1]


def _map_shape(layer: Any) -> tuple[Any, ...] | None:
    try:
        shape = layer.output_shape
    except (AttributeError, RuntimeError):  # a layer called more than once has no single shape
        return None
    return tuple(shape) if isinstance(shape, tuple) and len(shape) == 4 else None


def gradcam_layer(model: Any) -> Any:
    """Grad-CAM's default: the last convolution's block output, i.e. the last convolution followed
    through the layers after it that keep its map's size (batch norm, activation, a residual add), as
    the Keras Grad-CAM example takes the block's activation. Grad-CAM weighs rectified maps; a bare
    convolution's output is signed, and its map points at background as often as at the object."""
    layers = [layer for _, layer in walk(model)]
    conv = last_conv(model)
    chosen = conv
    start = next(i for i, layer in enumerate(layers) if layer is conv)
    size = (_map_shape(conv) or (None,) * 4)[1:3]
    for layer in layers[start + 1 :]:
        shape = _map_shape(layer)
        if shape is None or shape[1:3] != size or is_conv(layer) or isinstance(layer, keras.Model):
            break
        chosen = layer
    return chosen


def first_conv(model: Any) -> Any:
    """The first convolution: its kernels look at pixels directly, so they can be shown as images."""
    convs = conv_layers(model)
    if not convs:
        raise EdgecnnError(f"model {model.name!r} has no convolutional layer; pass --filters NAME")
    return convs[0]


@contextlib.contextmanager
def capture(layer: Any) -> Iterator[list[Any]]:
    """Record ``layer``'s output on every call while the block runs (the last call is ``[-1]``).

    The layer's ``call`` is wrapped on the instance and restored afterwards; a Keras layer's ``__call__``
    looks ``call`` up on the instance, at any nesting depth, eagerly or while tracing.
    """
    outputs: list[Any] = []
    original = layer.call

    def recording(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        outputs.append(out)
        return out

    layer.call = recording
    try:
        yield outputs
    finally:
        del layer.call  # back to the class's method


def spatial_output(layer: Any, flag: str) -> None:
    """Refuse a layer without a (batch, H, W, C) output: there is no map to show."""
    shape = layer.output_shape if not isinstance(layer.output_shape, list) else layer.output_shape[0]
    if len(shape) != 4:
        raise EdgecnnError(
            f"layer {layer.name!r} outputs shape {tuple(shape)}, not a (batch, H, W, C) map; "
            f"give {flag} a convolution, pooling or activation layer before the flatten/pool"
        )
