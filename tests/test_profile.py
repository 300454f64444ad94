"""edgecnn.insight.profile against numbers worked out by hand: LeNet-5, a ResNet basic block, a branching graph."""

from __future__ import annotations

import json

import pytest

from edgecnn.archs import create
from edgecnn.insight.profile import conv_output_size, format_profile, profile_model, tf_padding

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane


def test_conv_output_size_formula() -> None:
    assert conv_output_size(7, 3, 0, 1) == 5  # CS231n's examples: 7x7 input, 3x3 filter
    assert conv_output_size(7, 3, 0, 2) == 3
    assert conv_output_size(7, 3, 1, 1) == 7
    assert conv_output_size(32, 5, 0, 1) == 28  # LeNet c1
    assert tf_padding(224, 3, 2, "same") == 0.5  # TF pads 0 before, 1 after
    assert conv_output_size(224, 3, tf_padding(224, 3, 2, "same"), 2) == 112
    assert conv_output_size(7, 3, tf_padding(7, 3, 2, "same"), 2) == 4  # ceil(7 / 2)


def test_lenet5_by_hand() -> None:
    """32x32x1 -> c1 6@5x5 -> s2 -> c3 16@5x5 -> s4 -> 400 -> 120 -> 84 -> 10."""
    p = profile_model(create("lenet5", 10, 32, 1))
    expected = {
        # name: (output, params, MACs, receptive field, jump)
        "c1": ((28, 28, 6), 5 * 5 * 1 * 6 + 6, 28 * 28 * 25 * 1 * 6, 5, 1),  # 156, 117,600
        "s2": ((14, 14, 6), 0, 0, 5 + 1 * 1, 2),
        "c3": ((10, 10, 16), 5 * 5 * 6 * 16 + 16, 10 * 10 * 25 * 6 * 16, 6 + 4 * 2, 2),  # 2,416, 240,000
        "s4": ((5, 5, 16), 0, 0, 14 + 1 * 2, 4),
        "flatten": ((400,), 0, 0, 32, 4),  # whole input from here on
        "c5": ((120,), 400 * 120 + 120, 400 * 120, 32, 4),  # 48,120, 48,000
        "f6": ((84,), 120 * 84 + 84, 120 * 84, 32, 4),
        "predictions": ((10,), 84 * 10 + 10, 84 * 10, 32, 4),
    }
    for name, (shape, params, macs, rf, jump) in expected.items():
        row = p.layer(name)
        assert (row.output_shape, row.params, row.macs, row.receptive_field, row.jump) == (
            shape,
            params,
            macs,
            (rf, rf),
            (jump, jump),
        ), name
    assert (p.layer("c1").params, p.layer("c1").macs, p.layer("c3").macs) == (156, 117_600, 240_000)
    assert p.total_params == 61_706
    assert p.total_macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert "whole input" in p.layer("flatten").note
    # a chain: the peak is the largest input + output, c1 -> c1_act: 2 x 28*28*6 floats
    assert p.peak_activation_bytes == 2 * 4704 * 4 and p.peak_layer == "c1_act"
    assert profile_model(create("lenet5", 10, 32, 1), bytes_per_element=1).peak_activation_bytes == 2 * 4704
    # weight sharing: a dense layer from 32*32*1 to 28*28*6 (+ bias), and from 14*14*6 to 10*10*16
    assert p.dense_equivalent_params == (1024 * 4704 + 4704) + (1176 * 1600 + 1600) == 6_704_800
    assert p.conv_params == 156 + 2416


def _basic_block() -> object:
    """ResNet basic block on 8x8x16: conv3x3 BN ReLU conv3x3 BN + identity."""
    from edgecnn.core.keras_env import keras

    layers = keras.layers
    inputs = keras.Input((8, 8, 16), name="x")
    y = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
    y = layers.BatchNormalization(name="bn1")(y)
    y = layers.ReLU(name="relu1")(y)
    y = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv2")(y)
    y = layers.BatchNormalization(name="bn2")(y)
    y = layers.Add(name="add")([inputs, y])
    return keras.Model(inputs, y, name="basic_block")


def test_resnet_basic_block_by_hand() -> None:
    model = _basic_block()
    p = profile_model(model)
    conv = 3 * 3 * 16 * 16  # 2,304 weights, no bias
    assert p.layer("conv1").params == p.layer("conv2").params == conv
    assert p.layer("bn1").params == 4 * 16  # gamma, beta, moving mean, moving variance
    assert p.total_params == 2 * (conv + 64) == model.count_params() == 4736
    assert p.layer("conv1").macs == 8 * 8 * 3 * 3 * 16 * 16 == 147_456
    assert p.total_macs == 2 * 147_456  # BN, ReLU and Add count 0
    assert p.layer("conv1").receptive_field == (3, 3)
    assert p.layer("conv2").receptive_field == (5, 5)
    assert p.layer("add").receptive_field == (5, 5)  # max over the identity (1) and the branch (5)
    assert p.layer("add").jump == (1, 1)
    # the input stays alive until the Add: three 8*8*16 tensors at once from bn1 on
    assert p.peak_activation_bytes == 3 * 1024 * 4


def test_peak_memory_of_a_branching_graph() -> None:
    """x 4x4x2 -> a 1x1 conv (4) -> b 1x1 (16) -> c 1x1 (4) -> a + c: a stays alive across b and c."""
    from edgecnn.core.keras_env import keras

    layers = keras.layers
    x = keras.Input((4, 4, 2), name="x")  # 32 elements
    a = layers.Conv2D(4, 1, name="a")(x)  # 64
    b = layers.Conv2D(16, 1, name="b")(a)  # 256
    c = layers.Conv2D(4, 1, name="c")(b)  # 64
    out = layers.Add(name="out")([a, c])  # 64
    p = profile_model(keras.Model(x, out), bytes_per_element=1)
    # step a: x + a = 96; b: a + b = 320; c: a + b + c = 384; out: a + c + out = 192
    assert p.peak_activation_bytes == 384
    assert p.peak_layer == "c"
    naive = max(64 + 256, 256 + 64, 32 + 64, 2 * 64 + 64)  # largest inputs + output of one layer
    assert naive == 320 < p.peak_activation_bytes


def test_mac_and_field_rules_per_layer_type() -> None:
    from edgecnn.core.keras_env import keras

    layers = keras.layers
    x = keras.Input((8, 8, 4))
    y = layers.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, name="sep")(x)
    y = layers.Conv2D(8, 3, dilation_rate=2, padding="same", name="dilated")(y)
    y = layers.Conv2D(8, 3, groups=4, padding="same", name="grouped")(y)
    y = layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(y)
    y = layers.Dense(6, name="pointwise_dense")(y)
    y = layers.DepthwiseConv2D(3, strides=2, depth_multiplier=3, padding="same", name="dw")(y)
    p = profile_model(keras.Model(x, y))
    rows = {r.name: (r.macs, r.receptive_field[0], r.jump[0]) for r in p.layers}
    assert rows["sep"] == (64 * (9 * 4 * 2 + 4 * 2 * 8), 3, 1)  # depthwise + pointwise
    assert rows["dilated"] == (64 * 9 * 8 * 8, 3 + (2 * 2 + 1 - 1), 1)  # effective kernel 5
    assert rows["grouped"] == (64 * 9 * (8 // 4) * 8, 7 + 2, 1)
    assert rows["up"] == (64 * 9 * 8 * 4, 9 + 1, 0.5)  # H_in*W_in*k*k*C_in*C_out; 2 inputs per output
    assert rows["pointwise_dense"] == (16 * 16 * 4 * 6, 10, 0.5)  # per position
    assert rows["dw"] == (8 * 8 * 9 * 6 * 3, 10 + 2 * 0.5, 1)
    assert p.total_params == keras.Model(x, y).count_params()


def test_nested_models_are_walked_into() -> None:
    from edgecnn.core.keras_env import keras

    layers = keras.layers
    inner = keras.Sequential([layers.Conv2D(4, 3, name="conv"), layers.ReLU(name="relu")], name="inner")
    x = keras.Input((8, 8, 2))
    y = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D(name="pool")(inner(x)))
    model = keras.Model(x, y)
    p = profile_model(model)
    assert [r.name for r in p.layers][1:] == ["inner/conv", "inner/relu", "pool", "head"]
    assert p.layer("inner/conv").macs == 6 * 6 * 9 * 2 * 4
    assert p.total_params == model.count_params() == (3 * 3 * 2 * 4 + 4) + (4 * 3 + 3)
    assert p.layer("pool").receptive_field == (8, 8)


def test_mobilenet_v2_shapes_follow_the_formula() -> None:
    """floor((W - F + 2P) / S) + 1 gives every conv and pool output of MobileNetV2 at 224."""
    model = create("mobilenet_v2", 1000, 224, 3)
    p = profile_model(model)
    checked = 0
    for layer in model.layers:
        window = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if window is None:
            continue
        (_, h, w, _), (_, out_h, out_w, _) = layer.input_shape, layer.output_shape
        dilation = getattr(layer, "dilation_rate", (1, 1))
        for size, out, f, s, d in zip((h, w), (out_h, out_w), window, layer.strides, dilation, strict=True):
            f_eff = d * (f - 1) + 1
            assert conv_output_size(size, f_eff, tf_padding(size, f_eff, s, layer.padding), s) == out, layer.name
        assert p.layer(layer.name).output_shape == layer.output_shape[1:]
        checked += 1
    assert checked == 52  # stem + 17 depthwise + 16 expand + 17 project + Conv_1
    assert p.total_params == model.count_params() == 3_538_984
    assert p.layer("Conv1").macs == 112 * 112 * 3 * 3 * 3 * 32
    assert p.total_macs == pytest.approx(300e6, rel=0.01)  # the paper's 300M multiply-adds
    assert p.layer("Conv1").receptive_field == (3, 3) and p.layer("out_relu").jump == (32, 32)


def test_text_and_json() -> None:
    p = profile_model(create("lenet5", 10, 32, 1))
    text = format_profile(p)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["layer", "type", "output"]
    assert any(line.startswith("c1 ") and "117,600" in line for line in lines)
    assert "61,706" in text and "37,632 bytes" in text
    data = json.loads(json.dumps(p.as_dict()))
    assert data["total_params"] == 61_706
    assert data["layers"][2]["output_shape"] == [28, 28, 6]
