"""Knowledge distillation (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network").

The student learns from the hard labels and from the teacher's softened distribution:
``loss = alpha * CE(y, student) + (1 - alpha) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``.
edgecnn models end in a softmax, so the logits are recovered as ``log(p)``: softmax(log(p) / T)
equals softmax(z / T) because log(p) differs from z by a per-sample constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras, tf

EPS = 1e-7


@dataclass
class DistillConfig:
    teacher: str  # a .keras model or run folder
    temperature: float = 4.0
    alpha: float = 0.1

    def validate(self) -> None:
        if self.temperature <= 0:
            raise EdgecnnError(f"--temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise EdgecnnError(f"--alpha must be between 0 and 1, got {self.alpha}")


def check_compatible(teacher: Any, student: Any, teacher_labels: list[str] | None, student_labels: list[str]) -> None:
    t_classes, s_classes = int(teacher.output_shape[-1]), int(student.output_shape[-1])
    if t_classes != s_classes or (teacher_labels and teacher_labels != student_labels):
        raise EdgecnnError(
            f"teacher has {t_classes} classes {teacher_labels or ''} but the student has {s_classes} "
            f"{student_labels}; distill from a teacher trained on the same classes"
        )


def soft_log_probs(probs: Any, temperature: float) -> Any:
    return tf.nn.log_softmax(tf.math.log(tf.clip_by_value(probs, EPS, 1.0)) / temperature, axis=-1)


def make_distiller(student: Any, teacher: Any, config: DistillConfig) -> Any:
    """A Keras model whose fit() trains ``student`` against labels and the frozen ``teacher``."""

    class Distiller(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.student, self.teacher = student, teacher
            self.teacher.trainable = False
            self.ce = keras.losses.SparseCategoricalCrossentropy()
            self.acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
            self.loss_tracker = keras.metrics.Mean(name="loss")

        @property
        def metrics(self) -> list[Any]:
            return [self.loss_tracker, self.acc]

        def call(self, x: Any, training: bool = False) -> Any:
            return self.student(x, training=training)

        def train_step(self, data: Any) -> dict[str, Any]:
            x, y = data
            teacher_probs = self.teacher(x, training=False)
            t = config.temperature
            with tf.GradientTape() as tape:
                student_probs = self.student(x, training=True)
                hard = self.ce(y, student_probs)
                p_t = tf.exp(soft_log_probs(teacher_probs, t))
                kl = tf.reduce_mean(
                    tf.reduce_sum(p_t * (soft_log_probs(teacher_probs, t) - soft_log_probs(student_probs, t)), axis=-1)
                )
                loss = config.alpha * hard + (1.0 - config.alpha) * (t**2) * kl
            grads = tape.gradient(loss, self.student.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables, strict=True))
            self.loss_tracker.update_state(loss)
            self.acc.update_state(y, student_probs)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data: Any) -> dict[str, Any]:
            x, y = data
            probs = self.student(x, training=False)
            self.loss_tracker.update_state(self.ce(y, probs))
            self.acc.update_state(y, probs)
            return {m.name: m.result() for m in self.metrics}

    return Distiller()
