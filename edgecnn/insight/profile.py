"""Per-layer profile of a built tf_keras model: shapes, parameters, MACs, receptive field, memory.

What is counted, and why:

* **MACs** (multiply-accumulates) only for the layers that do the arithmetic that dominates a CNN:
  Conv2D ``H_out*W_out*kh*kw*(C_in/groups)*C_out``, DepthwiseConv2D ``H_out*W_out*kh*kw*C_in*depth_multiplier``,
  SeparableConv2D (that depthwise + the 1x1 pointwise ``H_out*W_out*C_in*depth_multiplier*C_out``),
  Conv2DTranspose ``H_in*W_in*kh*kw*C_in*C_out`` and Dense ``in_features*units`` (times the spatial positions
  when applied to a 4-D tensor). Every other layer (normalization, activation, pooling, element-wise,
  reshape) counts 0 MACs: they are memory-bound and conventionally left out; bias additions too.
* **Receptive field** and **jump** (the distance in input pixels between two adjacent outputs, i.e. the
  product of the strides so far), per axis (height, width), by the recurrence ``r_out = r_in + (k - 1) * j_in``,
  ``j_out = j_in * s`` for convolutions and pooling (dilation ``d`` gives an effective ``k = d * (k - 1) + 1``).
  Where several tensors meet (Add, Concatenate, Multiply) the largest ``r`` and ``j`` win: the field along
  the largest path. Global pooling, Flatten, Reshape and Dense on a flat vector see the whole input, so
  their field is the input size (noted). The recurrence can exceed the input size: that part lies in padding.
* **Activation bytes**: output elements x ``bytes_per_element`` (4 for float32, 1 for int8).
  **Peak activation memory** walks the layers in the order Keras runs them, keeping each tensor alive
  until its last consumer has run (model outputs until the end), and takes the largest sum of live tensors
  at any step, the step's own output included. For a plain chain this is max(input + output) over layers;
  a skip connection keeps its tensor alive across the branch it skips.
* **Dense-equivalent parameters**: for every Conv2D/DepthwiseConv2D/SeparableConv2D, what a fully
  connected layer mapping its whole input tensor to its whole output tensor would need
  (``H_in*W_in*C_in * H_out*W_out*C_out`` weights + ``H_out*W_out*C_out`` biases): the saving from
  weight sharing and local connectivity, to set against the convolutions' own parameters.

Nested models (a Sequential or Functional model used as a layer) are walked into; their layers appear as
``outer/inner``. A subclassed model, which has no graph to walk, is one row with a note and 0 MACs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from edgecnn.core.keras_env import keras, tf

Pair = tuple[int, int]


def conv_output_size(w: int, f: int, p: float, s: int) -> int:
    """Output width of a convolution or pooling window: ``floor((W - F + 2P) / S) + 1``.

    ``p`` is the padding per side; TensorFlow's 'same' padding can be asymmetric (one more pixel at the
    end), so pass half the total there (:func:`tf_padding` does).
    """
    return math.floor((w - f + 2 * p) / s) + 1


def tf_padding(w: int, f: int, s: int, padding: str) -> float:
    """Padding per side TensorFlow applies for ``padding`` ('valid' or 'same'), as :func:`conv_output_size` takes it.

    'same' pads ``max(F - S, 0)`` in total when S divides W, else ``max(F - W mod S, 0)`` (TensorFlow's
    documented rule), split before/after, so per side it is half that total.
    """
    if padding == "valid":
        return 0.0
    if padding != "same":
        raise ValueError(f"unknown padding {padding!r}")
    total = max(f - s, 0) if w % s == 0 else max(f - w % s, 0)
    return total / 2


@dataclass
class LayerProfile:
    """One executed layer (one call of it: a layer called twice gives two rows, its weights counted once)."""

    name: str
    type: str  # the layer's class name
    output_shape: tuple[int | None, ...]  # without the batch axis (first output where there are several)
    params: int
    macs: int
    receptive_field: Pair  # (height, width) in input pixels, along the largest path (rounded up)
    jump: tuple[float, float]  # (height, width) input pixels between adjacent outputs: product of strides
    activation_bytes: int  # all outputs' elements x bytes_per_element
    dense_equivalent_params: int = 0  # only for Conv2D / DepthwiseConv2D / SeparableConv2D
    note: str = ""


@dataclass
class ModelProfile:
    """The whole model: every layer in execution order, and the totals."""

    name: str
    input_shape: tuple[int | None, ...]  # without the batch axis (the first input)
    bytes_per_element: int
    layers: list[LayerProfile] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0
    peak_activation_bytes: int = 0
    peak_layer: str = ""  # the layer running when the peak is reached
    dense_equivalent_params: int = 0
    conv_params: int = 0  # parameters of the layers that have a dense equivalent, to compare with it

    def layer(self, name: str) -> LayerProfile:
        """The first row named ``name`` (``outer/inner`` inside nested models)."""
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists, numbers and strings, ready for ``json.dumps``."""
        data = dataclasses.asdict(self)
        for row in data["layers"]:
            row["output_shape"] = list(row["output_shape"])
            row["receptive_field"] = list(row["receptive_field"])
            row["jump"] = list(row["jump"])
        data["input_shape"] = list(data["input_shape"])
        return data


# ---------------------------------------------------------------------------------------------------
# per-layer rules


@dataclass
class _Field:
    """Receptive field and jump of one tensor, per axis, as fractions so upsampling stays exact."""

    r: tuple[Fraction, Fraction] = (Fraction(1), Fraction(1))
    j: tuple[Fraction, Fraction] = (Fraction(1), Fraction(1))


def _shape(tensor: Any) -> tuple[int | None, ...]:
    return tuple(tensor.shape.as_list()[1:])


def _elements(shape: tuple[int | None, ...]) -> int:
    return math.prod(d or 1 for d in shape)


def _spatial(shape: tuple[int | None, ...]) -> int:
    """Positions a per-position op runs at: every axis but the batch and the channels."""
    return math.prod(d or 1 for d in shape[:-1])


def _pair(value: Any) -> Pair:
    return (int(value[0]), int(value[1])) if isinstance(value, Iterable) else (int(value), int(value))


def _macs(layer: Any, in_shape: tuple[int | None, ...], out_shape: tuple[int | None, ...]) -> int:
    """Multiply-accumulates of one call; 0 for layers without weights that multiply (see module docstring)."""

    layers = keras.layers
    if not in_shape or not out_shape:
        return 0
    c_in, c_out = in_shape[-1] or 0, out_shape[-1] or 0
    if isinstance(layer, layers.Conv2DTranspose):  # a Conv2D subclass: test it first
        kh, kw = _pair(layer.kernel_size)
        return _spatial(in_shape) * kh * kw * c_in * c_out
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = _pair(layer.kernel_size)
        return _spatial(out_shape) * kh * kw * c_in * layer.depth_multiplier
    if isinstance(layer, layers.SeparableConv2D):
        kh, kw = _pair(layer.kernel_size)
        mid = c_in * layer.depth_multiplier
        return _spatial(out_shape) * (kh * kw * mid + mid * c_out)
    if isinstance(layer, layers.Conv2D):
        kh, kw = _pair(layer.kernel_size)
        return _spatial(out_shape) * kh * kw * (c_in // (getattr(layer, "groups", 1) or 1)) * c_out
    if isinstance(layer, layers.Dense):
        return _spatial(in_shape) * c_in * layer.units
    return 0


def _dense_equivalent(layer: Any, in_shape: tuple[int | None, ...], out_shape: tuple[int | None, ...]) -> int:
    """Weights + biases of a fully connected layer from the whole input tensor to the whole output tensor."""

    layers = keras.layers
    is_conv = isinstance(layer, layers.Conv2D | layers.DepthwiseConv2D | layers.SeparableConv2D)
    if not is_conv or isinstance(layer, layers.Conv2DTranspose):
        return 0
    n_in, n_out = _elements(in_shape), _elements(out_shape)
    return n_in * n_out + n_out


_WHOLE_INPUT = "receptive field = whole input"


def _window(layer: Any) -> tuple[Pair, Pair, Pair] | None:
    """(kernel, strides, dilation) of a sliding-window layer, None for any other layer."""

    layers = keras.layers
    if isinstance(layer, layers.Conv2D | layers.DepthwiseConv2D | layers.SeparableConv2D):
        return _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate)
    if isinstance(layer, layers.MaxPooling2D | layers.AveragePooling2D):
        return _pair(layer.pool_size), _pair(layer.strides), (1, 1)
    return None


def _keeps_positions(in_shape: tuple[int | None, ...], out_shape: tuple[int | None, ...]) -> bool:
    """A reshape that keeps the height and width axes (a channel shuffle) keeps the receptive field."""
    return len(in_shape) >= 3 and len(out_shape) >= 3 and in_shape[:2] == out_shape[:2]


def _field(
    layer: Any, inputs: list[_Field], in_shape: tuple[int | None, ...], out_shape: tuple[int | None, ...], image: Pair
) -> tuple[_Field, str]:
    """Receptive field and jump after ``layer``, from those of its inputs; a note where a rule was applied."""

    layers = keras.layers
    one = Fraction(1)
    r = tuple(max(f.r[a] for f in inputs) for a in (0, 1)) if inputs else (one, one)
    j = tuple(max(f.j[a] for f in inputs) for a in (0, 1)) if inputs else (one, one)
    if isinstance(layer, layers.Conv2DTranspose):
        # each output sees ceil(k / s) input positions per axis; outputs are s times denser
        k, s = _pair(layer.kernel_size), _pair(layer.strides)
        r = tuple(r[a] + (math.ceil(k[a] / s[a]) - 1) * j[a] for a in (0, 1))
        return _Field(r, tuple(j[a] / s[a] for a in (0, 1))), "transposed: jump divided by the stride"
    window = _window(layer)
    if window:
        k, s, d = window
        k_eff = tuple(d[a] * (k[a] - 1) + 1 for a in (0, 1))
        r = tuple(r[a] + (k_eff[a] - 1) * j[a] for a in (0, 1))
        return _Field(r, tuple(j[a] * s[a] for a in (0, 1))), ""
    if isinstance(layer, layers.UpSampling2D):
        size = _pair(layer.size)
        return _Field(r, tuple(j[a] / size[a] for a in (0, 1))), ""
    pools = layers.GlobalAveragePooling2D | layers.GlobalMaxPooling2D | layers.Flatten
    whole = (
        isinstance(layer, pools)
        or (isinstance(layer, layers.Reshape) and not _keeps_positions(in_shape, out_shape))
        or (isinstance(layer, layers.Dense) and len(in_shape) <= 1)
    )
    if whole:
        full = (Fraction(image[0]), Fraction(image[1]))
        return _Field(full, j), _WHOLE_INPUT if r != full else ""
    return _Field(r, j), ""


# ---------------------------------------------------------------------------------------------------
# graph walk


@dataclass
class _Step:
    """One executed layer call, with its tensors as keys into one flat namespace (nested models resolved)."""

    name: str
    layer: Any
    inputs: list[str]
    outputs: list[str]
    in_shapes: list[tuple[int | None, ...]]
    out_shapes: list[tuple[int | None, ...]]


def _is_graph_model(layer: Any) -> bool:
    return hasattr(layer, "_nodes_by_depth") and getattr(layer, "_is_graph_network", False)


def _walk(model: Any, scope: str, inputs: list[str], steps: list[_Step], counter: list[int]) -> list[str]:
    """Append ``model``'s layer calls in execution order; return the keys of its outputs.

    ``inputs`` are the caller's keys for ``model.inputs``. Keras runs nodes by decreasing depth; so do we.
    """
    alias: dict[int, str] = {id(t): key for t, key in zip(model.inputs, inputs, strict=True)}
    counter[0] += 1
    call = counter[0]

    def key(tensor: Any) -> str:
        return alias.get(id(tensor)) or f"{call}:{id(tensor)}"

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            layer = node.layer
            if node.is_input:
                continue
            in_keys = [key(t) for t in node.keras_inputs]
            outputs = _flatten(node.outputs)
            name = f"{scope}{layer.name}"
            if _is_graph_model(layer):
                inner_out = _walk(layer, name + "/", in_keys, steps, counter)
                for tensor, inner in zip(outputs, inner_out, strict=True):
                    alias[id(tensor)] = inner
                continue
            steps.append(
                _Step(
                    name,
                    layer,
                    in_keys,
                    [key(t) for t in outputs],
                    [_shape(t) for t in node.keras_inputs],
                    [_shape(t) for t in outputs],
                )
            )
    return [key(t) for t in model.outputs]


def _flatten(structure: Any) -> list[Any]:
    return tf.nest.flatten(structure)


def _peak(steps: list[_Step], sizes: dict[str, int], sources: list[str], keep: set[str]) -> tuple[int, int]:
    """(peak bytes, index of the step at the peak) with every tensor freed after its last consumer."""
    last_use: dict[str, int] = {}
    for i, step in enumerate(steps):
        for k in step.inputs:
            last_use[k] = i
    live: dict[str, int] = {k: sizes[k] for k in sources}
    peak, at = sum(live.values()), -1
    for i, step in enumerate(steps):
        for k in step.outputs:
            live[k] = sizes[k]
        total = sum(live.values())
        if total > peak:
            peak, at = total, i
        for k in list(live):
            if last_use.get(k, -1) <= i and k not in keep:
                del live[k]
    return peak, at


def profile_model(model: Any, bytes_per_element: int = 4) -> ModelProfile:
    """Profile a built tf_keras functional (or Sequential) model, nested models walked into.

    ``bytes_per_element`` sets the activation sizes: 4 for float32, 1 for an int8 model.
    """
    if not _is_graph_model(model):
        raise ValueError("profile_model needs a functional or Sequential model with known input shapes")
    sources = [f"input:{i}" for i in range(len(model.inputs))]
    steps: list[_Step] = []
    outputs = _walk(model, "", sources, steps, [0])

    first = _shape(model.inputs[0])
    image = (first[0] or 1, first[1] or 1) if len(first) == 3 else (1, 1)
    result = ModelProfile(model.name, first, bytes_per_element)
    sizes = {k: _elements(_shape(t)) * bytes_per_element for k, t in zip(sources, model.inputs, strict=True)}
    fields: dict[str, _Field] = {k: _Field() for k in sources}
    for k, t, layer in zip(sources, model.inputs, model._input_layers, strict=False):
        result.layers.append(
            LayerProfile(layer.name, "InputLayer", _shape(t), 0, 0, (1, 1), (1, 1), sizes[k], note="input")
        )

    seen: set[int] = set()
    for step in steps:
        for k, shape in zip(step.outputs, step.out_shapes, strict=True):
            sizes[k] = _elements(shape) * bytes_per_element
        in_shape = step.in_shapes[0] if step.in_shapes else ()
        out_shape = step.out_shapes[0] if step.out_shapes else ()
        notes = []
        if id(step.layer) in seen:
            params = 0
            notes.append("shared weights, counted once")
        else:
            seen.add(id(step.layer))
            params = step.layer.count_params() if step.layer.built else 0
        if _is_model(step.layer):
            notes.append("subclassed model: one row, MACs not counted")
        fld, note = _field(step.layer, [fields[k] for k in step.inputs], in_shape, out_shape, image)
        notes += [note] if note else []
        for k in step.outputs:
            fields[k] = fld
        row = LayerProfile(
            name=step.name,
            type=type(step.layer).__name__,
            output_shape=out_shape,
            params=params,
            macs=_macs(step.layer, in_shape, out_shape),
            receptive_field=(math.ceil(fld.r[0]), math.ceil(fld.r[1])),
            jump=tuple(_number(v) for v in fld.j),
            activation_bytes=sum(sizes[k] for k in step.outputs),
            dense_equivalent_params=_dense_equivalent(step.layer, in_shape, out_shape),
            note="; ".join(notes),
        )
        result.layers.append(row)
        result.total_macs += row.macs
        if row.dense_equivalent_params:
            result.dense_equivalent_params += row.dense_equivalent_params
            result.conv_params += row.params

    result.total_params = sum(r.params for r in result.layers)
    result.trainable_params = sum(_count(w) for w in model.trainable_weights)
    peak, at = _peak(steps, sizes, sources, set(outputs))
    result.peak_activation_bytes = peak
    result.peak_layer = steps[at].name if at >= 0 else result.layers[0].name
    return result


def _is_model(layer: Any) -> bool:
    return isinstance(layer, keras.Model)


def _count(weight: Any) -> int:
    return math.prod(weight.shape)


def _number(value: Fraction) -> float:
    """An int where the fraction is whole (the usual case), else a float."""
    return int(value) if value.denominator == 1 else float(value)


# ---------------------------------------------------------------------------------------------------
# text


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:g}"


def _axes(value: tuple[float, float]) -> str:
    a, b = (f"{v:g}" for v in value)
    return a if a == b else f"{a}x{b}"


def format_profile(profile: ModelProfile) -> str:
    """An aligned text table, one row per layer call, then the totals."""
    header = ("layer", "type", "output", "params", "MACs", "RF", "jump", "act bytes", "note")
    rows = [
        (
            r.name,
            r.type,
            "x".join(str(d) for d in r.output_shape),
            f"{r.params:,}",
            f"{r.macs:,}",
            _axes(r.receptive_field),
            _axes(r.jump),
            f"{r.activation_bytes:,}",
            r.note,
        )
        for r in profile.layers
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    right = {3, 4, 5, 6, 7}  # numbers align right

    def line(row: tuple[str, ...]) -> str:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    p = profile
    ratio = p.dense_equivalent_params / p.conv_params if p.conv_params else 0.0
    out += [
        "",
        f"model       {p.name}, input {'x'.join(str(d) for d in p.input_shape)}, {len(p.layers)} rows",
        f"params      {p.total_params:,} ({_human(p.total_params)}; trainable {p.trainable_params:,})",
        f"MACs        {p.total_macs:,} ({_human(p.total_macs)}; conv, depthwise, separable, transposed and dense only)",
        f"peak memory {p.peak_activation_bytes:,} bytes of activations at {p.bytes_per_element} B/element "
        f"(at {p.peak_layer}; tensors freed after their last consumer)",
        f"weight sharing  conv params {p.conv_params:,} vs {p.dense_equivalent_params:,} for dense layers "
        f"with the same input and output shapes ({ratio:,.0f}x)",
    ]
    return "\n".join(out)
