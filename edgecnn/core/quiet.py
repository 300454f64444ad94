"""Silence native (C++) log lines that TensorFlow and the converter print straight to fd 2, without
ever hiding a crash.

TensorFlow 2.2x logs through absl before it reads TF_CPP_MIN_LOG_LEVEL (oneDNN notice, CUDA
probing), and the MLIR converter prints its pass options; none of it is actionable for a user,
and it buries our one-line errors. ``EDGECNN_NATIVE_LOGS=1`` shows it again for debugging.

A native call can also kill the process with a signal (a damaged model segfaults LiteRT). Silenced,
that death would be silent (exit 139, nothing printed); :func:`last_words` makes it one line on the
real stderr first.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

FATAL_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT") if hasattr(signal, name)
)


class _CrashHandler:
    """A C-level handler for the fatal signals that writes one prepared line, restores the default action
    and raises the signal again (pending until the handler returns), so the process still dies of it
    (exit 139 stays 139).
    Python cannot catch these signals (its handlers run between bytecodes, after the fault has looped);
    ``faulthandler`` can, but prints a multi-line stack dump instead of a line the user can act on.
    The handler runs Python code (ctypes takes the GIL): fine for a fault in the thread that called into
    the native code, which is where a damaged model crashes a load."""

    def __init__(self) -> None:
        self.lines: dict[int, bytes] = {}
        self.fd = 2
        try:
            libc = ctypes.CDLL(None)
            libc.signal.restype = ctypes.c_void_p
            libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
            libc.sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        except (OSError, AttributeError, TypeError):  # no C library to ask (Windows): faulthandler's dump
            self.libc: Any = None
            return
        self.libc = libc
        self._callback = ctypes.CFUNCTYPE(None, ctypes.c_int)(self._fired)  # kept alive with the handler
        self.pointer = ctypes.cast(self._callback, ctypes.c_void_p).value

    def _fired(self, signum: int) -> None:
        os.write(self.fd, self.lines.get(signum, b"edgecnn: fatal signal\n"))
        self.libc.signal(signum, None)  # SIG_DFL, and the signal again: pending until this handler returns
        os.kill(os.getpid(), signum)

    def install(self, message: str, fd: int) -> dict[int, Any]:
        """Our handler for every fatal signal; returns what was there (``struct sigaction`` as opaque bytes,
        so that :meth:`restore` gives back a handler such as faulthandler's with its flags intact)."""
        self.fd = fd
        self.lines = {
            sig: (message.replace("SIGNAL", signal.Signals(sig).name) + "\n").encode() for sig in FATAL_SIGNALS
        }
        previous = {}
        for sig in FATAL_SIGNALS:
            previous[sig] = ctypes.create_string_buffer(256)  # larger than struct sigaction anywhere
            self.libc.sigaction(sig, None, previous[sig])
            self.libc.signal(sig, self.pointer)
        return previous

    def restore(self, previous: dict[int, Any]) -> None:
        for sig, action in previous.items():
            self.libc.sigaction(sig, action, None)


_HANDLER = _CrashHandler()


@contextlib.contextmanager
def last_words(message: str, fd: int = 2) -> Iterator[None]:
    """If the process dies of a fatal signal inside the block, ``message`` (one line; ``SIGNAL`` in it
    becomes the signal's name, e.g. SIGSEGV) is written to ``fd`` first. Costs about 30 us."""
    if _HANDLER.libc is None:  # a stack dump rather than nothing
        if faulthandler.is_enabled():
            yield
            return
        faulthandler.enable(file=fd)
        try:
            yield
        finally:
            faulthandler.disable()
        return
    previous = _HANDLER.install(message, fd)
    try:
        yield
    finally:
        _HANDLER.restore(previous)


@contextlib.contextmanager
def native_stderr_silenced(crash_message: str | None = None) -> Iterator[None]:
    """fd 2 goes to /dev/null inside the block; with ``crash_message`` (say, naming the model being loaded) a
    fatal signal inside it still prints that line on the real stderr (see :func:`last_words`)."""
    if os.environ.get("EDGECNN_NATIVE_LOGS") == "1":
        with last_words(crash_message) if crash_message else contextlib.nullcontext():
            yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        # The one-line handler only where the crash would come from the calling thread (a model load): it
        # runs Python, so a fault in another thread while this one holds the GIL would hang instead of die
        # (TensorFlow's converter runs many threads; there the block stays as it was).
        with last_words(crash_message, saved) if crash_message else contextlib.nullcontext():
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
