"""``edgecnn convert --onnx``: Keras vs ONNX Runtime parity (registry classifiers, the detector with its
decoding and NMS, the segmenter's logits), int8 QDQ accuracy on digits, the record in ``metadata_props``,
--opset, and the flags' one-line errors.

The registry classifiers are untrained (seeded; BatchNorm given the statistics of real digits, so
activations have realistic ranges): float parity is a property of the conversion, not of training.
CI runs a representative set (:data:`CI_MEMBERS`: pooling + dense, depthwise + ReLU6 + inverted residuals,
hard-swish + squeeze-excite, LayerNorm + exact GELU, which needed a converter handler); every other registry
member runs with ``-m slow`` (building all 32 at 32x32 takes minutes here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'edgecnn[onnx]'")
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'edgecnn[onnx]'")

from edgecnn.archs import create, list_archs  # noqa: E402
from edgecnn.cli import main  # noqa: E402
from edgecnn.core.metadata import METADATA_NAME, ModelInfo  # noqa: E402
from edgecnn.trainer.fit import set_bn_statistics  # noqa: E402

SIZE = 32
CI_MEMBERS = ("lenet5", "mobilenet_v2_035", "mobilenet_v3_small_075", "convnext_atto")
TOLERANCE = 1e-4
# ResNet-50 (slow set): 1.8e-4 from Keras, while TensorFlow disagrees with itself by 2.4e-4 on the same inputs
# (TF_ENABLE_ONEDNN_OPTS=1 against 0, measured): 50 float32 layers, logits up to 17. Not a conversion error.
TOLERANCES = {"resnet50": 3e-4}
# The U-Net's per-pixel softmax over 30+ float layers: 1.08e-4 on an AVX2 EPYC (TensorFlow's own kernels differ
# by as much between CPUs), the ResNet-50 bound applies.
SEGMENTER_TOLERANCE = 3e-4


def members() -> list:
    return [n if n in CI_MEMBERS else pytest.param(n, marks=pytest.mark.slow) for n in list_archs("classify")]


def export(model, info: ModelInfo, path: Path):
    """Convert to .onnx as ``convert --onnx`` does (the one export path, row onnx-float32) and open it with ONNX
    Runtime."""
    from edgecnn.convert.export import export as export_model
    from edgecnn.runtime.onnx import OnnxModel
    from edgecnn.tasks import get_task

    path.write_bytes(export_model(model, get_task(info.task), info, "onnx-float32").blob)
    return OnnxModel(path, threads=2)


@pytest.fixture(scope="module")
def digits_rgb() -> np.ndarray:
    from edgecnn.data import load_split

    return load_split("digits", "classify", SIZE, channels=3).val.x[:24]


def test_ci_members_are_registered() -> None:
    assert set(CI_MEMBERS) <= set(list_archs("classify"))


@pytest.mark.parametrize("name", members())
def test_registry_classifier_matches_keras(name: str, digits_rgb: np.ndarray, tmp_path: Path) -> None:
    from edgecnn.core.keras_env import keras

    keras.utils.set_random_seed(0)
    model = create(name, 10, SIZE, 3)
    set_bn_statistics(model, digits_rgb[:16])
    info = ModelInfo(labels=[str(i) for i in range(10)], input_size=[SIZE, SIZE], channels=3, arch=name)
    runner = export(model, info, tmp_path / f"{name}.onnx")
    assert runner.input_shape == (1, SIZE, SIZE, 3) and runner.input["dtype"] == np.float32
    test = digits_rgb[16:]
    keras_probs = model(test.astype(np.float32), training=False).numpy()
    onnx_probs = runner.predict(test)
    error = float(np.abs(onnx_probs - keras_probs).max())
    print(f"{name}: max |Keras - ONNX| {error:.2e}")
    assert error <= TOLERANCES.get(name, TOLERANCE), error


@pytest.fixture(scope="module")
def shapes_val() -> object:
    from edgecnn.data import load_split

    return load_split("shapes", "detect", 96, None, 0, 0.2).val


def test_detector_with_its_decoding_matches_keras(shapes_val, tmp_path: Path) -> None:
    """The .onnx's boxes, classes, scores and count against the Keras model through edgecnn's numpy copy of
    TFLite_Detection_PostProcess (decode, each anchor's best class, one NMS, at most 25)."""
    from edgecnn.core.keras_env import keras
    from edgecnn.detection.anchors import generate_anchors
    from edgecnn.detection.nms import DEFAULT_NMS, postprocess
    from edgecnn.detection.postprocess import plain
    from edgecnn.runtime.detect import read_detections

    keras.utils.set_random_seed(0)
    model = create("ssdlite_mobilenet_v2_035", 3, 96, 3)
    set_bn_statistics(model, shapes_val.x[:16])
    rng = np.random.default_rng(0)
    for layer in model.layers:  # untrained class heads sit at the focal-loss prior (p = 0.01, below NMS's
        if layer.name.startswith("class_head_") and layer.name.endswith("_conv"):  # 0.05 floor): spread them
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(-3.0, 1.0, bias.shape).astype(np.float32)])
    extra = plain(model.edgecnn_extra)
    info = ModelInfo(task="detect", labels=list(shapes_val.labels), input_size=[96, 96], channels=3, extra=extra)
    runner = export(model, info, tmp_path / "detector.onnx")
    assert [d["name"] for d in runner.outputs] == [
        "detection_boxes",
        "detection_classes",
        "detection_scores",
        "num_detections",
    ]
    assert [list(d["shape"]) for d in runner.outputs] == [[1, 25, 4], [1, 25], [1, 25], [1]]
    anchors, scale = generate_anchors(extra["anchors"]), extra["box_scale"]
    images = shapes_val.x[16:24]
    encodings, scores = model.predict(images.astype(np.float32), verbose=0)
    found = 0
    for image, e, s in zip(images, encodings, scores, strict=True):
        boxes, classes, best = postprocess(e, s, anchors, scale, DEFAULT_NMS)
        runner.set_input(image)
        runner.invoke()
        got_boxes, got_classes, got_scores, count = read_detections(runner)  # the adapter reads the order
        assert count == len(boxes)
        for box, cls, score in zip(boxes, classes, best, strict=True):  # each Keras detection, in any row
            same = (np.abs(got_boxes[:count] - box).max(1) <= TOLERANCE) & (got_classes[:count] == cls)
            assert same.any() and abs(float(got_scores[:count][same][0]) - float(score)) <= TOLERANCE
        assert not got_boxes[count:].any() and not got_scores[count:].any()  # rows after the count are zero
        found += count
    assert found >= 8 * 10


def test_segmenter_matches_keras(tmp_path: Path) -> None:
    """The .onnx ends in the logits (as the .tflite: same argmax, no per-pixel softmax): their softmax against
    the Keras model's own output, the per-pixel probabilities."""
    from edgecnn.core.keras_env import keras
    from edgecnn.data import load_split

    val = load_split("shapes-seg", "segment", 64, None, 0, 0.2).val
    keras.utils.set_random_seed(0)
    model = create("unet_mobilenet_v2", len(val.labels), 64, 3)
    set_bn_statistics(model, val.x[:16])
    info = ModelInfo(task="segment", labels=list(val.labels), input_size=[64, 64], channels=3)
    runner = export(model, info, tmp_path / "segmenter.onnx")
    images = val.x[16:22]
    probs = model(images.astype(np.float32), training=False).numpy()
    logits = runner.predict(images)
    assert logits.shape == (6, 64, 64, len(val.labels))
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    assert float(np.abs(exp / exp.sum(-1, keepdims=True) - probs).max()) <= SEGMENTER_TOLERANCE
    top2 = np.sort(probs, -1)[..., -2:]
    clear = (top2[..., 1] - top2[..., 0]) > 2 * SEGMENTER_TOLERANCE  # an untrained model has near-ties
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(logits.argmax(-1)[clear], probs.argmax(-1)[clear])


def convert_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["convert", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_int8_onnx_on_digits_is_within_a_point_of_keras(digits_run: Path, capsys) -> None:
    out = digits_run.parent / "lenet5_int8_cli.onnx"
    rc, stdout, _ = convert_cli(capsys, str(digits_run), "--onnx", "--int8", "-o", str(out), "--json")
    report = json.loads(stdout)
    a = report["accuracy"]
    print(f"digits LeNet-5: keras {a['keras']:.4f}, int8 onnx {a['onnx']:.4f} ({a['delta_points']:+.2f} points)")
    assert rc == 0 and report["format"] == "onnx int8" and a["images"] == 359 and a["split"] == "val"
    assert abs(a["delta_points"]) <= 1.0 and a["top1_agreement"] >= 0.98
    assert report["calibration"] == "200 images from the run's validation images"
    assert report["inputs"][0] == {
        "name": "pixels",
        "shape": [1, 32, 32, 1],
        "dtype": "float32",
        "scale": 0.0,
        "zero_point": 0,
    }
    assert report["ops"]["QuantizeLinear"] > 0 and report["ops"]["DequantizeLinear"] > 0
    proto = onnx.load(str(out))
    weights = {i.name: i for i in proto.graph.initializer}
    conv_scales = [  # the scale of each weight's DequantizeLinear: one per output channel
        onnx.numpy_helper.to_array(weights[n.input[1]])
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear"
        and weights.get(n.input[0]) is not None
        and weights[n.input[0]].data_type == onnx.TensorProto.INT8
    ]
    assert conv_scales and all(s.size > 1 for s in conv_scales)  # per-channel int8 weights
    record = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_NAME))
    assert record["quantization"] == "int8" and record["labels"] == [str(i) for i in range(10)]


def test_float_onnx_flags_and_record(digits_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "lenet5.onnx"
    rc, stdout, _ = convert_cli(capsys, str(digits_run), "--onnx", "--opset", "13", "-o", str(out), "--no-eval")
    assert rc == 0 and stdout.startswith(f"wrote {out} (onnx float32, ")
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [13]
    record = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_NAME))
    assert (record["task"], record["input_size"], record["channels"], record["pixel_format"]) == (
        "classify",
        [32, 32],
        1,
        "gray",
    )
    assert (
        record["data"]["spec"] == "digits"
        and record["quantization"] == "float32"
        and record["extra"]["io"] == "float32"
    )
    assert [i.name for i in proto.graph.input] == ["pixels"] and [o.name for o in proto.graph.output] == [
        "probabilities"
    ]
    default = tmp_path / "run"  # without -o: beside the model, named by format
    default.mkdir()
    (default / "model.keras").write_bytes((digits_run / "model.keras").read_bytes())
    assert convert_cli(capsys, str(default), "--onnx", "--no-eval")[0] == 0
    proto = onnx.load(str(default / "model_float32.onnx"))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]  # the default opset


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--onnx", "--float16"], "--onnx exports float32 or int8 (--onnx, or --onnx --int8); drop --float16"),
        (["--onnx", "--int8", "--io", "uint8"], "--io uint8 does not apply to --onnx"),
        (["--onnx", "--int8", "--all-int8"], "--all-int8 applies to .tflite models"),
        (["--onnx", "--int8", "--float-layers", "conv1"], "--float-layers applies to .tflite models"),
        (["--opset", "14"], "--opset 14 sets the ONNX opset; add --onnx"),
        (["--onnx", "-o", "{tmp}/x.tflite"], "must end in .onnx"),
    ],
)
def test_onnx_flag_errors(flags: list[str], message: str, digits_run: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = convert_cli(capsys, str(digits_run), *[f.format(tmp=tmp_path) for f in flags])
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_opset_out_of_range_is_refused(digits_run: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(digits_run), "--onnx", "--opset", "12"])
    assert exit_info.value.code == 2 and "--opset: 12 is not allowed; use 13..18" in capsys.readouterr().err
