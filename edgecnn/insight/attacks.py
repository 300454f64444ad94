"""Adversarial examples on a Keras classifier: FGSM (Goodfellow et al., 2015) and PGD (Madry et al., 2018).

Every attack has one signature, ``attack(model, x, y, eps, steps) -> x_adv``:

- ``x``: float32 raw pixels in 0..255, (batch, H, W, C); edgecnn models normalize inside the graph, so
  the attack works in pixel units and the result is a valid input image.
- ``y``: int class ids, shape (batch,).
- ``eps``: the L-infinity budget as a fraction of the 0..1 range (``eps * 255`` pixel levels).
- ``steps``: PGD iterations (FGSM ignores it).

``x_adv`` lies within ``eps * 255`` of ``x`` and within [0, 255]. The model runs in inference mode
(``training=False``: batch norm uses its moving statistics, dropout is off), and the functions are plain
TensorFlow, so they run eagerly and inside ``tf.function`` (an adversarial ``train_step``).

The loss is sparse categorical cross-entropy on the class *logits*. edgecnn classifiers end in a
softmax; a cross-entropy on its probabilities has no gradient once a prediction saturates at 1.0 in
float32 (the well-trained case), so the logits under the softmax are used (see :func:`class_logits`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras, tf

PIXEL_MAX = 255.0
PGD_STEP_FACTOR = 2.5  # Madry et al.: step = 2.5 * eps / steps, so the walk can cross the whole ball

Attack = Callable[[Any, Any, Any, float, int], Any]


def class_logits(model: Any, x: Any) -> Any:
    """The model's pre-softmax class scores for pixels ``x``, (batch, classes).

    A Keras softmax (layer or activation) keeps its input on the output tensor as ``_keras_logits``,
    eagerly and in a graph; a graph Softmax op has it as its input. A model without a final softmax
    already outputs logits. A probability output with neither (rare: a custom normalization) falls back
    to its logarithm, the same cross-entropy with a gradient that vanishes only at saturation.
    """
    return output_logits(model, model(x, training=False))


def output_logits(model: Any, out: Any) -> Any:
    """The logits behind ``out``, an output of ``model`` (see :func:`class_logits`)."""
    if isinstance(out, (list, tuple, dict)) or len(out.shape) != 2:
        raise EdgecnnError(
            f"model {model.name!r} is not a classifier (its output is not (batch, classes)); "
            "attacks and explanations need a classification model"
        )
    logits = getattr(out, "_keras_logits", None)
    if logits is not None:
        return logits
    if not tf.executing_eagerly() and getattr(out, "op", None) is not None and out.op.type == "Softmax":
        return out.op.inputs[0]
    if _ends_in_softmax(model):
        return tf.math.log(tf.clip_by_value(out, 1e-12, 1.0))
    return out


def _ends_in_softmax(model: Any) -> bool:
    last = model.layers[-1] if getattr(model, "layers", None) else None
    if isinstance(last, keras.layers.Softmax):
        return True
    return getattr(last, "activation", None) is keras.activations.softmax


def loss_gradient(model: Any, x: Any, y: Any) -> Any:
    """d(cross-entropy)/d(pixels) at ``x``: the direction that most increases the loss of the true class."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = class_logits(model, x)
        loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    return tape.gradient(loss, x)


def project(x_adv: Any, x: Any, radius: Any) -> Any:
    """Clip ``x_adv`` into the L-infinity ball of ``radius`` pixels around ``x`` and into [0, 255]."""
    return tf.clip_by_value(tf.clip_by_value(x_adv, x - radius, x + radius), 0.0, PIXEL_MAX)


def fgsm(model: Any, x: Any, y: Any, eps: float, steps: int = 1) -> Any:
    """Fast gradient sign method: one step of ``eps * 255`` along the sign of the loss gradient."""
    x, y, radius = _prepare(x, y, eps, steps)
    x_adv = x + radius * tf.sign(loss_gradient(model, x, y))
    return tf.stop_gradient(project(x_adv, x, radius))


def pgd(model: Any, x: Any, y: Any, eps: float, steps: int = 10) -> Any:
    """Projected gradient descent: a random start in the eps ball, then ``steps`` signed-gradient steps of
    ``2.5 * eps / steps``, each projected back into the ball. The random start uses TensorFlow's seeded
    generator (``tf.random.set_seed`` makes it repeatable)."""
    x, y, radius = _prepare(x, y, eps, steps)
    step = PGD_STEP_FACTOR * radius / steps
    x_adv = project(x + tf.random.uniform(tf.shape(x), -1.0, 1.0) * radius, x, radius)
    for _ in range(steps):  # a Python loop: unrolled in a tf.function, steps is small (10-40)
        x_adv = project(x_adv + step * tf.sign(loss_gradient(model, x_adv, y)), x, radius)
    return tf.stop_gradient(x_adv)


def _prepare(x: Any, y: Any, eps: float, steps: int) -> tuple[Any, Any, Any]:
    """Validate the budget (when it is a Python number) and cast inputs: float32 pixels, int32 labels."""
    if isinstance(eps, numbers.Real) and not 0.0 <= float(eps) <= 1.0:
        raise EdgecnnError(f"--eps {eps} is outside 0..1; it is a fraction of the pixel range, e.g. 0.1")
    if isinstance(steps, numbers.Integral) and steps < 1:
        raise EdgecnnError(f"--steps {steps} must be at least 1")
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    y = tf.cast(tf.convert_to_tensor(y), tf.int32)
    radius = tf.cast(eps, tf.float32) * PIXEL_MAX
    return x, y, radius


ATTACKS: dict[str, Attack] = {"fgsm": fgsm, "pgd": pgd}


def get_attack(name: str) -> Attack:
    """The attack called ``name``; an unknown name is a user error listing the valid ones."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise EdgecnnError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}") from None


__all__ = [
    "ATTACKS",
    "PIXEL_MAX",
    "class_logits",
    "fgsm",
    "output_logits",
    "get_attack",
    "loss_gradient",
    "pgd",
    "project",
]
