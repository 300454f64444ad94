"""Gradient saliency (Simonyan et al., 2014) and SmoothGrad (Smilkov et al., 2017) of a Keras classifier.

Saliency: the magnitude of the class logit's gradient with respect to each input pixel (the largest
over colour channels). SmoothGrad averages that over noisy copies of the image, which removes most of
the speckle a single gradient has.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.core.keras_env import tf
from edgecnn.insight.attacks import output_logits

SMOOTH_SAMPLES = 25  # the paper's plots flatten out by 25-50 samples
SMOOTH_SIGMA = 0.15  # noise level as a fraction of the pixel range (the paper's 10-20%)


def predicted(model: Any, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, classes) of raw 0..255 pixels."""
    return model(tf.convert_to_tensor(np.asarray(images, np.float32)), training=False).numpy()


def _gradients(model: Any, x: Any, targets: np.ndarray) -> np.ndarray:
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = output_logits(model, model(x, training=False))
        score = tf.reduce_sum(tf.gather(logits, tf.constant(targets, tf.int32), axis=1, batch_dims=1))
    return np.abs(tape.gradient(score, x).numpy()).max(axis=-1)


def _targets(model: Any, images: np.ndarray, targets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    probs = predicted(model, images)
    return (probs.argmax(-1) if targets is None else np.asarray(targets)), probs


def saliency(model: Any, images: np.ndarray, targets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """|d logit / d pixel| maps (N, H, W) and the probabilities (N, classes); ``targets`` None: predicted."""
    targets, probs = _targets(model, images, targets)
    return _gradients(model, tf.convert_to_tensor(np.asarray(images, np.float32)), targets), probs


def smoothgrad(
    model: Any,
    images: np.ndarray,
    targets: np.ndarray | None,
    samples: int = SMOOTH_SAMPLES,
    sigma: float = SMOOTH_SIGMA,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Saliency averaged over ``samples`` copies with Gaussian noise of ``sigma * 255`` (seeded)."""
    targets, probs = _targets(model, images, targets)
    rng = np.random.default_rng(seed)
    images = np.asarray(images, np.float32)
    total = np.zeros(images.shape[:3], np.float32)
    for _ in range(samples):
        noisy = np.clip(images + rng.normal(0.0, sigma * 255.0, images.shape), 0, 255).astype(np.float32)
        total += _gradients(model, tf.convert_to_tensor(noisy), targets)
    return total / samples, probs
