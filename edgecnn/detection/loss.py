"""Training a single-shot detector with Keras ``compile``/``fit``: the loss pair and the tf.data pipeline
(the optimizer around them is :func:`edgecnn.trainer.fit.compile_detector`).

Losses (Lin et al., 2017, "Focal Loss for Dense Object Detection"): sigmoid focal loss (alpha 0.25,
gamma 2) over every non-ignored anchor and class, and Huber (smooth L1, delta 1) over the 4 box
codes of positive anchors; each is summed and divided by the number of positive anchors in the batch
(at least 1), so the two terms have comparable scales whatever the number of anchors.

Targets travel as the ``y_true`` of the model's two outputs, so ``model.compile(loss={...})`` and
``model.fit`` work unchanged:

* ``box_encodings``: (B, A, 5) float32, the encoded box of each anchor's match in columns 0..3 and
  1.0 in column 4 at positive anchors (0.0 elsewhere): the box loss needs to know the positives and
  a Keras loss only sees its own output's ``y_true``.
* ``class_scores``: (B, A) int32, the class id at positives, -1 at background, -2 at ignored anchors
  (:data:`edgecnn.detection.targets.BACKGROUND`, :data:`~edgecnn.detection.targets.IGNORE`).

Targets are computed once in numpy (:func:`edgecnn.detection.targets.assign`), for each image and its
horizontal mirror, so the pipeline itself only picks, flips and jitters. The losses are plain
objects: a model saved after training is loaded with ``compile=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras, tf
from edgecnn.detection.targets import IGNORE, assign

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
HUBER_DELTA = 1.0
BRIGHTNESS = 32.0  # +- pixel levels of the photometric jitter
CONTRAST = 0.2  # +- relative contrast of the photometric jitter


def _logits_of(probabilities: Any) -> Any | None:
    """The logits behind a sigmoid output when Keras kept them (``_keras_logits``, or the Sigmoid op's
    input in graph mode): the focal loss is then computed from logits, stable at saturated scores."""
    logits = getattr(probabilities, "_keras_logits", None)
    if logits is not None:
        return logits
    try:
        op = probabilities.op
    except AttributeError:  # eager tensors have no op
        return None
    return op.inputs[0] if op.type == "Sigmoid" else None


def _positives(count: Any, dtype: Any) -> Any:
    return tf.maximum(tf.cast(count, dtype), 1.0)


def focal_loss(class_targets: Any, class_scores: Any, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA) -> Any:
    """(B,) per-image focal loss sums, divided by the batch's positive count: summing them gives the loss."""

    scores = class_scores
    codes = tf.cast(tf.reshape(class_targets, tf.shape(scores)[:-1]), tf.int32)
    target = tf.one_hot(codes, tf.shape(scores)[-1], dtype=scores.dtype)  # -1 and -2 give all-zero rows
    logits = _logits_of(scores)
    if logits is not None:
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    else:
        p = tf.clip_by_value(scores, 1e-7, 1.0 - 1e-7)
        ce = -(target * tf.math.log(p) + (1.0 - target) * tf.math.log(1.0 - p))
    p_t = target * scores + (1.0 - target) * (1.0 - scores)
    alpha_t = target * alpha + (1.0 - target) * (1.0 - alpha)
    loss = alpha_t * tf.pow(1.0 - p_t, gamma) * ce
    keep = tf.cast(tf.not_equal(codes, IGNORE), scores.dtype)[..., None]
    num_pos = _positives(tf.reduce_sum(tf.cast(codes >= 0, tf.int32)), scores.dtype)
    return tf.reduce_sum(loss * keep, axis=[1, 2]) / num_pos


def box_loss(box_targets: Any, box_encodings: Any, delta: float = HUBER_DELTA) -> Any:
    """(B,) per-image Huber sums over positive anchors, divided by the batch's positive count."""

    box_targets = tf.cast(box_targets, box_encodings.dtype)
    weight = box_targets[..., 4]
    error = tf.abs(box_targets[..., :4] - box_encodings)
    quadratic = tf.minimum(error, delta)
    huber = tf.reduce_sum(0.5 * quadratic**2 + delta * (error - quadratic), axis=-1)
    return tf.reduce_sum(huber * weight, axis=1) / _positives(tf.reduce_sum(weight), box_encodings.dtype)


def detection_losses() -> list[Any]:
    """``[box loss, class loss]`` for ``model.compile(loss=...)``, in the order of the detector's outputs
    (box_encodings, class_scores). A list, not a dict by output name: quantization-aware training renames
    the outputs (quant_box_encodings, ...). Keras Loss objects with SUM reduction (each per-image value is
    already divided by the batch's positive count)."""

    class _Loss(keras.losses.Loss):
        """A per-image loss function summed over the batch; Keras' own wrapper would squeeze a
        one-class (B, A, 1) prediction against (B, A) targets, this one passes both through as they are."""

        def __init__(self, fn: Any, name: str) -> None:
            super().__init__(reduction=keras.losses.Reduction.SUM, name=name)
            self.fn = fn

        def call(self, y_true: Any, y_pred: Any) -> Any:
            return self.fn(y_true, y_pred)

    return [_Loss(box_loss, "box_loss"), _Loss(focal_loss, "focal_loss")]


def _flip_boxes(boxes: np.ndarray) -> np.ndarray:
    """Mirror ``[ymin, xmin, ymax, xmax]`` boxes left-right."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.stack([b[:, 0], 1.0 - b[:, 3], b[:, 2], 1.0 - b[:, 1]], axis=1)


def encode_targets(
    boxes: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    anchors: np.ndarray,
    box_scale: Sequence[float],
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Training targets of every image: box y_true (N, A, 5) float32 and class y_true (N, A) int32."""
    box_y = np.zeros((len(boxes), len(anchors), 5), np.float32)
    class_y = np.zeros((len(boxes), len(anchors)), np.int32)
    for i, (b, c) in enumerate(zip(boxes, classes, strict=True)):
        box_targets, class_targets = assign(anchors, b, c, num_classes, box_scale=box_scale)
        box_y[i, :, :4] = box_targets
        box_y[i, :, 4] = class_targets >= 0
        class_y[i] = class_targets
    return box_y, class_y


def make_dataset(
    images: np.ndarray,
    boxes: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    anchors: np.ndarray,
    box_scale: Sequence[float],
    num_classes: int,
    batch: int,
    seed: int,
    augment: bool,
    shuffle: bool = True,
) -> Any:
    """A tf.data pipeline of (float32 pixels 0..255, (box targets (B, A, 5), class targets (B, A))): the
    targets in the order of the detector's outputs (box_encodings, class_scores).

    ``augment``: random horizontal flip (with the mirror's precomputed targets) and brightness/contrast
    jitter (targets unchanged), from a stream seeded by ``seed`` that changes every epoch.
    ``shuffle``: reshuffle each epoch (seeded); off for validation.
    """

    if len(images) != len(boxes) or len(images) != len(classes):
        raise EdgecnnError(
            f"{len(images)} images, {len(boxes)} box lists and {len(classes)} class lists; give one of each per image"
        )
    if len(images) == 0:
        raise EdgecnnError("no detection images to train on; check the dataset path")
    box_y, class_y = encode_targets(boxes, classes, anchors, box_scale, num_classes)
    columns: tuple[np.ndarray, ...] = (images, box_y, class_y)
    if augment:
        flip_box_y, flip_class_y = encode_targets(
            [_flip_boxes(b) for b in boxes], classes, anchors, box_scale, num_classes
        )
        columns = (*columns, flip_box_y, flip_class_y)
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augment:
        noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, noise)).map(_augmenter(seed), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(_as_example, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def _as_example(image: Any, box_y: Any, class_y: Any) -> tuple[Any, tuple[Any, Any]]:
    return tf.cast(image, tf.float32), (box_y, class_y)


def _augmenter(seed: int) -> Any:
    """The map function of an augmented pipeline: ((image, targets, mirror targets), random int64) -> example."""

    def augment(columns: tuple[Any, ...], noise: Any) -> tuple[Any, tuple[Any, Any]]:
        image, box_y, class_y, flip_box_y, flip_class_y = columns
        u = tf.random.stateless_uniform([3], seed=tf.stack([tf.constant(seed, tf.int64), noise]))
        flip = u[0] < 0.5
        x = tf.cast(image, tf.float32)
        x = tf.cond(flip, lambda: tf.reverse(x, axis=[1]), lambda: x)
        mean = tf.reduce_mean(x)
        x = (x - mean) * (1.0 + CONTRAST * (2.0 * u[1] - 1.0)) + mean + BRIGHTNESS * (2.0 * u[2] - 1.0)
        x = tf.clip_by_value(x, 0.0, 255.0)
        box_y = tf.where(flip, flip_box_y, box_y)
        class_y = tf.where(flip, flip_class_y, class_y)
        return x, (box_y, class_y)

    return augment
