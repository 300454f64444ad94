"""Training pipelines that stream images from disk with tf.data: file list -> parallel decode and resize ->
(cache) -> shuffle -> augment -> batch -> prefetch. Memory holds the file list and a few batches, not the
dataset: an epoch over 20,000 JPEGs at 224 px (2.8 GiB of pixels) peaked at 1.07 GiB of RSS, TensorFlow's
own 0.68 GiB included, where the in-memory path extrapolates to about 14 GiB; decoding ran at about 1,000
images/s on 2 cores and the augmentation bounds the epoch (``benchmarks/results/input_pipeline.md``).

* **Decode**: each image goes through :meth:`ImageFiles.read <edgecnn.data.files.ImageFiles.read>` (OpenCV,
  the in-memory loaders' own decode and resize, so streamed pixels equal loaded ones) in a parallel
  ``map``; OpenCV releases the GIL while it decodes. A file whose header passed the listing check but whose
  pixels do not decode is named once on stderr and skipped.
* **Shuffle**: the positions are shuffled (a full shuffle of N integers, new every epoch) and then decoded.
  With a cache file the decoded images are cached in a seeded random order and reshuffled each epoch over
  a window of :data:`SHUFFLE_WINDOW` images (the buffer must not hold the set in RAM).
* **Cache**: 'memory' keeps each decoded image in the :class:`~edgecnn.data.files.ImageFiles` (so it
  outlives the pipeline: a run builds one per epoch); a file prefix is tf.data's file cache,
  ``PREFIX-<fingerprint>.index/.data-*`` per split, the fingerprint covering the files (path, size,
  modification time), the image size and the pixel format, so a cache is reused by later epochs and runs
  on the same files and never by other data.

TensorFlow is imported inside the functions (``edgecnn.data`` stays light for the Pi).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data.files import MEMORY, ImageFiles

SHUFFLE_WINDOW = 1024  # images a file-cached stream reshuffles over (150 MB at 224 px; the cached order is random)


def _tf() -> Any:
    from edgecnn.core.keras_env import tf  # lazy: edgecnn.data is light; only training streams need TensorFlow

    return tf


def cache_target(files: ImageFiles) -> str | None:
    """The file prefix ``Dataset.cache`` gets (with the files' fingerprint), or None (no file cache).

    What a run killed while writing the cache left (``PREFIX-<fingerprint>_0.lockfile`` and a temp file, no
    finished index) is removed: tf.data would otherwise refuse the cache. So one run at a time per prefix;
    the workers of a multi-worker run (``TF_CONFIG``) each get their own file."""
    if files.cache is None or files.cache == MEMORY:
        return None
    target = Path(f"{files.cache}-{files.fingerprint()}{_worker_suffix()}")
    if not target.with_name(target.name + ".index").exists():
        for stale in target.parent.glob(target.name + "_*"):
            stale.unlink()
    return str(target)


def _worker_suffix() -> str:
    """'-w<index>' for a worker of a multi-worker run (TF_CONFIG names its task), else ''."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except (json.JSONDecodeError, AttributeError):
        return ""
    return f"-w{int(task['index'])}" if isinstance(task, dict) and "index" in task else ""


def decoded(files: ImageFiles, seed: int, shuffle: bool) -> Any:
    """A dataset of (uint8 image (S, S, C), int64 position in ``files``), reshuffled every epoch if ``shuffle``."""
    tf = _tf()
    shape = files.shape[1:]

    def read(i: np.ndarray) -> tuple[np.ndarray, np.bool_]:
        image = files.read(int(i))
        if image is None:
            files.warn_undecodable(int(i))
            return np.zeros(shape, np.uint8), np.bool_(False)
        return image, np.bool_(True)

    def load(i: Any) -> tuple[Any, Any, Any]:
        image, ok = tf.numpy_function(read, [i], [tf.uint8, tf.bool], stateful=False)
        image.set_shape(shape)
        return image, i, ok

    n = len(files)
    target = cache_target(files)
    order = np.random.default_rng(seed).permutation(n) if shuffle and target is not None else np.arange(n)
    ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64))
    if shuffle and target is None:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).filter(lambda image, i, ok: ok)
    ds = ds.map(lambda image, i, ok: (image, i))
    if target is not None:
        ds = ds.cache(target)
        if shuffle:
            ds = ds.shuffle(min(n, SHUFFLE_WINDOW), seed=seed, reshuffle_each_iteration=True)
    return ds


def _shift_and_zoom(seed: int) -> Any:
    """The classifier's augmentation: the same layers as the in-memory pipeline
    (:func:`edgecnn.trainer.fit.make_dataset`), on float batches."""
    from edgecnn.core.keras_env import keras  # lazy: as above

    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, seed=seed, fill_mode="constant"),
            keras.layers.RandomZoom(0.1, seed=seed, fill_mode="constant"),
        ]
    )


def classify_stream(data: Any, batch: int, seed: int, augment: bool, train: bool) -> Any:
    """(float32 pixels 0..255 (B, S, S, C), int64 class ids (B,)) batches of an :class:`ImageData` on disk."""
    tf = _tf()
    labels = tf.constant(np.asarray(data.y, np.int64))
    ds = decoded(data.x, seed, train).map(lambda image, i: (image, tf.gather(labels, i)))
    ds = ds.batch(batch).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        aug = _shift_and_zoom(seed)
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _mirror(boxes: np.ndarray) -> np.ndarray:
    """[ymin, xmin, ymax, xmax] boxes mirrored left-right."""
    return np.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], axis=1).astype(np.float32)


def detect_stream(
    data: Any,
    anchors: np.ndarray,
    box_scale: Sequence[float],
    batch: int,
    seed: int,
    augment: bool,
    train: bool,
) -> Any:
    """(float32 pixels, (box targets (B, A, 5), class targets (B, A))) batches of a :class:`DetectionData` on
    disk, as :func:`edgecnn.detection.loss.make_dataset` gives for arrays: targets are assigned per image
    as it streams (after the flip, so the mirror's targets are exact), and ``augment`` adds the same
    flip and brightness/contrast jitter."""
    tf = _tf()
    from edgecnn.detection.loss import BRIGHTNESS, CONTRAST, encode_targets  # lazy: TensorFlow, as above

    num_classes, count = len(data.labels), len(anchors)

    def targets(i: np.ndarray, flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = data.boxes[int(i)].reshape(-1, 4)
        box_y, class_y = encode_targets(
            [_mirror(boxes) if flip else boxes], [data.classes[int(i)]], anchors, box_scale, num_classes
        )
        return box_y[0], class_y[0]

    def example(image: Any, i: Any, flip: Any) -> tuple[Any, tuple[Any, Any]]:
        box_y, class_y = tf.numpy_function(targets, [i, flip], [tf.float32, tf.int32], stateful=False)
        box_y.set_shape((count, 5))
        class_y.set_shape((count,))
        x = tf.cast(image, tf.float32)
        return tf.cond(flip, lambda: tf.reverse(x, axis=[1]), lambda: x), (box_y, class_y)

    def jittered(pair: tuple[Any, Any], noise: Any) -> tuple[Any, tuple[Any, Any]]:
        image, i = pair
        u = tf.random.stateless_uniform([3], seed=tf.stack([tf.constant(seed, tf.int64), noise]))
        x, y = example(image, i, u[0] < 0.5)
        mean = tf.reduce_mean(x)
        x = (x - mean) * (1.0 + CONTRAST * (2.0 * u[1] - 1.0)) + mean + BRIGHTNESS * (2.0 * u[2] - 1.0)
        return tf.clip_by_value(x, 0.0, 255.0), y

    ds = decoded(data.x, seed, train)
    if augment:
        noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, noise)).map(jittered, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda image, i: example(image, i, tf.constant(False)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)
