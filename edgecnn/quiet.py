"""Silence native (C++) log lines that TensorFlow and the converter print straight to fd 2.

TensorFlow 2.2x logs through absl before it reads TF_CPP_MIN_LOG_LEVEL (oneDNN notice, CUDA
probing), and the MLIR converter prints its pass options; none of it is actionable for a user,
and it buries our one-line errors. ``EDGECNN_NATIVE_LOGS=1`` shows it again for debugging.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    if os.environ.get("EDGECNN_NATIVE_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
