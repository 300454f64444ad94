"""Keras model files: checking a path given for one, telling a quantization-aware file, and saving a model
with its edgecnn record inside. Loading needs every architecture's custom layers registered, so it sits
above the blocks that define them: :func:`edgecnn.trainer.load.load_keras`."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import atomic_path
from edgecnn.core.metadata import ModelInfo, write_keras_info

KERAS_SUFFIXES = (".keras", ".h5")


def check_keras_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix == ".tflite":
        raise EdgecnnError(f"{path} is a .tflite model; this command needs the Keras model (.keras) it came from")
    if path.is_dir() and (path / "model.keras").is_file():
        return path / "model.keras"  # a run folder
    if not path.is_file():
        raise EdgecnnError(f"model file not found: {path}; check the path")
    if path.suffix not in KERAS_SUFFIXES:
        raise EdgecnnError(f"{path} is not a Keras model; give a .keras or .h5 file or a run folder")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise EdgecnnError(f"corrupt Keras model: {path} is not a .keras archive; re-run edgecnn train")
    return path


# Class names a quantization-aware model's config holds (tfmot's wrappers; edgecnn's QAT layers subclass them)
QAT_CLASSES = (b'"QuantizeWrapperV2"', b'"QuantizeLayer"', b'"QuantizeAnnotate"')


def is_qat_file(path: Path) -> bool:
    """Whether a .keras file holds a quantization-aware model (``edgecnn optimize --qat`` writes them): its
    layers deserialize only inside tfmot's scope. A .h5 is loaded as is."""
    if path.suffix != ".keras":
        return False
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json") if "config.json" in archive.namelist() else b""
    return any(name in config for name in QAT_CLASSES)


def save_keras(model: Any, path: str | os.PathLike, info: ModelInfo) -> Path:
    """Save atomically as .keras with the edgecnn record inside."""
    path = Path(path)
    with atomic_path(path) as tmp:
        model.save(tmp)
        write_keras_info(tmp, info)
    return path
