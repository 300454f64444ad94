"""Architecture registry: ``@register`` on each variant, ``list_archs()``, ``create(name, ...)``.

Every model takes raw 0..255 pixels; :func:`create` puts the normalization inside the graph so the
converted .tflite takes uint8 pixels directly (and the int8 input quantization is lossless).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras

# builder(inputs_normalized, num_classes, **options) -> output tensor(s), or Built(outputs, extra)
Builder = Callable[..., Any]


@dataclass
class Built:
    """What a builder returns when the model needs more than its outputs to be used: ``extra`` is
    task-specific decoding information (detection anchors, ...) that training copies into the model's
    metadata record (``ModelInfo.extra``) and conversion embeds in the .tflite."""

    outputs: Any
    extra: dict[str, Any]


@dataclass(frozen=True)
class ArchSpec:
    name: str
    family: str
    builder: Builder
    default_size: int  # default input height and width
    edgetpu: bool  # every op maps to the Edge TPU at full int8
    doc: str
    task: str = "classify"  # classify: (N, classes) probabilities; detect / segment: see their heads

    def options(self) -> list[str]:
        params = inspect.signature(self.builder).parameters
        return [p for p in params if p not in ("x", "num_classes")]


_REGISTRY: dict[str, ArchSpec] = {}


def register(
    family: str, default_size: int = 224, edgetpu: bool = True, task: str = "classify"
) -> Callable[[Builder], Builder]:
    """Register a builder under its function name (``task`` names an entry of :data:`edgecnn.tasks.TASKS`,
    which sits above this layer; a registry-wide test checks every member's task)."""

    def wrap(fn: Builder) -> Builder:
        name = fn.__name__
        if name in _REGISTRY:
            raise RuntimeError(f"architecture {name!r} registered twice")
        doc = (inspect.getdoc(fn) or "").splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = ArchSpec(name, family, fn, default_size, edgetpu, doc, task)
        return fn

    return wrap


_NOT_FAMILIES = {"registry", "layers", "common"}
_PACKAGE = __name__.rpartition(".")[0]


def _load_families() -> None:
    """Import every module of this package: a new family is one new file, nothing else to edit."""

    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name not in _NOT_FAMILIES and not module.name.startswith("_"):
            importlib.import_module(f"{_PACKAGE}.{module.name}")


def list_archs(task: str | None = None) -> list[str]:
    """Registered names, all of them or those of one task."""
    _load_families()
    return sorted(n for n, spec in _REGISTRY.items() if task is None or spec.task == task)


def get_arch(name: str) -> ArchSpec:
    _load_families()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.7)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'edgecnn archs' for the list"
        raise EdgecnnError(f"unknown architecture {name!r}; {hint}")
    return _REGISTRY[name]


def create(
    name: str,
    num_classes: int,
    input_size: int | tuple[int, int] | None = None,
    channels: int = 3,
    **options: Any,
) -> Any:
    """Build ``name`` as a tf_keras Model: uint8-range input -> in-graph normalization -> task outputs.

    A builder's extra decoding information (see :class:`Built`) is kept as ``model.edgecnn_extra``.
    """

    spec = get_arch(name)
    unknown = sorted(set(options) - set(spec.options()))
    if unknown:
        raise EdgecnnError(
            f"{name} has no option {', '.join(unknown)}; its options are: {', '.join(spec.options()) or 'none'}"
        )
    size = input_size or spec.default_size
    h, w = (size, size) if isinstance(size, int) else size
    inputs = keras.Input(shape=(h, w, channels), name="pixels")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    try:
        built = spec.builder(x, num_classes, **options)
    except ValueError as exc:  # Keras: a layer's output would have no pixels left (negative dimension)
        if "negative" not in str(exc).lower() and "exception encountered when calling layer" not in str(exc).lower():
            raise
        raise EdgecnnError(
            f"{name} cannot take a {h}x{w} input: its downsampling leaves no pixels; use a larger --img "
            f"(its default is {spec.default_size})"
        ) from exc
    if not isinstance(built, Built):
        built = Built(built, {})
    model = keras.Model(inputs, built.outputs, name=name)
    # object.__setattr__: Keras would wrap a dict attribute in trackable containers (not plain JSON)
    object.__setattr__(model, "edgecnn_extra", built.extra)
    return model
