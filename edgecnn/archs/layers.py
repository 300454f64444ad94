"""Custom layers shared by the families: hard-sigmoid, hard-swish and squeeze-and-excite.

They are real ``keras.layers.Layer`` subclasses (not Lambda/TFOpLambda) so that a model saves to and
reloads from ``.keras`` by name and tfmot can wrap them. Each ``call`` is made of plain TF ops the
int8 TFLite converter fuses or quantizes well: ``x * relu6(x + 3) / 6`` becomes one HARD_SWISH op,
squeeze-and-excite becomes MEAN -> CONV_2D -> CONV_2D -> (hard-)sigmoid -> MUL.

Keras does not import a custom layer's module when it loads a model, so
``edgecnn.trainer.load.load_keras`` imports this one (through the registry) before loading.
"""

from __future__ import annotations

from typing import Any

from edgecnn.archs.common import ACTIVATIONS, make_divisible
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras, tf

GATES = ("hard_sigmoid", "sigmoid")


def hard_sigmoid(x: Any) -> Any:
    """relu6(x + 3) / 6: the piecewise-linear sigmoid of MobileNet v3 (not Keras' 0.2x + 0.5)."""
    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@keras.saving.register_keras_serializable(package="edgecnn")
class HardSigmoid(keras.layers.Layer):
    """relu6(x + 3) / 6, elementwise."""

    def call(self, inputs: Any) -> Any:
        return hard_sigmoid(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="edgecnn")
class HardSwish(keras.layers.Layer):
    """x * relu6(x + 3) / 6, elementwise (Howard et al., 2019): swish without the exponential."""

    def call(self, inputs: Any) -> Any:
        return inputs * hard_sigmoid(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="edgecnn")
class SqueezeExcite(keras.layers.Layer):
    """Channel attention (Hu et al., 2018): global average -> 1x1 reduce + ReLU -> 1x1 expand -> gate -> scale.

    The reduced width is ``make_divisible(channels * ratio, divisor)`` (MobileNet v3's rule; ``divisor=1``
    gives plain rounding) unless ``reduced_filters`` fixes it, as EfficientNet does from the block's input
    width. ``gate`` is ``"hard_sigmoid"`` (MobileNet v3) or ``"sigmoid"`` (SENet, EfficientNet). The 1x1
    convolutions are named ``Conv`` and ``Conv_1`` as in keras.applications.MobileNetV3.
    """

    def __init__(
        self,
        ratio: float = 0.25,
        divisor: int = 8,
        gate: str = "hard_sigmoid",
        reduced_filters: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if gate not in GATES:
            raise ValueError(f"unknown gate {gate!r}; use one of: {', '.join(GATES)}")
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        self.ratio = ratio
        self.divisor = divisor
        self.gate = gate
        self.reduced_filters = reduced_filters

    def build(self, input_shape: Any) -> None:
        channels = int(input_shape[-1])
        reduced = self.reduced_filters or make_divisible(channels * self.ratio, self.divisor)
        self.reduce = keras.layers.Conv2D(reduced, 1, name="Conv")
        self.expand = keras.layers.Conv2D(channels, 1, name="Conv_1")
        pooled = (input_shape[0], 1, 1, channels)
        with tf.name_scope(self.reduce.name):
            self.reduce.build(pooled)
        with tf.name_scope(self.expand.name):
            self.expand.build((input_shape[0], 1, 1, reduced))
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        scale = tf.reduce_mean(inputs, axis=(1, 2), keepdims=True)
        scale = tf.nn.relu(self.reduce(scale))
        scale = self.expand(scale)
        scale = hard_sigmoid(scale) if self.gate == "hard_sigmoid" else tf.sigmoid(scale)
        return inputs * scale

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(ratio=self.ratio, divisor=self.divisor, gate=self.gate, reduced_filters=self.reduced_filters)
        return config


def activation(name: str, label: str | None = None) -> Any:
    """A Keras layer for an activation name; ReLU6 and ReLU map fully to int8 and the Edge TPU."""
    layers = keras.layers
    table = {
        "relu": lambda: layers.ReLU(name=label),
        "relu6": lambda: layers.ReLU(6.0, name=label),
        "tanh": lambda: layers.Activation("tanh", name=label),
        "swish": lambda: layers.Activation("swish", name=label),
        "hard_swish": lambda: _hard_swish(label),
        "gelu": lambda: layers.Activation("gelu", name=label),
    }
    if name not in table:
        raise EdgecnnError(f"unknown activation {name!r}; use one of: {', '.join(ACTIVATIONS)}")
    return table[name]()


def _hard_swish(label: str | None) -> Any:
    """edgecnn's HardSwish layer (tf_keras has no hard_swish activation)."""
    return HardSwish(name=label)
