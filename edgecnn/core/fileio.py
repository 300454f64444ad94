"""Atomic file output: every artefact is written to a temp file beside its target, then renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgecnn.core.errors import EdgecnnError


def check_output_path(
    path: str | os.PathLike,
    what: str = "output",
    suffixes: tuple[str, ...] = (),
    inputs: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Fail early (before any work) when the output cannot or must not be written: a missing or read-only
    folder, a file name whose extension is not one of ``suffixes``, or the same file as one of ``inputs``
    (writing it would destroy the user's input)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise EdgecnnError(f"{what} folder {parent} is a file; pick another -o path")
    if not parent.is_dir():
        raise EdgecnnError(f"{what} folder does not exist: {parent}; create it or pick another -o path")
    if not os.access(parent, os.W_OK):
        raise EdgecnnError(f"{what} folder is not writable: {parent}; pick a writable -o path")
    if path.is_dir():
        raise EdgecnnError(f"{what} path is a folder: {path}; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise EdgecnnError(f"{what} {path} must end in {' or '.join(suffixes)}; rename it")
    for source in inputs:
        if same_file(path, source):
            raise EdgecnnError(f"{what} {path} is the input file {source}; writing it would destroy it, pick another")
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (links and relative paths included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return Path(a).resolve() == Path(b).resolve()


def check_output_dir(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail early when a folder cannot be created or written, without creating it (nothing is left behind
    by a run that fails later)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgecnnError(f"{what} folder {path} is a file; pick another path")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise EdgecnnError(f"cannot create {what} folder {path}: {existing} is a file; pick another path")
    if not os.access(existing, os.W_OK):
        raise EdgecnnError(f"cannot create {what} folder {path}: {existing} is not writable; pick another path")
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
    """Yield a temp path in the target's folder; rename it onto ``path`` only if the block succeeds.

    The file gets the permissions of a normally created file (0666 less the umask), not the temp file's
    0600: a model written by one user must be readable by the service that runs it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
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


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask
