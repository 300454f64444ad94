"""Atomic file output: every artefact is written to a temp file beside its target, then renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgecnn.errors import EdgecnnError


def check_output_path(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail early (before any work) when the output cannot be written: missing or read-only folder."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise EdgecnnError(f"{what} folder does not exist: {parent}; create it or pick another -o path")
    if not os.access(parent, os.W_OK):
        raise EdgecnnError(f"{what} folder is not writable: {parent}; pick a writable -o path")
    if path.is_dir():
        raise EdgecnnError(f"{what} path is a folder: {path}; give a file name")
    return path


def ensure_dir(path: str | os.PathLike, what: str = "output") -> Path:
    """Create an output folder (and parents); a read-only or file-blocked location is a user error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (PermissionError, FileExistsError, NotADirectoryError) as exc:
        raise EdgecnnError(f"cannot create {what} folder {path}: {exc.strerror or exc}; pick another path") from exc
    if not os.access(path, os.W_OK):
        raise EdgecnnError(f"{what} folder is not writable: {path}; pick a writable path")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
