"""Training primitives the tasks compile and feed models with: the learning-rate schedule, the
classification loss and its tf.data pipeline, and the detector's compile (its losses are
:mod:`edgecnn.detection.loss`). The run itself is :mod:`edgecnn.pipelines.train`; where it
runs (devices, workers) is :mod:`edgecnn.trainer.distribute`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.core.keras_env import keras, tf
from edgecnn.detection.loss import detection_losses


def make_dataset(images: np.ndarray, labels: np.ndarray, batch: int, seed: int, augment: bool, train: bool) -> Any:
    """tf.data pipeline over uint8 pixels; augmentation (small shifts and zooms) stays outside the model."""

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if train:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if train and augment:
        aug = keras.Sequential(
            [
                keras.layers.RandomTranslation(0.1, 0.1, seed=seed, fill_mode="constant"),
                keras.layers.RandomZoom(0.1, seed=seed, fill_mode="constant"),
            ]
        )
        # Sequential: the random layers draw from a stateful generator, which deterministic ops (always on in
        # training) run in order anyway; a parallel map would be rewritten, with a native warning per epoch.
        ds = ds.map(lambda x, y: (aug(x, training=True), y))
    return ds.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n: int, batch: int) -> int:
    return int(np.ceil(n / batch))


def learning_rate(lr: Any, total_steps: int | None, warmup_steps: int = 0) -> Any:
    """Cosine decay of ``lr`` over ``total_steps`` (a training phase), after a linear warmup from
    ``lr / warmup_steps`` to ``lr`` over the first ``warmup_steps`` of them; ``lr`` itself when
    ``total_steps`` is None (the optimize steps fine-tune at a constant rate) or when it is already a
    schedule (``edgecnn train`` builds the schedule and hands it to the tasks' ``compile``)."""

    if total_steps is None or isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return lr
    warmup = min(max(int(warmup_steps), 0), max(total_steps - 1, 0))
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total_steps, 1))
    return keras.optimizers.schedules.CosineDecay(
        lr / warmup, decay_steps=max(total_steps - warmup, 1), warmup_target=lr, warmup_steps=warmup
    )


def compile_model(model: Any, lr: float, total_steps: int | None, num_classes: int) -> None:
    """Adam at :func:`learning_rate`; top-5 only where it means something."""

    schedule = learning_rate(lr, total_steps)
    metrics: list[Any] = ["accuracy"]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics)


def set_bn_statistics(model: Any, images: np.ndarray) -> None:
    """Give ``model``'s BatchNorm layers the statistics of ``images`` (one forward pass at momentum 0).

    An untrained or seeded model otherwise normalizes with mean 0 / variance 1 and outputs nearly the same
    thing for every input, which makes a parity check between runtimes say nothing."""
    bns = [layer for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(images.astype(np.float32), training=True)
    for bn, momentum in zip(bns, saved, strict=True):
        bn.momentum = momentum


def compile_detector(model: Any, lr: float, total_steps: int | None) -> None:
    """Adam at :func:`learning_rate` and the detection loss pair (:func:`~edgecnn.detection.loss.detection_losses`)."""

    schedule = learning_rate(lr, total_steps)
    # global_clipnorm: early focal-loss steps on a fresh head can spike; clipping keeps BN statistics sane
    optimizer = keras.optimizers.Adam(schedule, global_clipnorm=10.0)
    model.compile(optimizer=optimizer, loss=detection_losses())
