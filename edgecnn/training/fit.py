"""Training primitives the tasks compile and feed models with: the distribution strategy, the learning-rate
schedule, the classification loss and its tf.data pipeline. The run itself is :mod:`edgecnn.pipelines.train`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.keras_env import keras, tf


def strategy() -> Any:
    """MirroredStrategy across all GPUs when there are several; the default strategy otherwise."""

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


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
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n: int, batch: int) -> int:
    return int(np.ceil(n / batch))


def learning_rate(lr: float, total_steps: int | None) -> Any:
    """Cosine decay of ``lr`` over ``total_steps`` (a training phase), or ``lr`` itself when None
    (the optimize steps fine-tune at a constant rate)."""

    return lr if total_steps is None else keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total_steps, 1))


def compile_model(model: Any, lr: float, total_steps: int | None, num_classes: int) -> None:
    """Adam at :func:`learning_rate`; top-5 only where it means something."""

    schedule = learning_rate(lr, total_steps)
    metrics: list[Any] = ["accuracy"]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics)
