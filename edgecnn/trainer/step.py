"""The training step: gradient accumulation and adversarial examples inside ``fit``.

:func:`trainer` wraps a functional model in :class:`TrainStep`, a functional model over the *same* layers
(same variables; saving and export use the original) whose ``train_step``:

* splits the batch it receives into micro-batches of ``micro_batch`` images, computes each one's
  gradients in turn (a ``tf.while_loop``: one micro-batch's activations in memory at a time), sums them
  weighted by micro-batch size and applies them once. With ``--accumulate N`` the input pipeline delivers
  batches of N x ``--batch`` per replica, so one optimizer update sees N x ``--batch`` images, as one big
  batch would: the same update within float tolerance for models without BatchNormalization. BatchNorm
  normalizes each micro-batch with that micro-batch's own statistics (and updates its moving averages
  N times), so a BatchNorm model's update is close to, not equal to, the big batch's;
* with an attack (``--adversarial fgsm|pgd``), replaces the first half of every micro-batch with
  adversarial versions of those images, crafted against the current weights (:mod:`edgecnn.insight.attacks`);
* leaves global-norm clipping (``--clip-norm``) to the optimizer (``global_clipnorm``), which clips after
  the cross-replica sum, so the norm is that of the whole global batch's gradient;
* scales the loss for a LossScaleOptimizer (mixed_float16) and unscales the gradients before summing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecnn.core.keras_env import keras, tf

Attack = Callable[[Any, Any, Any, float, int], Any]  # attack(model, x 0..255, y ids, eps 0..1, steps) -> x_adv


class TrainStep(keras.Model):
    """A functional model with the accumulating, optionally adversarial ``train_step`` described above."""

    def __init__(
        self,
        *args: Any,
        micro_batch: int = 0,
        attack: Attack | None = None,
        eps: float = 0.0,
        attack_steps: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.micro_batch = int(micro_batch)  # 0: the whole batch at once
        self.attack = attack
        self.eps = float(eps)
        self.attack_steps = int(attack_steps)

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self.micro_batch:
            grads = self._accumulated_gradients(x, y, sample_weight)
        else:
            grads = self._gradients(x, y, sample_weight)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        return self.get_metrics_result()

    def _gradients(self, x: Any, y: Any, sample_weight: Any) -> list[Any]:
        """One micro-batch: (adversarial mix,) forward, loss and metric updates, unscaled gradients."""
        if self.attack is not None:
            x = self._mix_adversarial(x, y)
        optimizer = self.optimizer
        scaled = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
            if scaled:
                loss = optimizer.get_scaled_loss(loss)
        grads = tape.gradient(loss, self.trainable_variables)
        if scaled:
            grads = optimizer.get_unscaled_gradients(grads)
        self.compiled_metrics.update_state(y, y_pred, sample_weight)
        return [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, self.trainable_variables, strict=True)
        ]

    def _accumulated_gradients(self, x: Any, y: Any, sample_weight: Any) -> list[Any]:
        """Sum over micro-batches of (micro-batch gradient x micro-batch size / batch size): the gradient of
        the batch's mean loss. The last batch of an epoch may be short; no micro-batch is ever empty."""
        size = tf.shape(tf.nest.flatten(x)[0])[0]
        b = self.micro_batch
        count = (size + b - 1) // b

        def body(i: Any, total: list[Any]) -> tuple[Any, list[Any]]:
            start = i * b
            stop = tf.minimum(start + b, size)
            cut = lambda t: t[start:stop]  # noqa: E731
            weights = None if sample_weight is None else cut(sample_weight)
            grads = self._gradients(tf.nest.map_structure(cut, x), tf.nest.map_structure(cut, y), weights)
            weight = tf.cast(stop - start, tf.float32) / tf.cast(size, tf.float32)
            return i + 1, [t + g * tf.cast(weight, g.dtype) for t, g in zip(total, grads, strict=True)]

        zeros = [tf.zeros_like(v) for v in self.trainable_variables]
        _, total = tf.while_loop(lambda i, _: i < count, body, (tf.constant(0), zeros))
        return total

    def _mix_adversarial(self, x: Any, y: Any) -> Any:
        """The first half of the batch replaced by its adversarial versions (no gradient through the attack)."""
        half = tf.shape(x)[0] // 2
        adversarial = self.attack(self, x[:half], y[:half], self.eps, self.attack_steps)
        return tf.concat([tf.stop_gradient(tf.cast(adversarial, x.dtype)), x[half:]], axis=0)


def trainer(
    model: Any,
    micro_batch: int = 0,
    attack: Attack | None = None,
    eps: float = 0.0,
    attack_steps: int = 1,
) -> TrainStep:
    """``model``'s layers behind :class:`TrainStep` (``micro_batch`` 0: no accumulation)."""
    return TrainStep(
        inputs=model.inputs,
        outputs=model.outputs,
        name=model.name,
        micro_batch=micro_batch,
        attack=attack,
        eps=eps,
        attack_steps=attack_steps,
    )
