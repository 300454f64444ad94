"""Images that stay on disk: :class:`ImageFiles` is a read-only (N, S, S, C) uint8 array whose images are
decoded and resized when they are read, so a dataset of any size costs memory for its file list only.

Image folders, COCO and YOLO datasets hold their pixels as ``ImageFiles``; the built-in sets hold numpy
arrays. Both are read the same way: ``x[i]`` (one image), ``x[index]`` (a numpy array of those images),
``len(x)``, ``x.shape``, iteration, and :func:`image_batches` for whole-set passes (evaluation,
calibration) a batch at a time. Training streams them through tf.data (:mod:`edgecnn.data.stream`).
Every read goes through :func:`edgecnn.data.images.load_image`, the in-memory loaders' own decode, so
the pixels are the same either way.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data.images import load_image

MEMORY = "memory"  # --cache memory: decoded images kept in RAM once read (ImageFiles.read)


def decode_workers() -> int:
    """Threads that decode for whole-set passes (OpenCV releases the GIL while it decodes)."""
    return max(1, min(4, os.cpu_count() or 1))


class ImageFiles:
    """``paths`` read as a (N, img_size, img_size, C) uint8 array in ``pixel_format`` ('rgb' or 'gray').

    ``root`` is the dataset folder: :meth:`keys` are the paths relative to it (what a run records of its
    split). ``cache`` is how decoded images are kept: None (decoded on every read), 'memory' (here, once
    read: it outlives the tf.data pipelines a run builds, one per epoch) or a file prefix (tf.data's file
    cache, :mod:`edgecnn.data.stream`).
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(
        self, paths: Sequence[str | Path], img_size: int, pixel_format: str, root: Path, cache: str | None = None
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.img_size = img_size
        self.pixel_format = pixel_format
        self.root = Path(root)
        self.cache = cache
        self.undecodable: set[str] = set()  # files whose header passed but whose pixels did not decode
        self._memory: dict[int, np.ndarray] = {}  # --cache memory: position -> decoded image

    # -- the array interface ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.img_size, self.img_size, 1 if self.pixel_format == "gray" else 3)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files under {self.root}, {self.img_size} px, {self.pixel_format})"

    def __getitem__(self, index: Any) -> np.ndarray:
        """An int gives one image; a slice, an integer or boolean array gives a numpy array of those images
        (decoded now, like numpy's fancy indexing copies); a tuple indexes further into that."""
        if isinstance(index, tuple):
            return self[index[0]][index[1:]] if index else np.asarray(self)
        if isinstance(index, int | np.integer):
            return self.image(int(index))
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        return self.take(np.asarray(index))

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches(64):
            yield from batch

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """Every image decoded into one array: for small sets and tests; whole-set passes use :meth:`batches`."""
        if copy is False:
            raise ValueError("ImageFiles are decoded on read; an array of them is always a copy")
        array = self.take(np.arange(len(self)))
        return array.astype(dtype) if dtype is not None else array

    def astype(self, dtype: Any) -> np.ndarray:
        """Every image decoded, as ``dtype``, for code written for arrays; it holds the whole set in memory."""
        return np.asarray(self, dtype)

    # -- reading ---------------------------------------------------------------------------------------
    def read(self, i: int) -> np.ndarray | None:
        """Image ``i`` at the model's size and pixel format; None when it cannot be decoded."""
        if i in self._memory:
            return self._memory[i]
        image = load_image(Path(self.paths[i]), self.img_size, self.pixel_format)
        if image is not None and self.cache == MEMORY:
            image.setflags(write=False)  # shared by every later read
            self._memory[i] = image
        return image

    def image(self, i: int) -> np.ndarray:
        """Image ``i``. A file whose header passed the listing check but whose pixels do not decode is named
        once on stderr and read as black: an evaluation after hours of training does not die on it, and
        the labels stay aligned (the training stream skips it instead)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} of {len(self)}")
        i %= len(self)
        image = self.read(i)
        if image is None:
            self.warn_undecodable(i, "read as a black image")
            return np.zeros(self.shape[1:], np.uint8)
        return image

    def take(self, index: np.ndarray) -> np.ndarray:
        """The images at integer positions or a boolean mask, decoded in parallel: (K, S, S, C) uint8."""
        index = np.asarray(index)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64).reshape(-1)
        if not len(index):
            return np.zeros((0, *self.shape[1:]), np.uint8)
        with ThreadPoolExecutor(decode_workers()) as pool:
            return np.stack(list(pool.map(self.image, index.tolist())))

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """Consecutive (<= size, S, S, C) arrays in order; the next batch decodes while this one is used."""
        starts = range(0, len(self), size)
        with ThreadPoolExecutor(decode_workers()) as pool:
            pending = [pool.map(self.image, range(s, min(s + size, len(self)))) for s in starts[:2]]
            for k in range(len(starts)):
                batch = np.stack(list(pending.pop(0)))
                if k + 2 < len(starts):
                    s = starts[k + 2]
                    pending.append(pool.map(self.image, range(s, min(s + size, len(self)))))
                yield batch

    # -- the dataset view ------------------------------------------------------------------------------
    def subset(self, index: np.ndarray) -> ImageFiles:
        """The files at integer positions, still on disk."""
        return ImageFiles([self.paths[i] for i in np.asarray(index, np.int64).tolist()], *self._settings())

    def _settings(self) -> tuple[int, str, Path, str | None]:
        return self.img_size, self.pixel_format, self.root, self.cache

    def keys(self) -> list[str]:
        """Each file's path relative to the dataset folder (absolute when outside it), as POSIX text."""
        root = os.path.abspath(self.root)
        keys = []
        for path in self.paths:
            full = os.path.abspath(path)
            rel = os.path.relpath(full, root)
            keys.append(Path(full).as_posix() if rel.startswith("..") else Path(rel).as_posix())
        return keys

    def fingerprint(self) -> str:
        """What the decoded images depend on: the files (path, size, modification time), size and format."""
        digest = hashlib.sha256(f"{self.img_size} {self.pixel_format}\n".encode())
        for path in self.paths:
            stat = os.stat(path)
            digest.update(f"{os.path.abspath(path)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def warn_undecodable(self, i: int, what: str = "skipped") -> None:
        """Say once, naming the file, that image ``i`` does not decode and what is done instead."""
        path = self.paths[i]
        if path not in self.undecodable:
            self.undecodable.add(path)
            print(f"warning: cannot decode {path} ({what}); replace or remove the file", file=sys.stderr)


def take_images(x: np.ndarray | ImageFiles, index: np.ndarray) -> np.ndarray | ImageFiles:
    """``x`` at integer positions: a numpy copy of an array, the files still on disk of :class:`ImageFiles`."""
    return x.subset(index) if isinstance(x, ImageFiles) else x[index]


def streamed(x: Any) -> bool:
    """Whether these pixels live on disk (and train through :mod:`edgecnn.data.stream`)."""
    return isinstance(x, ImageFiles)


def image_batches(x: np.ndarray | ImageFiles, size: int) -> Iterator[np.ndarray]:
    """(<= size, S, S, C) uint8 arrays over all of ``x``, in order: one whole-set pass in bounded memory."""
    if isinstance(x, ImageFiles):
        yield from x.batches(size)
        return
    for start in range(0, len(x), size):
        yield x[start : start + size]


def map_batches(fn: Callable[[np.ndarray], Any], x: np.ndarray | ImageFiles, size: int) -> Any:
    """``fn`` over :func:`image_batches` of ``x``, the results concatenated (each output of a list/tuple
    result separately). With ``size`` a multiple of the model's batch size, the model sees the same batches
    as one call on the whole array."""
    parts = [fn(batch) for batch in image_batches(x, size)]
    if parts and isinstance(parts[0], list | tuple):
        return [np.concatenate(column) for column in zip(*parts, strict=True)]
    return np.concatenate(parts) if parts else np.zeros((0,))
