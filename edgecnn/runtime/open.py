"""Open a deployed model by its file suffix: .tflite through LiteRT, .onnx through ONNX Runtime.

Both give the same interface (:class:`~edgecnn.runtime.interpreter.TFLiteModel`,
:class:`~edgecnn.runtime.onnx.OnnxModel`), so eval, benchmark and the demo build their model here and never
branch on the format again. ``delegate``/``device`` apply to .tflite models, ``provider`` to .onnx ones: a
benchmark of both kinds in one run takes both flags, each for its own models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import ModelInfo, read_tflite_info
from edgecnn.runtime.interpreter import DeployedModel, load_model
from edgecnn.runtime.onnx import PROVIDERS, OnnxModel, read_onnx_info

DEFAULT_DELEGATE = "xnnpack"


@dataclass(frozen=True)
class ModelFormat:
    """A deployed model format: how to open it and read its record, and which runtime flag it takes."""

    suffix: str
    open: Callable[[Path, int | None, str, str | None, str | None], DeployedModel]
    info: Callable[[Path], ModelInfo | None]
    flag: str  # the runtime flag that applies to it


FORMATS: dict[str, ModelFormat] = {
    ".tflite": ModelFormat(
        ".tflite",
        lambda path, threads, delegate, device, provider: load_model(path, threads, delegate, device),
        read_tflite_info,
        "--delegate",
    ),
    ".onnx": ModelFormat(
        ".onnx",
        lambda path, threads, delegate, device, provider: OnnxModel(path, threads, provider),
        read_onnx_info,
        "--provider",
    ),
}


def model_format(path: str | os.PathLike) -> ModelFormat:
    """The format of a deployed model file by its suffix; any other file is opened as a .tflite, whose loader
    says what is wrong with it (a Keras model: convert it; not a flatbuffer: not a valid .tflite model)."""
    return FORMATS.get(Path(path).suffix, FORMATS[".tflite"])


def open_model(
    path: str | os.PathLike,
    threads: int | None = None,
    delegate: str = DEFAULT_DELEGATE,
    device: str | None = None,
    provider: str | None = None,
) -> DeployedModel:
    """A :class:`~edgecnn.runtime.interpreter.TFLiteModel` or an :class:`OnnxModel` for ``path``, by its suffix."""
    return model_format(path).open(Path(path), threads, delegate, device, provider)


def read_model_info(path: str | os.PathLike) -> ModelInfo | None:
    """The edgecnn record of a .tflite or .onnx model (None when it has none); None for other files."""
    path = Path(path)
    return FORMATS[path.suffix].info(path) if path.suffix in FORMATS else None


def check_runtime_flags(paths: Iterable[str | os.PathLike], delegate: str, provider: str | None) -> None:
    """A runtime flag that no given model takes is a mistake, not something to ignore: ``--provider`` with
    only .tflite models, ``--delegate``/``--device`` other than the default with only .onnx models."""
    flags = {model_format(p).flag for p in paths}
    if provider is not None and "--provider" not in flags:
        raise EdgecnnError(
            f"--provider {provider} applies to .onnx models and every model given is a .tflite; "
            "drop it (use --delegate for .tflite models)"
        )
    if provider is not None and provider not in PROVIDERS:
        raise EdgecnnError(f"unknown provider {provider!r}; use one of: {', '.join(PROVIDERS)}")
    if delegate != DEFAULT_DELEGATE and "--delegate" not in flags:
        raise EdgecnnError(
            f"--delegate {delegate} applies to .tflite models and every model given is an .onnx; "
            f"use --provider {'|'.join(PROVIDERS)} for them"
        )
