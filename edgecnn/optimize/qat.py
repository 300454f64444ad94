"""Quantization-aware training (QAT; Jacob et al., 2018) for any edgecnn model, with tfmot.

``tfmot.quantization.keras.quantize_model`` knows only the layers of its default 8-bit registry and
fails on the rest, so it fails on every edgecnn model (on the in-graph ``Rescaling`` first). Here each
layer class is looked up in :data:`LAYER_RULES`, a table from Keras class name to what QAT does:

* ``tfmot``: the default 8-bit registry quantizes it (or a tfmot graph transform does: Conv/Dense+BN
  folding, separable convolutions);
* ``quantize output``: :class:`OutputQuantizeConfig`, one fake-quant on the layer's output: right for
  layers that become one TFLite op with no weights of their own to train (HARD_SWISH, the MUL+ADD of
  a normalization, RESIZE, MUL...), whose int8 kernel needs exactly that range;
* ``decompose``: ``SqueezeExcite`` is rewritten as the standard layers it computes (pool -> 1x1 conv +
  ReLU -> 1x1 conv -> gate -> multiply), so each tensor TFLite materializes gets its fake-quant and
  both kernels are quantized per channel by tfmot (one wrapper around both kernels would name their
  ranges alike and the model would not save);
* ``keep float``: no fake-quant (identity-at-inference layers; TF ops tfmot cannot wrap), the int8
  converter calibrates what is left on the representative images;
* ``flatten``: a nested functional/sequential model (a keras.applications backbone inside a
  classifier) is inlined into the outer graph, since tfmot refuses a model inside a model.

:func:`plan_qat` lists, before any training, each layer tfmot does not support natively and what
happens to it; :func:`quantize_model` rewrites (flatten, decompose), annotates, applies one of four
schemes (QAT, or PQAT/CQAT/PCQAT, which keep the sparsity and clusters of earlier steps) and, given
images, starts every activation range from calibration (:func:`calibrate_ranges`).

After fine-tuning, the int8 row of the one export path (:func:`edgecnn.convert.export.export`) gives the
integer model: the converter takes the trained fake-quant ranges and calibrates the few tensors
that have none.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from edgecnn.archs import layers as edgecnn_layers
from edgecnn.archs.convnext import layer_scale_class
from edgecnn.archs.layers import HardSigmoid
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import keras, tf, tfmot
from edgecnn.optimize.common import is_quantization_aware

# ------------------------------------------------------------------------------------ actions
TFMOT = "tfmot"
QUANTIZE_OUTPUT = "quantize output"
DECOMPOSE = "decompose"
KEEP_FLOAT = "keep float"
FLATTEN = "flatten"


@dataclass(frozen=True)
class Rule:
    action: str
    config: str | None  # name of our QuantizeConfig class; None: tfmot's registry decides (or nothing to wrap)
    reason: str


def _native(reason: str) -> Rule:
    return Rule(TFMOT, None, reason)


def _output(reason: str) -> Rule:
    return Rule(QUANTIZE_OUTPUT, "OutputQuantizeConfig", reason)


def _float(reason: str) -> Rule:
    return Rule(KEEP_FLOAT, "FloatQuantizeConfig", reason)


# Keras layer class name -> what QAT does with it. The classes tfmot's default 8-bit registry handles
# are listed too, so the table says what happens to every layer edgecnn builds; a class missing here
# goes to tfmot's registry if it supports it, else UNKNOWN_RULE.
LAYER_RULES: dict[str, Rule] = {
    # tfmot's default 8-bit registry and layout transforms
    "InputLayer": _native("tfmot adds a quantize layer after the input"),
    "Conv2D": _native("per-channel kernel + activation"),
    "DepthwiseConv2D": _native("per-channel kernel + activation"),
    "Conv2DTranspose": _native("kernel + activation"),
    "SeparableConv2D": _native("split into depthwise + 1x1 conv by a tfmot transform"),
    "Dense": _native("kernel + activation"),
    "ReLU": _native("output (fused into the preceding conv/add)"),
    "LeakyReLU": _native("output"),
    "Softmax": _native("fixed output range"),
    "Add": _native("output"),
    "Concatenate": _native("output, shared by its inputs"),
    "AveragePooling2D": _native("output"),
    "GlobalAveragePooling2D": _native("output"),
    "MaxPooling2D": _native("same scale as its input"),
    "GlobalMaxPooling2D": _native("same scale as its input"),
    "UpSampling2D": _native("output"),
    "ZeroPadding2D": _native("same scale as its input"),
    "Cropping2D": _native("same scale as its input"),
    "Flatten": _native("same scale as its input"),
    "Reshape": _native("same scale as its input"),
    "Permute": _native("same scale as its input"),
    "Dropout": _native("identity at inference"),
    "SpatialDropout2D": _native("identity at inference"),
    # tfmot folds a BatchNormalization into a directly preceding linear Conv2D/DepthwiseConv2D/Dense
    # (see _rule_for); any other (pre-activation, after pooling) is a per-channel MUL+ADD in TFLite.
    "BatchNormalization": _output("not after a linear conv/dense, so not folded: a per-channel MUL+ADD"),
    # edgecnn's layers and the Keras layers tfmot's registry lacks
    "Rescaling": _output("in-graph normalization (MUL+ADD)"),
    "Normalization": _output("in-graph normalization (SUB+MUL)"),
    "HardSwish": _output("one HARD_SWISH op"),
    "HardSigmoid": _output("ADD+RELU6+MUL on a fixed range"),
    "SqueezeExcite": Rule(
        DECOMPOSE,
        None,
        "rewritten as pool -> 1x1 conv+ReLU -> 1x1 conv -> gate -> multiply: tfmot quantizes both kernels "
        "per channel, every intermediate tensor gets its range",
    ),
    "LayerScale": _output("per-channel MUL by a learned vector"),
    "LayerNormalization": _output("MEAN/SQUARED_DIFFERENCE/RSQRT chain; the converter calibrates its insides"),
    "Resizing": _output("one RESIZE op"),
    "Multiply": _output("elementwise MUL"),
    "Subtract": _output("elementwise SUB"),
    "Maximum": _output("elementwise MAXIMUM"),
    "Minimum": _output("elementwise MINIMUM"),
    "Average": _output("elementwise mean"),
    "PReLU": _output("PRELU op"),
    "ELU": _output("ELU op"),
    "Activation": _output("an activation tfmot lacks"),
    "Lambda": _output("an arbitrary function"),
    # TF ops on Keras tensors (x + 3.0, tf.nn.relu6(x)): tfmot's wrapper cannot give them an output
    # quantizer (no static output shape without their call arguments), so they train in float and the
    # int8 converter calibrates their range on the representative images.
    "TFOpLambda": _float("a TF op on a Keras tensor: the converter calibrates its range"),
    "SlicingOpLambda": _float("a tensor slice: same scale as its input"),
    "GaussianNoise": _float("identity at inference"),
    "GaussianDropout": _float("identity at inference"),
    "AlphaDropout": _float("identity at inference"),
    "RandomFlip": _float("augmentation, identity at inference"),
    "RandomRotation": _float("augmentation, identity at inference"),
    "RandomZoom": _float("augmentation, identity at inference"),
    "RandomTranslation": _float("augmentation, identity at inference"),
    "RandomContrast": _float("augmentation, identity at inference"),
    "RandomBrightness": _float("augmentation, identity at inference"),
    "Functional": Rule(FLATTEN, None, "nested model: its layers are inlined into the outer graph"),
    "Sequential": Rule(FLATTEN, None, "nested model: its layers are inlined into the outer graph"),
}

# Activation(name) that tfmot's Default8BitActivationQuantizeConfig handles; others: LAYER_RULES["Activation"].
TFMOT_ACTIVATIONS = frozenset({"relu", "relu6", "swish", "gelu", "linear", "softmax", "sigmoid", "tanh"})

# A BatchNormalization right after one of these (linear activation, no other consumer) is folded by tfmot.
BN_FOLD_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")
BN_FOLDED = _native("folded into the preceding conv/dense by tfmot")

UNKNOWN_RULE = _output("not in tfmot's registry nor edgecnn's table: only its output is quantized")

# name -> (what it is, factory(tfmot module) -> QuantizeScheme)
SCHEMES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "default": ("QAT", lambda tfmot: tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()),
    "prune_preserve": ("PQAT", lambda tfmot: tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()),
    "cluster_preserve": ("CQAT", lambda tfmot: tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme()),
    "cluster_prune_preserve": (
        "PCQAT",
        lambda tfmot: tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
    ),
}


@dataclass(frozen=True)
class LayerPlan:
    name: str  # as in the model quantize_model builds (an inlined layer keeps its name unless taken)
    class_name: str
    action: str
    reason: str


# ------------------------------------------------------------------------------ quantize configs
@functools.cache
def config_classes() -> dict[str, type]:
    """Our QuantizeConfig classes, built on first use (tfmot imports only after keras_env)."""

    quantizers = tfmot.quantization.keras.quantizers

    def activation_quantizer() -> Any:  # tfmot's default 8-bit activation quantizer
        return quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)

    class _Base(tfmot.quantization.keras.QuantizeConfig):
        def get_weights_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def get_activations_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def set_quantize_weights(self, layer: Any, quantize_weights: list[Any]) -> None:
            pass

        def set_quantize_activations(self, layer: Any, quantize_activations: list[Any]) -> None:
            pass

        def get_output_quantizers(self, layer: Any) -> list[Any]:
            return []

        def get_config(self) -> dict[str, Any]:
            return {}

    @keras.saving.register_keras_serializable(package="edgecnn")
    class OutputQuantizeConfig(_Base):
        """Fake-quantize the layer's output only (8-bit asymmetric moving-average range)."""

        def get_output_quantizers(self, layer: Any) -> list[Any]:
            return [activation_quantizer()]

    @keras.saving.register_keras_serializable(package="edgecnn")
    class FloatQuantizeConfig(_Base):
        """No fake-quant at all (identity-at-inference layers)."""

    from tensorflow_model_optimization.python.core.quantization.keras.quantize_annotate import QuantizeAnnotate

    @keras.saving.register_keras_serializable(package="edgecnn")
    class StructuredQuantizeAnnotate(QuantizeAnnotate):
        """QuantizeAnnotate for layers that keep their call's input structure in the model config
        (TFOpLambda: ``x + 3.0`` is saved as ``add(x, y=3.0)``, not ``add([x], y=3.0)``). tfmot's plain
        wrapper would serialize ``[x]`` and, once it unwraps the layer, call the op on a list."""

        def __init__(self, layer: Any, quantize_config: Any = None, **kwargs: Any) -> None:
            super().__init__(layer, quantize_config, **kwargs)
            self._preserve_input_structure_in_config = True

    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import (
        QuantizeLayer as TfmotQuantizeLayer,
    )

    class QuantizeLayer(TfmotQuantizeLayer):
        """tfmot's input QuantizeLayer, marked built once built: tfmot's ``build`` never calls
        ``Layer.build``, so loading a .keras file built it twice and failed ("expected 5 variables,
        but received 3"). Used only to deserialize (``qat_scope`` maps the name to it)."""

        def build(self, input_shape: Any) -> None:
            super().build(input_shape)
            self.built = True

    return {
        "QuantizeLayer": QuantizeLayer,
        "StructuredQuantizeAnnotate": StructuredQuantizeAnnotate,
        "OutputQuantizeConfig": OutputQuantizeConfig,
        "FloatQuantizeConfig": FloatQuantizeConfig,
    }


def custom_objects() -> dict[str, Any]:
    """Everything a saved QAT edgecnn model needs to deserialize, under both plain and registered names."""

    objects: dict[str, Any] = {}
    classes = [
        *config_classes().values(),
        edgecnn_layers.HardSigmoid,
        edgecnn_layers.HardSwish,
        edgecnn_layers.SqueezeExcite,
        layer_scale_class(),
    ]
    for cls in classes:
        objects[cls.__name__] = cls
        objects[keras.saving.get_registered_name(cls)] = cls
    return objects  # "QuantizeLayer" is ours: it overrides tfmot's in quantize_scope


@contextlib.contextmanager
def qat_scope() -> Iterator[None]:
    """``tfmot.quantization.keras.quantize_scope`` plus edgecnn's layers and quantize configs."""

    # ours inside tfmot's: quantize_scope(extra) lets tfmot's names win, and our QuantizeLayer must not lose
    with tfmot.quantization.keras.quantize_scope(), keras.utils.custom_object_scope(custom_objects()):
        yield


# ------------------------------------------------------------------------------------ rewriting
@dataclass
class _Piece:
    """One standard layer of a decomposed layer: its inputs are "<in>" (the decomposed layer's input)
    or the suffix of an earlier piece; the last piece gives the output."""

    suffix: str
    layer: Any
    inputs: list[str]
    weights: list[Any] = field(default_factory=list)


def _decompose_squeeze_excite(se: Any, name_for: Callable[[str], str]) -> list[_Piece]:
    layers = keras.layers
    gate = (
        HardSigmoid(name=name_for("gate"))
        if se.gate == "hard_sigmoid"
        else layers.Activation("sigmoid", name=name_for("gate"))
    )
    return [
        _Piece("squeeze", layers.GlobalAveragePooling2D(keepdims=True, name=name_for("squeeze")), ["<in>"]),
        _Piece(
            "Conv",
            layers.Conv2D(se.reduce.filters, 1, activation="relu", name=name_for("Conv")),
            ["squeeze"],
            se.reduce.get_weights(),
        ),
        _Piece(
            "Conv_1", layers.Conv2D(se.expand.filters, 1, name=name_for("Conv_1")), ["Conv"], se.expand.get_weights()
        ),
        _Piece("gate", gate, ["Conv_1"]),
        _Piece("excite", layers.Multiply(name=name_for("excite")), ["<in>", "gate"]),
    ]


# class name -> function(layer, name_for(suffix) -> unique layer name) -> the standard layers it computes
DECOMPOSERS: dict[str, Callable[[Any, Callable[[str], str]], list[_Piece]]] = {
    "SqueezeExcite": _decompose_squeeze_excite,
}


@dataclass
class _Rewritten:
    config: dict[str, Any]
    weights: dict[str, list[Any]]  # layer name -> weights to set after from_config
    groups: dict[str, list[LayerPlan]]  # first layer of a flattened/decomposed group -> its plan entries
    generated: set[str]  # layers made by decomposition: planned through their group's entry


def _is_ref(data: Any) -> bool:
    """A serialized tensor reference: [layer_name, node_index, tensor_index(, kwargs)]."""
    return (
        isinstance(data, list)
        and len(data) in (3, 4)
        and isinstance(data[0], str)
        and isinstance(data[1], int)
        and isinstance(data[2], int)
        and (len(data) == 3 or isinstance(data[3], dict))
    )


def _remap(data: Any, fix: Callable[[list[Any]], list[Any] | None]) -> Any:
    """Rewrite every tensor reference in node data, in first arguments and kwargs alike."""
    if _is_ref(data):
        new = fix(data) or list(data)
        return [*new[:3], _remap(new[3], fix)] if len(new) == 4 else new
    if isinstance(data, list):
        return [_remap(item, fix) for item in data]
    if isinstance(data, dict):
        return {key: _remap(value, fix) for key, value in data.items()}
    return data


def _refs(data: Any) -> list[list[Any]]:
    """The tensor references of a node's call, in order."""
    if _is_ref(data):
        return [data]
    if isinstance(data, list):
        return [ref for item in data for ref in _refs(item)]
    if isinstance(data, dict):
        return [ref for item in data.values() for ref in _refs(item)]
    return []


def _as_functional(model: Any) -> Any:
    if isinstance(model, keras.Sequential):
        if not model._is_graph_network:  # noqa: SLF001
            raise EdgecnnError(
                f"cannot quantize the Sequential model {model.name!r}: it has no Input; build it with keras.Input first"
            )
        return keras.Model(model.inputs, model.outputs, name=model.name)
    if not getattr(model, "_is_graph_network", False):
        raise EdgecnnError(
            f"cannot quantize the subclassed model {model.name!r}: QAT needs a functional or Sequential model"
        )
    return model


def _unique(name: str, used: set[str]) -> str:
    new, i = name, 1
    while new in used:
        new, i = f"{name}_{i}", i + 1
    used.add(new)
    return new


def _rewrite(model: Any) -> _Rewritten:
    """``model``'s config with nested models inlined and DECOMPOSERS layers replaced, recursively."""

    model = _as_functional(model)
    config = copy.deepcopy(model.get_config())
    by_name = {layer.name: layer for layer in model.layers}
    used = {lc["name"] for lc in config["layers"]}
    out = _Rewritten(config, {}, {}, set())
    layers: list[dict[str, Any]] = []
    outputs_of: dict[str, list[list[Any]]] = {}  # replaced layer -> references to what replaces its outputs

    for lc in config["layers"]:
        layer = by_name[lc["name"]]
        cls = type(layer).__name__
        if isinstance(layer, keras.Model):
            _inline(layer, lc, used, layers, out, outputs_of)
        elif cls in DECOMPOSERS:
            (call,) = lc["inbound_nodes"] if len(lc["inbound_nodes"]) == 1 else (None,)
            if call is None:
                raise EdgecnnError(f"cannot quantize: layer {layer.name!r} ({cls}) is called more than once")
            source = [*_refs(call)[0][:3], {}]
            pieces = DECOMPOSERS[cls](layer, lambda suffix, base=layer.name: _unique(f"{base}/{suffix}", used))
            names = {p.suffix: p.layer.name for p in pieces}
            for piece in pieces:
                piece_config = keras.layers.serialize(piece.layer)
                refs = [source if i == "<in>" else [names[i], 0, 0, {}] for i in piece.inputs]
                layers.append({**piece_config, "name": piece.layer.name, "inbound_nodes": [refs]})
                out.weights[piece.layer.name] = piece.weights
                out.generated.add(piece.layer.name)
            out.groups.setdefault(pieces[0].layer.name, []).append(
                LayerPlan(layer.name, cls, DECOMPOSE, LAYER_RULES[cls].reason)
            )
            outputs_of[layer.name] = [[pieces[-1].layer.name, 0, 0]]
        else:
            layers.append(lc)
            out.weights[lc["name"]] = layer.get_weights()

    def outer_fix(ref: list[Any]) -> Any:
        return outputs_of[ref[0]][ref[2]][:3] + ref[3:] if ref[0] in outputs_of else None

    for lc in layers:
        lc["inbound_nodes"] = _remap(lc["inbound_nodes"], outer_fix)
    config["output_layers"] = _remap(config["output_layers"], outer_fix)
    config["layers"] = layers
    return out


def _inline(
    nested: Any,
    lc: dict[str, Any],
    used: set[str],
    layers: list[dict[str, Any]],
    out: _Rewritten,
    outputs_of: dict[str, list[list[Any]]],
) -> None:
    """Append the (rewritten) layers of ``nested`` to ``layers``, wired to the outer tensors it was called on."""
    if len(lc["inbound_nodes"]) != 1:
        raise EdgecnnError(
            f"cannot quantize: the nested model {nested.name!r} is called {len(lc['inbound_nodes'])} times; "
            "QAT inlines nested models and needs each used once"
        )
    inner = _rewrite(nested)
    call = _refs(lc["inbound_nodes"][0])
    # Called with training=False (the transfer-learning idiom): keep its BatchNormalization in inference
    # mode, which in Keras 2 a non-trainable BN is; the call's own training flag cannot survive inlining.
    frozen_bn = any(len(ref) == 4 and ref[3].get("training") is False for ref in call)
    inputs = {ref[0]: list(outer[:3]) for ref, outer in zip(inner.config["input_layers"], call, strict=True)}
    rename = {
        ilc["name"]: _unique(ilc["name"] if ilc["name"] not in used else f"{nested.name}/{ilc['name']}", used)
        for ilc in inner.config["layers"]
        if ilc["class_name"] != "InputLayer"
    }

    def fix(ref: list[Any]) -> Any:
        if ref[0] in inputs:
            return inputs[ref[0]] + ref[3:]
        return [rename[ref[0]], *ref[1:]] if ref[0] in rename else None

    for ilc in inner.config["layers"]:
        if ilc["class_name"] == "InputLayer":
            continue
        ilc["name"] = ilc["config"]["name"] = rename[ilc["name"]]
        ilc["inbound_nodes"] = _remap(ilc["inbound_nodes"], fix)
        if frozen_bn and ilc["class_name"] == "BatchNormalization":
            ilc["config"]["trainable"] = False
        layers.append(ilc)
    out.weights.update({rename[name]: w for name, w in inner.weights.items() if name in rename})
    out.generated.update(rename[name] for name in inner.generated)
    note = " (called with training=False: its BatchNormalization layers stay in inference mode)" if frozen_bn else ""
    entry = LayerPlan(nested.name, type(nested).__name__, FLATTEN, LAYER_RULES["Functional"].reason + note)
    first = next(iter(rename.values()), None)
    if first is not None:
        out.groups.setdefault(first, []).append(entry)
    for name, entries in inner.groups.items():
        out.groups.setdefault(rename[name], []).extend(entries)
    outputs_of[nested.name] = [_remap(list(ref), fix) for ref in inner.config["output_layers"]]


def _already_flat(model: Any) -> bool:
    """A functional model with no nested model, nothing to decompose, and each layer called once
    (tfmot's Conv+BN folding counts a layer's consumers, so a layer shared with another model is not)."""

    if not getattr(model, "_is_graph_network", False) or isinstance(model, keras.Sequential):
        return False
    members = {id(layer) for layer in model.layers}
    return all(
        not isinstance(layer, keras.Model)
        and type(layer).__name__ not in DECOMPOSERS
        and len(layer._inbound_nodes) == 1  # noqa: SLF001
        and all(id(node.outbound_layer) in members for node in layer._outbound_nodes)  # noqa: SLF001
        for layer in model.layers
    )


@dataclass
class Prepared:
    """The model quantize_model annotates: flat, decomposed, freshly built (weights copied)."""

    model: Any
    groups: dict[str, list[LayerPlan]]
    generated: set[str]


def prepare(model: Any) -> Prepared:
    """``model`` rebuilt from its config with nested models inlined and DECOMPOSERS layers replaced
    (weights copied); ``model`` itself when there is nothing to rewrite."""

    if _already_flat(model):
        return Prepared(model, {}, set())
    rewritten = _rewrite(model)
    with qat_scope():
        flat = keras.Model.from_config(rewritten.config)
    for layer in flat.layers:
        weights = rewritten.weights.get(layer.name)
        if weights:
            layer.set_weights(weights)
    return Prepared(flat, rewritten.groups, rewritten.generated)


# ------------------------------------------------------------------------------------ planning
def _activation_name(layer: Any) -> str:
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", type(fn).__name__)


def _inbound_layers(layer: Any) -> list[Any]:
    """The layers feeding ``layer``'s only call (empty if it is called more than once)."""

    nodes = layer._inbound_nodes  # noqa: SLF001
    return tf.nest.flatten(nodes[0].inbound_layers) if len(nodes) == 1 else []


def _bn_folds(layer: Any) -> bool:
    """Whether tfmot's Conv/Dense+BN transforms fold this BatchNormalization into its input layer."""
    parents = _inbound_layers(layer)
    if len(parents) != 1:
        return False
    parent = parents[0]
    return (
        type(parent).__name__ in BN_FOLD_INTO
        and _activation_name(parent) == "linear"
        and len(parent._outbound_nodes) == 1  # noqa: SLF001
        and len(parent._inbound_nodes) == 1  # noqa: SLF001
    )


def _rule_for(layer: Any, registry: Any) -> Rule:
    cls = type(layer).__name__
    if cls == "Activation" and _activation_name(layer) in TFMOT_ACTIVATIONS:
        return _native(f"activation {_activation_name(layer)}")
    if cls == "BatchNormalization" and _bn_folds(layer):
        return BN_FOLDED
    if cls in LAYER_RULES:
        return LAYER_RULES[cls]
    if registry.supports(layer):
        return _native("in tfmot's default 8-bit registry")
    return UNKNOWN_RULE


def _registry() -> Any:
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()


def _describe(layer: Any, rule: Rule) -> str:
    """The rule's reason, naming the op of a TFOpLambda and the function of an Activation."""
    cls = type(layer).__name__
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        return f"{rule.reason} ({getattr(layer, 'symbol', layer.name)})"
    if cls == "Activation":
        return f"{rule.reason} ({_activation_name(layer)})"
    return rule.reason


def _plan(prepared: Prepared, registry: Any) -> list[LayerPlan]:
    plan: list[LayerPlan] = []
    for layer in prepared.model.layers:
        plan.extend(prepared.groups.get(layer.name, []))
        if layer.name in prepared.generated:
            continue
        rule = _rule_for(layer, registry)
        if rule.action != TFMOT:
            plan.append(LayerPlan(layer.name, type(layer).__name__, rule.action, _describe(layer, rule)))
    return plan


def plan_qat(model: Any) -> list[LayerPlan]:
    """Each layer tfmot does not support natively, in graph order, and what QAT will do with it.

    A nested model is listed (``flatten``) before its own such layers, which carry the names they get
    in the flattened model; a decomposed layer is listed once (``decompose``)."""
    return _plan(prepare(model), _registry())


def format_plan(plan: list[LayerPlan]) -> str:
    if not plan:
        return "QAT plan: tfmot supports every layer natively"
    counts: dict[str, int] = {}
    for p in plan:
        counts[p.action] = counts.get(p.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in counts.items())
    width = max(len(p.name) for p in plan)
    cls_width = max(len(p.class_name) for p in plan)
    lines = [f"QAT plan: {len(plan)} layers tfmot does not support natively ({summary})"]
    lines += [f"  {p.name:{width}s}  {p.class_name:{cls_width}s}  {p.action}: {p.reason}" for p in plan]
    return "\n".join(lines)


# --------------------------------------------------------------------------------- quantization
def get_scheme(name: str) -> Any:
    if name not in SCHEMES:
        raise EdgecnnError(f"unknown QAT scheme {name!r}; use one of: {', '.join(SCHEMES)}")
    return SCHEMES[name][1](tfmot)


def annotate(model: Any) -> Any:
    """A copy of a prepared (flat) model with every layer in a QuantizeAnnotate, our config where needed."""

    registry = _registry()
    configs = config_classes()
    rules = {layer.name: _rule_for(layer, registry) for layer in model.layers}

    def wrap(layer: Any) -> Any:
        rule = rules[layer.name]
        config = configs[rule.config]() if rule.config else None
        if layer._preserve_input_structure_in_config:  # noqa: SLF001
            return configs["StructuredQuantizeAnnotate"](layer, quantize_config=config)
        return tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config=config)

    with qat_scope():
        return keras.models.clone_model(model, clone_function=wrap)


def quantize_model(model: Any, scheme: str = "default", calibration: Any = None) -> Any:
    """The quantization-aware copy of ``model`` (weights kept), ready to compile and fine-tune.

    ``scheme``: ``default`` (QAT), ``prune_preserve`` (PQAT: keeps pruned zeros), ``cluster_preserve``
    (CQAT: keeps weight clusters) or ``cluster_prune_preserve`` (PCQAT: both). ``calibration``: uint8
    images (N, H, W, C) to start the activation ranges from (see :func:`calibrate_ranges`); without
    them every range starts at tfmot's [-6, 6] and moves by 0.1% a step."""
    quantize_scheme = get_scheme(scheme)
    if is_quantization_aware(model):
        raise EdgecnnError(
            f"model {model.name!r} is already quantization-aware (it has QuantizeWrapper layers); "
            "fine-tune it as it is or start again from the float model"
        )
    annotated = annotate(prepare(model).model)
    with qat_scope():
        qat_model = tfmot.quantization.keras.quantize_apply(annotated, quantize_scheme)
    for layer in qat_model.layers:
        _untangle_wrapper_weights(layer)
    if calibration is not None:
        calibrate_ranges(qat_model, calibration)
    return qat_model


def _untangle_wrapper_weights(layer: Any) -> None:
    """Make a fresh QuantizeWrapper's own weight lists what loading one rebuilds, so .keras files reload.

    quantize_apply wraps already-built layers, and the wrapper's own ``_trainable_weights`` then also
    holds the wrapped layer's variables ([kernel, bias, kernel] for a Dense: the layer's, then the
    kernel the wrapper trains); a wrapper rebuilt from a file holds only [kernel], so .keras loading
    failed with "expected 6 variables, but received 8". The wrapped layer's variables stay trained
    through the wrapper's ``trainable_weights`` (the layer's plus its own)."""
    if not hasattr(layer, "_weight_vars"):
        return
    quantized = [id(weight) for weight, _, _ in layer._weight_vars]  # noqa: SLF001
    inner = {id(v) for v in layer.layer.weights} | set(quantized)
    for attr in ("_trainable_weights", "_non_trainable_weights"):
        weights = getattr(layer, attr)
        kept = [
            v
            for i, v in enumerate(weights)
            if id(v) not in inner or (id(v) in quantized and all(id(w) != id(v) for w in weights[i + 1 :]))
        ]
        weights[:] = kept


# ------------------------------------------------------------------------------ range calibration
# The narrowest calibrated range. Untrained deep nets (EfficientNet-Lite at initialization) have
# activations that vanish to 1e-6 and below; ranges that narrow next to wider ones made the TFLite
# calibrator abort the process (a kernel's CHECK on its rescaling multiplier). Trained nets are far
# above it.
MIN_RANGE = 1e-3


class _RangeRecorder:
    """Stands in for an activation quantizer: passes values through, records their min and max."""

    def __init__(self, ranges: dict[int, list[Any]]) -> None:
        self.ranges = ranges

    def __call__(self, inputs: Any, training: Any, weights: dict[str, Any], **kwargs: Any) -> Any:
        lo, hi = float(tf.reduce_min(inputs)), float(tf.reduce_max(inputs))
        entry = self.ranges.setdefault(id(weights["min_var"]), [weights, lo, hi])
        entry[1], entry[2] = min(entry[1], lo), max(entry[2], hi)
        return inputs


def _activation_slots(model: Any) -> list[tuple[Any, str | int]]:
    """(owner, attribute or list index) of every activation quantizer of a QAT model."""
    slots: list[tuple[Any, str | int]] = []
    for layer in model.layers:
        if type(layer).__name__ == "QuantizeLayer" and layer.quantizer is not None:
            slots.append((layer, "quantizer"))
        for activation in getattr(layer, "_quantize_activations", []):
            slots.append((activation, "quantizer"))
        slots.extend((layer._output_quantizers, i) for i in range(len(getattr(layer, "_output_quantizers", []))))
    return slots


def calibrate_ranges(qat_model: Any, images: Any, batch_size: int = 32) -> int:
    """Set every activation fake-quant range of ``qat_model`` to the min/max its inputs take on
    ``images`` (inference mode), as post-training calibration would; returns how many it set.

    tfmot starts each range at [-6, 6] and moves it by an exponential average of decay 0.999, so a
    short fine-tune (a few hundred steps) ends with ranges still mostly [-6, 6]: ReLU outputs clip at
    6, small activations get a coarse step, and the uint8 input is quantized as [-6, 255]. Starting
    from calibrated ranges lets QAT fine-tune from where post-training quantization stands. The
    weight ranges are set first, from the weights (as a training step does): at their initial
    [-6, 6] most kernel values would round to zero."""
    import numpy as np

    for layer in qat_model.layers:  # weight ranges first, as a training step sets them (LastValueQuantizer)
        for weight, quantizer, quantizer_vars in getattr(layer, "_weight_vars", []):
            quantizer(weight, True, weights=quantizer_vars)
    ranges: dict[int, list[Any]] = {}
    recorder = _RangeRecorder(ranges)
    slots = _activation_slots(qat_model)
    saved = [owner[key] if isinstance(key, int) else getattr(owner, key) for owner, key in slots]
    try:
        for owner, key in slots:
            if isinstance(key, int):
                owner[key] = recorder
            else:
                setattr(owner, key, recorder)
        images = np.asarray(images, dtype=np.float32)
        for start in range(0, len(images), batch_size):
            qat_model(images[start : start + batch_size], training=False)
    finally:
        for (owner, key), quantizer in zip(slots, saved, strict=True):
            if isinstance(key, int):
                owner[key] = quantizer
            else:
                setattr(owner, key, quantizer)
    for weights, lo, hi in ranges.values():
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # tfmot's ranges always include zero
        if hi - lo < MIN_RANGE:  # a dead or vanishing tensor (untrained nets): see MIN_RANGE
            hi = lo + MIN_RANGE
        weights["min_var"].assign(lo)
        weights["max_var"].assign(hi)
    return len(ranges)
