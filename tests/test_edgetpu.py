"""Edge TPU check: agrees with Coral's op table on a corpus of tiny .tflite models, one construct each.

The corpus is built once per session with the real converter (int8, uint8 I/O, 8x8x4 inputs), so the
check is tested on the graphs TensorFlow actually writes, not on hand-made ones. Every row of the
op table is produced by some corpus model, except the rows in ``NOT_PRODUCIBLE`` (with the reason).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fake_compiler

from edgecnn.core.errors import EdgecnnError
from edgecnn.edgetpu.check import (
    AFTER_FALLBACK,
    BAD_RANK,
    BAD_TYPE,
    BAD_VERSION,
    BOUNDARY,
    COMPILED,
    DETECTION_POSTPROCESS,
    DYNAMIC,
    LIMITATION,
    MAPPED,
    NOT_SUPPORTED,
    TAIL_NOTE,
    UNKNOWN,
    check_tflite,
    format_check,
)
from edgecnn.edgetpu.compiler import (
    CompileResult,
    compile_instructions,
    convert_for_edgetpu,
    find_compiler,
    parse_compiler_log,
    parse_size,
    run_compiler,
)
from edgecnn.edgetpu.ops import OP_TABLE, find_rule
from edgecnn.edgetpu.tflite_graph import read_graph

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane

# Rows of the op table that TensorFlow 2.21's converter cannot produce in a full-int8 model.
NOT_PRODUCIBLE = {
    "LSTM": "Keras LSTM layers convert to UNIDIRECTIONAL_SEQUENCE_LSTM; the plain LSTM op is TF1-era (toco)",
    "EXPAND_DIMS": "the converter rewrites tf.expand_dims as RESHAPE",
    "SQUEEZE": "the converter rewrites tf.squeeze as RESHAPE",
}


@dataclass(frozen=True)
class Model:
    build: Callable[[Any, Any, Any], Any]  # (x, keras, tf) -> output tensor
    shape: tuple[int, ...] = (8, 8, 4)
    io: str = "uint8"  # "float" = not quantized at all
    batch: int | None = 1


def _se(x: Any, keras: Any, tf: Any) -> Any:
    from edgecnn.archs.layers import SqueezeExcite

    return SqueezeExcite(gate="hard_sigmoid")(x)


def _custom(name: str) -> Callable[[Any, Any, Any], Any]:
    def build(x: Any, keras: Any, tf: Any) -> Any:
        import edgecnn.archs.layers as custom

        return getattr(custom, name)()(x)

    return build


MODELS: dict[str, Model] = {
    # supported constructs
    "conv": Model(lambda x, k, tf: k.layers.Conv2D(4, 3, padding="same", activation="relu")(x)),
    "conv_dilated": Model(lambda x, k, tf: k.layers.Conv2D(4, 3, dilation_rate=2, padding="same")(x)),
    "depthwise": Model(lambda x, k, tf: k.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)),
    "dense": Model(lambda x, k, tf: k.layers.Dense(3, activation="softmax")(k.layers.Flatten()(x))),
    "add": Model(lambda x, k, tf: k.layers.Add()([x, k.layers.Conv2D(4, 1)(x)])),
    "sub": Model(lambda x, k, tf: k.layers.Subtract()([x, k.layers.Conv2D(4, 1)(x)])),
    "mul": Model(lambda x, k, tf: k.layers.Multiply()([x, k.layers.Conv2D(4, 1)(x)])),
    "maximum": Model(lambda x, k, tf: k.layers.Maximum()([x, k.layers.Conv2D(4, 1)(x)])),
    "minimum": Model(lambda x, k, tf: k.layers.Minimum()([x, k.layers.Conv2D(4, 1)(x)])),
    "concat": Model(lambda x, k, tf: k.layers.Concatenate()([x, k.layers.Conv2D(4, 1)(x)])),
    "concat_zeros": Model(lambda x, k, tf: tf.concat([x, tf.zeros((1, 8, 8, 2))], axis=-1)),
    "avg_pool": Model(lambda x, k, tf: k.layers.AveragePooling2D()(x)),
    "max_pool": Model(lambda x, k, tf: k.layers.MaxPooling2D()(x)),
    "mean_xy": Model(lambda x, k, tf: k.layers.GlobalAveragePooling2D()(x)),
    "mean_z4": Model(lambda x, k, tf: tf.reduce_mean(x, axis=-1, keepdims=True)),
    "pad_xy": Model(lambda x, k, tf: k.layers.ZeroPadding2D(1)(x)),
    "pad_z": Model(lambda x, k, tf: tf.pad(x, [[0, 0], [0, 0], [0, 0], [1, 1]])),
    "resize_nearest": Model(lambda x, k, tf: k.layers.UpSampling2D(interpolation="nearest")(x)),
    "resize_bilinear": Model(lambda x, k, tf: k.layers.UpSampling2D(interpolation="bilinear")(x)),
    "transpose_conv": Model(lambda x, k, tf: k.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(x)),
    "logistic": Model(lambda x, k, tf: k.layers.Activation("sigmoid")(x)),
    "tanh": Model(lambda x, k, tf: k.layers.Activation("tanh")(x)),
    "relu": Model(lambda x, k, tf: k.layers.ReLU()(x)),
    "relu6": Model(lambda x, k, tf: k.layers.ReLU(6.0)(x)),
    "relu_n1_to_1": Model(lambda x, k, tf: tf.clip_by_value(k.layers.Reshape((8, 32))(x), -1.0, 1.0)),
    "swish": Model(lambda x, k, tf: k.layers.Activation("swish")(x)),
    "hard_sigmoid": Model(_custom("HardSigmoid")),
    "squeeze_excite": Model(_se),
    "prelu": Model(lambda x, k, tf: k.layers.PReLU(shared_axes=[1, 2])(x)),
    "reduce_max": Model(lambda x, k, tf: k.layers.GlobalMaxPooling2D()(x)),
    "reduce_min": Model(lambda x, k, tf: tf.reduce_min(x, axis=[1, 2])),
    "sum": Model(lambda x, k, tf: tf.reduce_sum(x, axis=[1, 2])),
    "l2_normalization": Model(lambda x, k, tf: tf.math.l2_normalize(x, axis=-1)),
    "space_to_depth": Model(lambda x, k, tf: tf.nn.space_to_depth(x, 2)),
    "split": Model(lambda x, k, tf: k.layers.Add()(tf.split(x, 2, axis=-1))),
    "slice": Model(lambda x, k, tf: tf.slice(x, [0, 1, 1, 0], [1, 4, 4, 4])),
    "strided_slice_unit": Model(lambda x, k, tf: x[:, 1:5, 1:5, :]),
    "pack": Model(lambda x, k, tf: tf.stack([tf.reduce_mean(x, [1, 2]), tf.reduce_max(x, [1, 2])], axis=1)),
    "transpose": Model(lambda x, k, tf: tf.transpose(x, [0, 2, 1, 3])),
    "rsqrt": Model(lambda x, k, tf: tf.math.rsqrt(tf.nn.relu(x) + 1.0)),
    "squared_difference": Model(lambda x, k, tf: tf.math.squared_difference(x, k.layers.Conv2D(4, 1)(x))),
    "float_io": Model(lambda x, k, tf: k.layers.Conv2D(4, 3, padding="same")(x), io="float32"),
    # unsupported constructs
    "hard_swish": Model(_custom("HardSwish")),
    "gelu": Model(lambda x, k, tf: k.layers.Activation("gelu")(x)),
    "gelu_tanh": Model(lambda x, k, tf: tf.nn.gelu(x, approximate=True)),
    "layer_norm": Model(lambda x, k, tf: k.layers.LayerNormalization()(x)),
    "mean_z6": Model(lambda x, k, tf: tf.reduce_mean(x, axis=-1, keepdims=True), shape=(8, 8, 6)),
    "pad_batch": Model(lambda x, k, tf: tf.pad(x, [[1, 0], [0, 0], [0, 0], [0, 0]])),
    "dense_4d": Model(lambda x, k, tf: k.layers.Dense(3)(x)),
    "softmax_4d": Model(lambda x, k, tf: k.layers.Softmax()(x)),
    "strided_slice": Model(lambda x, k, tf: x[:, ::2, ::2, :]),
    "dilation_xy": Model(lambda x, k, tf: k.layers.Conv2D(4, 3, dilation_rate=(1, 2), padding="same")(x)),
    "avg_pool_relu": Model(lambda x, k, tf: k.layers.ReLU()(k.layers.AveragePooling2D()(x))),
    "concat_ones": Model(lambda x, k, tf: tf.concat([x, tf.ones((1, 8, 8, 2))], axis=-1)),
    "leaky_relu": Model(lambda x, k, tf: k.layers.LeakyReLU()(x)),
    "elu": Model(lambda x, k, tf: k.layers.ELU()(x)),
    "rank5": Model(lambda x, k, tf: tf.reshape(x, [1, 2, 4, 8, 4]) * 2.0),
    "lstm": Model(lambda x, k, tf: k.layers.LSTM(4)(x), shape=(6, 4)),
    "float": Model(lambda x, k, tf: k.layers.Conv2D(4, 3, padding="same")(x), io="float"),
    "dynamic_batch": Model(lambda x, k, tf: k.layers.Conv2D(4, 3, padding="same")(x), batch=None),
    "fallback_chain": Model(
        lambda x, k, tf: k.layers.Conv2D(4, 1)(
            k.layers.Conv2D(4, 1)(_custom("HardSwish")(k.layers.Conv2D(4, 1)(x), k, tf))
        )
    ),
}


def _convert(spec: Model) -> bytes:
    from edgecnn.convert.tflite import to_tflite
    from edgecnn.core.keras_env import keras, tf
    from edgecnn.core.quiet import native_stderr_silenced

    inputs = keras.Input(shape=spec.shape, batch_size=spec.batch)
    model = keras.Model(inputs, spec.build(inputs, keras, tf))
    calib = np.random.default_rng(0).uniform(0, 255, (8, *spec.shape)).astype(np.float32)
    if spec.batch == 1:
        fmt = "float32" if spec.io == "float" else "int8"
        return to_tflite(model, fmt, "float32" if spec.io == "float" else spec.io, calib)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)  # keeps the dynamic batch
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([c[None]] for c in calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    with native_stderr_silenced():
        return converter.convert()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every MODELS entry converted once and written as NAME.tflite."""
    root = tmp_path_factory.mktemp("edgetpu_corpus")
    paths = {}
    for name, spec in MODELS.items():
        paths[name] = root / f"{name}.tflite"
        paths[name].write_bytes(_convert(spec))
    return paths


# (model, runtime) -> None when fully mapped, else (first CPU op, its status, its first reason)
EXPECTED: dict[tuple[str, int], tuple[str, str, str] | None] = {
    **{(name, 14): None for name in list(MODELS)[: list(MODELS).index("float_io") + 1]},
    ("conv", 12): None,  # the uint8 -> int8 QUANTIZE (runtime 13+) stays on the CPU at the input
    ("depthwise", 12): None,
    ("conv_dilated", 12): None,
    ("mean_xy", 12): None,
    ("pad_xy", 12): None,
    ("mean_z4", 12): ("MEAN", LIMITATION, "Mean: reduces over axes [3], not only x and y"),
    ("pad_z", 12): ("PAD", LIMITATION, "Pad: pads dimensions [3], not only x and y"),
    ("transpose", 13): ("TRANSPOSE", NOT_SUPPORTED, "TRANSPOSE needs Edge TPU runtime 14+ (checking for runtime 13)"),
    ("hard_swish", 14): ("HARD_SWISH", NOT_SUPPORTED, "HARD_SWISH is not in the Edge TPU's supported-op table"),
    ("gelu", 14): ("GELU", NOT_SUPPORTED, "GELU is not in the Edge TPU's supported-op table"),
    ("gelu_tanh", 14): ("GELU", NOT_SUPPORTED, "GELU is not in the Edge TPU's supported-op table"),
    ("layer_norm", 14): ("MEAN", LIMITATION, "Mean: reduces over the batch dimension (axes [0, 1, 2])"),
    ("mean_z6", 14): ("MEAN", LIMITATION, "Mean: reduces over z (channels) of depth 6, not a multiple of 4"),
    ("dense_4d", 14): (
        "FULLY_CONNECTED",
        LIMITATION,
        "FullyConnected: output shape [1, 8, 8, 3] is not one-dimensional",
    ),
    ("softmax_4d", 14): ("SOFTMAX", LIMITATION, "Softmax: input shape [1, 8, 8, 4] is not one-dimensional"),
    ("strided_slice", 14): ("STRIDED_SLICE", LIMITATION, "StridedSlice: strides are not all 1"),
    ("dilation_xy", 14): ("CONV_2D", LIMITATION, "Conv2d: dilation 1x2 differs in y and x"),
    ("avg_pool_relu", 14): ("AVERAGE_POOL_2D", LIMITATION, "AveragePool2d: has a fused RELU activation (none allowed)"),
    ("leaky_relu", 14): ("LEAKY_RELU", NOT_SUPPORTED, "LEAKY_RELU is not in the Edge TPU's supported-op table"),
    ("elu", 14): ("ELU", NOT_SUPPORTED, "ELU is not in the Edge TPU's supported-op table"),
}


@pytest.mark.parametrize(("name", "runtime"), sorted(EXPECTED))
def test_check_agrees_with_the_op_table(corpus: dict[str, Path], name: str, runtime: int) -> None:
    report = check_tflite(corpus[name], runtime=runtime)
    expected = EXPECTED[(name, runtime)]
    if expected is None:
        assert report.fully_mapped, format_check(report)
        assert report.on_cpu == sum(op.boundary for op in report.ops)
        return
    first = report.ops[report.first_fallback]
    assert (first.op, first.status, first.reasons[0]) == expected, format_check(report)
    assert not report.fully_mapped


def test_every_op_table_row_is_produced_by_the_corpus(corpus: dict[str, Path]) -> None:
    seen = {op.name for path in corpus.values() for op in read_graph(path).operators}
    table = {rule.op for rule in OP_TABLE}
    assert table - seen == set(NOT_PRODUCIBLE), sorted(table - seen)
    checked_rows = {
        id(find_rule(op.name, runtime))
        for (name, runtime) in [*EXPECTED, ("lstm", 14)]
        for op in read_graph(corpus[name]).operators
        if find_rule(op.name, runtime)
    }
    missing = [
        f"{r.op} ({r.runtime_label})" for r in OP_TABLE if id(r) not in checked_rows and r.op not in NOT_PRODUCIBLE
    ]
    assert missing == []


def test_reads_op_versions_options_and_quantization(corpus: dict[str, Path]) -> None:
    graph = read_graph(corpus["dilation_xy"])
    conv = next(op for op in graph.operators if op.name == "CONV_2D")
    assert conv.version == 3 and (conv.options["dilation_h"], conv.options["dilation_w"]) == (1, 2)
    weights = graph.tensors[conv.inputs[1]]
    assert weights.type == "INT8" and weights.is_constant and len(weights.quantization.scale) == 4  # per channel
    assert graph.tensors[graph.inputs[0]].type == "UINT8"
    assert graph.operators[0].name == "QUANTIZE"  # execution order: input conversion first


def test_first_fallback_sends_everything_after_it_to_the_cpu(corpus: dict[str, Path]) -> None:
    report = check_tflite(corpus["fallback_chain"])
    assert [op.op for op in report.ops] == ["QUANTIZE", "CONV_2D", "HARD_SWISH", "CONV_2D", "CONV_2D", "QUANTIZE"]
    assert [op.on_edgetpu for op in report.ops] == [True, True, False, False, False, False]
    assert report.first_fallback == 2 and report.after_fallback == 3
    assert [op.status for op in report.ops[3:]] == [AFTER_FALLBACK] * 3
    assert (report.mapped, report.on_cpu) == (2, 4)
    text = format_check(report)
    assert "first CPU fallback: #2 HARD_SWISH" in text and "the 3 ops after it run on the CPU too" in text
    assert "fix: replace with ReLU6" in text


def test_float_io_conversions_stay_at_the_edge(corpus: dict[str, Path]) -> None:
    report = check_tflite(corpus["float_io"])
    assert [(op.op, op.boundary, op.on_edgetpu) for op in report.ops] == [
        ("QUANTIZE", True, False),
        ("CONV_2D", False, True),
        ("DEQUANTIZE", True, False),
    ]
    assert report.fully_mapped and report.ops[0].status == BOUNDARY
    assert report.ops[0].reasons == ["has FLOAT32 tensors (the Edge TPU needs 8-bit quantized tensors)"]


def test_float_dynamic_batch_rank_and_lstm_models(corpus: dict[str, Path]) -> None:
    float_report = check_tflite(corpus["float"])
    assert float_report.ops[0].status == BAD_TYPE and float_report.mapped == 0
    assert float_report.problems == [
        "the model is not quantized (no int8/uint8 tensors); convert it with: edgecnn convert --int8"
    ]
    dynamic = check_tflite(corpus["dynamic_batch"])
    conv = next(op for op in dynamic.ops if op.op == "CONV_2D")
    assert (conv.status, conv.reasons) == (DYNAMIC, ["has tensors of dynamic shape [-1, 8, 8, 4]"])
    assert (
        dynamic.problems[0].startswith("input serving_default_input_")
        or "dynamic shape [-1, 8, 8, 4]" in (dynamic.problems[0])
    )
    batch = check_tflite(corpus["pad_batch"])
    first = batch.ops[batch.first_fallback]
    assert first.status == BAD_RANK and first.reasons[0].endswith("has batch 2 (the Edge TPU runs batch 1)")
    rank5 = check_tflite(corpus["rank5"])
    assert (
        rank5.ops[rank5.first_fallback]
        .reasons[0]
        .endswith("has shape [1, 2, 4, 8, 4]: only the 3 innermost dimensions may be larger than 1")
    )
    lstm = check_tflite(corpus["lstm"])
    first = lstm.ops[lstm.first_fallback]
    assert (first.op, first.status) == ("UNIDIRECTIONAL_SEQUENCE_LSTM", BAD_TYPE)
    assert first.reasons == ["has INT16 tensors (the Edge TPU needs 8-bit quantized tensors)"]  # 16-bit cell state


def test_concatenation_with_constant_input(corpus: dict[str, Path]) -> None:
    assert check_tflite(corpus["concat_zeros"]).fully_mapped
    report = check_tflite(corpus["concat_ones"])
    reason = report.ops[report.first_fallback].reasons[0]
    assert reason.startswith("Concatenation: constant input ") and reason.endswith(" is not all zeros")


def _patched(path: Path, op: str, **changes: Any) -> bytes:
    """The model with one operator code changed (version, or turned into a custom op)."""
    from tensorflow.lite.tools import flatbuffer_utils

    import edgecnn.core.keras_env  # noqa: F401

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    from tensorflow.lite.python import schema_py_generated as schema

    code = next(
        c
        for c in model.operatorCodes
        if max(c.builtinCode, c.deprecatedBuiltinCode) == getattr(schema.BuiltinOperator, op)
    )
    for key, value in changes.items():
        setattr(code, key, value)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_op_version_newer_than_the_compiler_reads(corpus: dict[str, Path]) -> None:
    report = check_tflite(_patched(corpus["conv"], "CONV_2D", version=6))
    first = report.ops[report.first_fallback]
    assert (first.op, first.version, first.status) == ("CONV_2D", 6, BAD_VERSION)
    assert first.reasons == ["CONV_2D version 6 is newer than Edge TPU compiler 16.0 reads (up to 5)"]


def test_compiled_model_custom_op_counts_as_mapped(corpus: dict[str, Path]) -> None:
    blob = _patched(corpus["conv"], "CONV_2D", builtinCode=32, deprecatedBuiltinCode=32, customCode="edgetpu-custom-op")
    report = check_tflite(blob)
    assert report.ops[1].op == "edgetpu-custom-op" and report.ops[1].status == COMPILED and report.fully_mapped


def test_report_as_json_and_memory_estimate(corpus: dict[str, Path]) -> None:
    report = check_tflite(corpus["conv"])
    data = json.loads(json.dumps(report.as_dict()))
    assert data["fully_mapped"] and data["mapped"] == 3 and data["on_cpu"] == 0
    assert data["param_bytes"] == 4 * 3 * 3 * 4 + 4 * 4  # int8 kernel + int32 bias
    assert data["sram_bytes"] == 8 * 2**20 and data["fits_sram"]
    assert [op["status"] for op in data["ops"]] == [MAPPED] * 3


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    missing = tmp_path / "none.tflite"
    with pytest.raises(EdgecnnError, match=f"^model file not found: {missing}; check the path$"):
        check_tflite(missing)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(EdgecnnError, match=f"^not a valid .tflite model: {bad}; convert one with: edgecnn convert"):
        check_tflite(bad)
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(b"\x10\x00\x00\x00TFL3" + b"\xff" * 8)
    with pytest.raises(
        EdgecnnError, match=r"^corrupt \.tflite model: .*\(an offset points outside the file\); convert"
    ):
        check_tflite(truncated)


# --------------------------------------------------------------------------------------- keras
KERAS_AGREES = [
    "conv", "depthwise", "dense", "add", "concat", "avg_pool", "max_pool", "mean_xy", "pad_xy", "resize_nearest",
    "resize_bilinear", "transpose_conv", "logistic", "swish", "hard_sigmoid", "squeeze_excite", "prelu",
    "reduce_max", "hard_swish", "gelu", "layer_norm", "dense_4d", "softmax_4d", "dilation_xy", "leaky_relu", "elu",
]  # fmt: skip


def _keras_model(name: str) -> Any:
    from edgecnn.core.keras_env import keras, tf

    spec = MODELS[name]
    inputs = keras.Input(shape=spec.shape, batch_size=spec.batch)
    return keras.Model(inputs, spec.build(inputs, keras, tf))


@pytest.mark.parametrize("name", KERAS_AGREES)
def test_check_keras_agrees_with_check_tflite(corpus: dict[str, Path], name: str) -> None:
    from edgecnn.edgetpu.check import check_keras

    keras_report, tflite_report = check_keras(_keras_model(name)), check_tflite(corpus[name])
    assert keras_report.fully_mapped == tflite_report.fully_mapped, format_check(keras_report)


def test_check_keras_says_unknown_for_layers_it_does_not_know() -> None:
    from edgecnn.core.keras_env import keras
    from edgecnn.edgetpu.check import check_keras

    inputs = keras.Input(shape=(8, 8, 4))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2, name="double")(inputs))
    report = check_keras(model)
    lam = report.ops[report.first_fallback]
    assert (lam.op, lam.supported, lam.status) == ("Lambda", None, UNKNOWN)
    assert lam.reasons == ["Lambda is not in edgecnn's Keras table; convert it and run the check on the .tflite"]
    assert not report.fully_mapped


def test_check_keras_dynamic_input_is_a_problem() -> None:
    from edgecnn.core.keras_env import keras
    from edgecnn.edgetpu.check import check_keras

    inputs = keras.Input(shape=(None, None, 3))
    report = check_keras(keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs)))
    assert report.problems == [
        "input shape [None, None, None, 3] is dynamic; build the model with a fixed (H, W, C) input for the Edge TPU"
    ]
    assert report.ops[1].status == DYNAMIC


@pytest.mark.parametrize(
    ("application", "size", "fully_mapped"), [("MobileNetV3Small", 96, False), ("EfficientNetB0", 64, True)]
)
def test_check_of_a_keras_applications_model_is_the_verdict_of_its_int8_tflite(
    application: str, size: int, fully_mapped: bool, tmp_path: Path
) -> None:
    """The two edge models users bring most: TFOpLambda hard-swish pieces, Normalization, Rescaling. The
    Keras check is the check of their own int8 .tflite, op for op, each op named by its Keras layer."""
    from edgecnn.core.keras_env import keras
    from edgecnn.pipelines.check import CheckOptions, check_model
    from edgecnn.pipelines.convert import ConvertOptions, convert

    path = tmp_path / "model.keras"
    model = getattr(keras.applications, application)(weights=None, input_shape=(size, size, 3))
    model.save(path)
    keras_report = check_model(str(path), CheckOptions(edgetpu=True))
    out = tmp_path / "model_int8.tflite"
    strict = ConvertOptions(format="int8", calib="random", calib_samples=16, evaluate=False, all_int8=True)
    convert(path, out, strict)  # every op int8, as the Edge TPU takes it (--int8 alone keeps hard-swish float)
    tflite_report = check_tflite(out)
    assert keras_report.kind == "keras-int8" and keras_report.fully_mapped is fully_mapped
    assert all(op.supported is not None for op in keras_report.ops)  # no "?" verdicts
    assert [(op.op, op.on_edgetpu) for op in keras_report.ops] == [(op.op, op.on_edgetpu) for op in tflite_report.ops]
    assert (keras_report.mapped, keras_report.counted) == (tflite_report.mapped, tflite_report.counted)
    named = [op for op in keras_report.ops if op.op != "QUANTIZE"]
    assert all(op.layer for op in named), [op.name for op in named if not op.layer]
    if not fully_mapped:
        first = keras_report.ops[keras_report.first_fallback]
        # hard-swish is x * hard_sigmoid(x) in keras.applications: the Multiply layer ends it (its name
        # depends on how many Multiply layers the process built before)
        assert first.op == "HARD_SWISH" and type(model.get_layer(first.layer)).__name__ == "Multiply"
        text = format_check(keras_report)
        assert (
            f"first CPU fallback: #{first.index} HARD_SWISH [hard-swish x * relu6(x + 3) / 6] (layer {first.layer})"
            in text
        )


# ------------------------------------------------------------------------------- architectures
def _edgetpu_archs() -> list[str]:
    from edgecnn.archs import get_arch, list_archs

    return [name for name in list_archs() if get_arch(name).edgetpu]


@pytest.mark.parametrize("name", _edgetpu_archs())
def test_every_edgetpu_architecture_checks_fully_mapped_in_keras(name: str) -> None:
    from edgecnn.archs import create, get_arch
    from edgecnn.edgetpu.check import check_keras
    from edgecnn.tasks import get_task

    report = check_keras(get_task(get_arch(name).task).deployable(create(name, 10)))
    assert report.fully_mapped and report.mapped == report.counted, format_check(report)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "convnext_atto"])
def test_non_edgetpu_architectures_do_not_check_fully_mapped(name: str) -> None:
    from edgecnn.archs import create
    from edgecnn.edgetpu.check import check_keras

    report = check_keras(create(name, 10, 32))
    assert not report.fully_mapped and report.ops[report.first_fallback].suggestion


def _arch_tflite(name: str, size: int | None) -> bytes:
    """The int8 .tflite the task deploys: detectors end in the postprocess op, segmenters in logits."""
    from edgecnn.archs import create, get_arch
    from edgecnn.convert.tflite import to_tflite
    from edgecnn.core.metadata import ModelInfo
    from edgecnn.tasks import get_task

    spec = get_arch(name)
    size = size or spec.default_size
    calib = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype(np.float32)
    model = create(name, 10, size)
    info = ModelInfo(task=spec.task, extra=model.edgecnn_extra)
    return to_tflite(get_task(spec.task).export_graph(model, info), "int8", "uint8", calib)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("lenet5", 32),
        ("mobilenet_v2_035", 32),
        ("convnext_edge", 32),
        ("ssdlite_mobilenet_v2_035", 128),  # the postprocess tail runs on the CPU by design, as in Coral's SSDs
        ("unet_mobilenet_v2", 64),
    ],
)
def test_small_edgetpu_architectures_check_fully_mapped_after_int8_conversion(name: str, size: int) -> None:
    report = check_tflite(_arch_tflite(name, size))
    tail = [op.op for op in report.ops if op.note == TAIL_NOTE]
    assert report.fully_mapped and report.on_cpu == len(tail), format_check(report)
    # detectors: exactly the two DEQUANTIZE ops feeding TFLite_Detection_PostProcess, and the op itself
    assert sorted(tail) == (["DEQUANTIZE", "DEQUANTIZE", DETECTION_POSTPROCESS] if name.startswith("ssd") else [])


@pytest.mark.slow
@pytest.mark.parametrize("name", _edgetpu_archs())
def test_every_edgetpu_architecture_checks_fully_mapped_after_int8_conversion(name: str) -> None:
    report = check_tflite(_arch_tflite(name, None))
    tail = [op for op in report.ops if op.note == TAIL_NOTE]
    assert report.fully_mapped and report.on_cpu == len(tail), format_check(report)


# ------------------------------------------------------------------------------------ compiler
# Compiler output in the documented format (Coral docs; google-coral/edgetpu issues #427, #572).
PARTIAL_LOG = """Edge TPU Compiler version 15.0.340273435

Model compiled successfully in 1379 ms.

Input model: model.tflite
Input size: 4.41MiB
Output model: model_edgetpu.tflite
Output size: 5.49MiB
On-chip memory used for caching model parameters: 1.92MiB
On-chip memory remaining for caching model parameters: 1.75KiB
Off-chip memory used for streaming uncached model parameters: 3.23MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 136
Operation log: model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will \
instead run on the CPU, which is slower. If possible, consider updating your model to use only operations \
supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 135
Number of operations that will run on CPU: 1

Operator                       Count      Status

RESHAPE                        15         Mapped to Edge TPU
CONCATENATION                  3          Mapped to Edge TPU
MAX_POOL_2D                    3          Mapped to Edge TPU
ADD                            10         Mapped to Edge TPU
CONV_2D                        104        Mapped to Edge TPU
HARD_SWISH                     1          Operation not supported
"""

FULL_LOG = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 542 ms.

Input model: quantized_model.tflite
Input size: 4.04MiB
Output model: quantized_model_edgetpu.tflite
Output size: 4.13MiB
On-chip memory used for caching model parameters: 604.50KiB
On-chip memory remaining for caching model parameters: 511.50KiB
Off-chip memory used for streaming uncached model parameters: 3.45MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 50
Operation log: quantized_model_edgetpu.log
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded!
"""

ERROR_LOG = """Edge TPU Compiler version 16.0.384591198
ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'. An older version of this builtin might be \
supported. Are you using an old TFLite binary with a newer model?

ERROR: Registration failed.

Invalid model: model_full_integer_quant.tflite
Model could not be parsed
"""


def test_parse_compiler_log_with_cpu_ops() -> None:
    result = parse_compiler_log(PARTIAL_LOG)
    assert result.compiler_version == "15.0.340273435" and result.success and result.error is None
    assert (result.input_model, result.output_model) == ("model.tflite", "model_edgetpu.tflite")
    assert (result.ops_on_edgetpu, result.ops_on_cpu, result.subgraphs, result.total_ops) == (135, 1, 1, 136)
    assert result.on_chip_bytes == round(1.92 * 2**20)
    assert result.on_chip_remaining_bytes == round(1.75 * 1024)
    assert result.off_chip_bytes == round(3.23 * 2**20)
    assert [(r.op, r.count, r.status) for r in result.rows][-2:] == [
        ("CONV_2D", 104, "Mapped to Edge TPU"),
        ("HARD_SWISH", 1, "Operation not supported"),
    ]


def test_parse_compiler_log_fully_mapped_and_error() -> None:
    full = parse_compiler_log(FULL_LOG)
    assert full.success and (full.ops_on_edgetpu, full.ops_on_cpu) == (50, 0)
    assert (full.on_chip_bytes, full.on_chip_remaining_bytes) == (619008, 523776)
    error = parse_compiler_log(ERROR_LOG)
    assert not error.success and error.rows == []
    assert error.error == (
        "ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'. An older version of this builtin might be "
        "supported. Are you using an old TFLite binary with a newer model?"
    )
    assert parse_size("0.00B") == 0 and parse_size("1.5GiB") == 3 * 2**29 and parse_size("n/a") is None


def test_compile_instructions_name_the_package_and_command(tmp_path: Path) -> None:
    text = compile_instructions(tmp_path / "model_int8.tflite")
    assert "sudo apt-get update && sudo apt-get install edgetpu-compiler" in text
    assert "https://packages.cloud.google.com/apt coral-edgetpu-stable main" in text
    assert f"  edgetpu_compiler -s -o {tmp_path} {tmp_path / 'model_int8.tflite'}" in text.splitlines()
    assert f"which writes {tmp_path / 'model_int8_edgetpu.tflite'}" in text


def test_convert_for_edgetpu_without_compiler(corpus: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("EDGETPU_COMPILER", raising=False)
    assert find_compiler() is None
    out = tmp_path / "model_int8.tflite"
    report = convert_for_edgetpu(corpus["conv"].read_bytes(), out)
    assert out.read_bytes() == corpus["conv"].read_bytes()
    assert report.compiler is None and report.result is None and report.compiled is None
    assert report.check.fully_mapped and report.instructions == compile_instructions(out)
    with pytest.raises(EdgecnnError, match="^model_float.tflite is not a full-integer model; convert it with: edgecnn"):
        convert_for_edgetpu(corpus["float"], tmp_path / "model_float.tflite")
    with pytest.raises(EdgecnnError, match="^edgetpu_compiler not found; install it on Debian/Ubuntu x86_64"):
        run_compiler(out, tmp_path)


def test_convert_for_edgetpu_with_a_stand_in_compiler(corpus: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGETPU_COMPILER", str(fake_compiler(tmp_path, PARTIAL_LOG)))
    compiler = find_compiler()
    assert compiler is not None and compiler.version == "16.0.384591198"
    out = tmp_path / "model_int8.tflite"
    report = convert_for_edgetpu(corpus["conv"], out)
    assert isinstance(report.result, CompileResult) and report.result.success
    assert report.compiled == str(tmp_path / "model_int8_edgetpu.tflite")
    assert (report.result.ops_on_edgetpu, report.result.ops_on_cpu) == (135, 1)
    assert report.instructions is None and json.loads(json.dumps(report.as_dict()))["compiled"] == report.compiled


def test_real_compiler_when_installed(corpus: dict[str, Path], tmp_path: Path) -> None:
    compiler = find_compiler()
    if compiler is None or os.environ.get("EDGETPU_COMPILER"):
        pytest.skip("edgetpu_compiler not found (Coral apt package edgetpu-compiler, Debian/Ubuntu x86_64 only)")
    result = run_compiler(corpus["conv"], tmp_path, compiler)
    assert result.success and result.compiled_path and result.ops_on_cpu == 0, result


def test_check_cli_never_imports_tensorflow_for_a_tflite(corpus: dict[str, Path]) -> None:
    code = (
        "import sys, json\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'): raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgecnn.cli import main\n"
        "sys.exit(main(['check', *sys.argv[1:]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(corpus["hard_swish"]), "--edgetpu", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["fully_mapped"] is False and data["ops"][data["first_fallback"]]["op"] == "HARD_SWISH"


def test_check_cli_needs_edgetpu_flag(corpus: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    from edgecnn.cli import main

    assert main(["check", str(corpus["conv"])]) == 2
    assert capsys.readouterr().err == (
        "edgecnn check: error: nothing to check; add --edgetpu (the Coral Edge TPU check)\n"
    )
    assert main(["check", str(corpus["conv"]), "--edgetpu"]) == 0
    capsys.readouterr()
    assert main(["check", "lenet55", "--edgetpu"]) == 2
    assert capsys.readouterr().err.startswith(
        "edgecnn check: error: unknown architecture 'lenet55'; did you mean lenet5"
    )
