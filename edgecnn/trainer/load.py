"""Loading an edgecnn Keras model: with every architecture's custom layers registered, and a
quantization-aware model (``edgecnn optimize --qat``) inside tfmot's scope with edgecnn's QAT layers.

It draws on the architecture registry and the QAT block, so it lives above both (the file checks and
saving, which need neither, are :mod:`edgecnn.core.keras_io`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from edgecnn.archs import list_archs
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras
from edgecnn.core.keras_io import check_keras_path, is_qat_file
from edgecnn.core.metadata import ModelInfo, read_keras_info


def load_keras(path: str | os.PathLike) -> tuple[Any, ModelInfo | None]:
    """The model and its edgecnn record; a corrupt or foreign file is a one-line user error."""

    path = check_keras_path(path)

    list_archs()  # imports every family so their custom layers are registered for deserialization
    try:
        with _qat_scope() if is_qat_file(path) else contextlib.nullcontext():
            model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types (OSError, ValueError, KeyError, TypeError)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EdgecnnError(f"cannot load Keras model {path}: {first}") from exc
    return model, read_keras_info(path)


def _qat_scope() -> contextlib.AbstractContextManager:
    from edgecnn.optimize.qat import qat_scope  # lazy: tfmot is imported only for a quantization-aware model

    return qat_scope()
