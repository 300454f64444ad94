"""Training side of segmentation (TF): a cross-entropy that ignores unlabelled pixels, a soft Dice
term, and the tf.data pipeline of (image, mask) pairs.

Masks hold class ids per pixel, 0 the background and :data:`IGNORE` (255) for pixels whose label is
unknown (object borders in VOC, padding): those pixels add nothing to the loss or its gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras, tf

IGNORE = 255  # mask value of pixels without a label
DICE_SMOOTH = 1.0  # added to the Dice numerator and denominator: classes absent from a batch score 1, not 0/0


def _valid_labels(y_true: Any, y_pred: Any, ignore: int) -> tuple[Any, Any]:
    """Class ids as int32 (N, H, W) with ignored pixels set to 0, and the float mask of labelled pixels."""

    y_true = tf.cast(y_true, tf.int32)
    if y_true.shape.rank == y_pred.shape.rank:  # (N, H, W, 1), as Keras sometimes hands sparse targets
        y_true = tf.squeeze(y_true, -1)
    valid = tf.not_equal(y_true, ignore)
    return tf.where(valid, y_true, tf.zeros_like(y_true)), tf.cast(valid, y_pred.dtype)


def masked_sparse_ce(y_true: Any, y_pred: Any, ignore: int = IGNORE) -> Any:
    """Sparse categorical cross-entropy of (N, H, W, C) probabilities, averaged over the labelled pixels
    of the batch; pixels equal to ``ignore`` count for nothing. Use as ``model.compile(loss=masked_sparse_ce)``."""

    labels, valid = _valid_labels(y_true, y_pred, ignore)
    ce = keras.losses.sparse_categorical_crossentropy(labels, y_pred)  # (N, H, W)
    return tf.reduce_sum(ce * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


def soft_dice_loss(y_true: Any, y_pred: Any, ignore: int = IGNORE) -> Any:
    """1 - mean over classes of the soft Dice coefficient 2|P∩T| / (|P| + |T|) on the labelled pixels of
    the batch (Milletari et al., 2016). It weighs each class equally however few pixels it covers."""

    labels, valid = _valid_labels(y_true, y_pred, ignore)
    truth = tf.one_hot(labels, tf.shape(y_pred)[-1], dtype=y_pred.dtype) * valid[..., None]
    probs = y_pred * valid[..., None]
    axes = [0, 1, 2]
    overlap = tf.reduce_sum(probs * truth, axes)
    total = tf.reduce_sum(probs, axes) + tf.reduce_sum(truth, axes)
    dice = (2.0 * overlap + DICE_SMOOTH) / (total + DICE_SMOOTH)
    return 1.0 - tf.reduce_mean(dice)


def segmentation_loss(dice_weight: float = 0.0, ignore: int = IGNORE) -> Callable[[Any, Any], Any]:
    """``masked_sparse_ce + dice_weight * soft_dice_loss`` as one Keras loss function."""
    if dice_weight < 0:
        raise EdgecnnError(f"dice_weight must be 0 or more, got {dice_weight}")

    def loss(y_true: Any, y_pred: Any) -> Any:
        ce = masked_sparse_ce(y_true, y_pred, ignore)
        return ce + dice_weight * soft_dice_loss(y_true, y_pred, ignore) if dice_weight else ce

    loss.__name__ = f"masked_ce_dice{dice_weight:g}" if dice_weight else "masked_sparse_ce"
    return loss


def make_dataset(
    images: np.ndarray, masks: np.ndarray, batch: int, seed: int = 0, augment: bool = False, train: bool = True
) -> Any:
    """tf.data pipeline of (float32 pixels 0..255 (N, H, W, C), int32 masks (N, H, W)).

    ``train`` shuffles (reshuffled every epoch); ``augment`` flips each image and its mask together
    left-right with probability 1/2. Both are seeded, so two runs with the same seed see the same batches.
    """

    if len(images) != len(masks) or images.shape[1:3] != masks.shape[1:3]:
        raise EdgecnnError(
            f"images {images.shape} and masks {masks.shape} do not match; each image needs a mask of its size"
        )
    if batch < 1:
        raise EdgecnnError(f"batch must be 1 or more, got {batch}")
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    if train:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augment:
        coins = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, coins)).map(_flip, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def _flip(pair: tuple[Any, Any], coin: Any) -> tuple[Any, Any]:
    """Mirror image (H, W, C) and mask (H, W) left-right together when the coin is odd."""

    image, mask = pair
    flip = tf.equal(coin % 2, 1)
    return tf.cond(flip, lambda: (image[:, ::-1], mask[:, ::-1]), lambda: (image, mask))
