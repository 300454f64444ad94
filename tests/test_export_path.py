"""The one export path (:func:`edgecnn.convert.export.export`): every caller writes the same file for the same
request, ``--float-layers`` works for every task, the int16x8 row is one row, and what depends on the task is
asked of the Task object. Small untrained models with real BatchNorm statistics keep it fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecnn.archs import create
from edgecnn.cli import main
from edgecnn.core.metadata import ModelInfo
from edgecnn.runtime.interpreter import TFLiteModel
from edgecnn.trainer.fit import set_bn_statistics

pytestmark = pytest.mark.tf  # builds and converts Keras models

CALIB = 24  # calibration images: enough for stable ranges, few enough to stay fast


def _digits() -> Any:
    from edgecnn.data import load_split

    return load_split("digits", "classify", 32, None, 0, 0.2)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An untrained LeNet-5 (two average pools, a softmax: what the int8 recipe rewrites and keeps float) with
    the BatchNorm statistics of digits, saved with its record."""
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras

    split = _digits()
    keras.utils.set_random_seed(0)
    model = create("lenet5", 10, 32, 1)
    set_bn_statistics(model, split.train.x[:64])
    labels = list(split.train.labels)
    info = ModelInfo(labels=labels, input_size=[32, 32], channels=1, pixel_format="gray", arch="lenet5")
    path = save_keras(model, tmp_path_factory.mktemp("lenet") / "model.keras", info)
    return {"model": model, "info": info, "path": path, "split": split, "calib": split.train.x[:CALIB]}


def _same_calibration(monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> None:
    """``convert`` calibrates on exactly ``images`` (as ``optimize`` does below)."""
    import edgecnn.pipelines.convert as convert_pipeline

    monkeypatch.setattr(convert_pipeline, "calibration_images", lambda *a, **k: (images, "the test's images"))


def _tensors(path: Path) -> list[tuple[str, str, tuple[float, ...], tuple[int, ...]]]:
    """Every tensor of a .tflite in index order: name, dtype, scales, zero points."""
    details = TFLiteModel(path, delegate="none").interpreter.get_tensor_details()
    return [
        (
            d["name"],
            np.dtype(d["dtype"]).name,
            tuple(np.round(d["quantization_parameters"]["scales"], 9).tolist()),
            tuple(d["quantization_parameters"]["zero_points"].tolist()),
        )
        for d in details
    ]


def _ops(path: Path) -> list[str]:
    return [op["op_name"] for op in TFLiteModel(path, delegate="none").interpreter._get_ops_details()]


def test_optimize_int8_is_convert_int8(lenet: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """optimize's int8 file and ``convert --int8`` of the same model, calibrated on the same images: the same op
    list (average pools rewritten, softmax kept float for XNNPACK) and the same quantization of every tensor."""
    from edgecnn.pipelines.convert import ConvertOptions, convert
    from edgecnn.pipelines.optimize import Context, OptimizeConfig, measure
    from edgecnn.tasks import get_task

    _same_calibration(monkeypatch, lenet["calib"])
    converted = Path(convert(lenet["path"], tmp_path / "c_int8.tflite", ConvertOptions(evaluate=False)).output)
    train = type("Train", (), {"x": lenet["calib"], "__len__": lambda self: len(lenet["calib"])})()
    val = lenet["split"].val
    ctx = Context(OptimizeConfig(seed=0, bench_runs=2), lenet["info"], get_task("classify"), train, val, 1)
    optimized = Path(measure("ptq_int8", lenet["model"], ctx, tmp_path).path)

    ops = _ops(converted)
    assert _ops(optimized) == ops
    assert "AVERAGE_POOL_2D" not in ops and ops.count("DEPTHWISE_CONV_2D") == 2  # the exact rewrite
    assert _tensors(optimized) == _tensors(converted)
    all_int8 = tmp_path / "all_int8.tflite"  # what optimize wrote before: not the same recipe
    convert(lenet["path"], all_int8, ConvertOptions(all_int8=True, evaluate=False))
    assert _ops(all_int8).count("AVERAGE_POOL_2D") == 2


def _float_layer_ops(path: Path, model: Any, layers: tuple[str, ...]) -> dict[str, str]:
    """The output dtype of every op computing one of ``layers`` (by the converter's tensor names)."""
    from edgecnn.convert.nodes import keras_layers, layer_names

    known = layer_names(model)
    interpreter = TFLiteModel(path, delegate="none").interpreter
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    found = {}
    for op in interpreter._get_ops_details():
        if not len(op["outputs"]):
            continue
        out = tensors[int(op["outputs"][0])]
        if set(keras_layers(out["name"], known)) & set(layers):
            found[out["name"]] = np.dtype(out["dtype"]).name
    return found


def _convert_float_layers(path: Path, out: Path, layers: tuple[str, ...]) -> dict[str, Any]:
    from edgecnn.pipelines.convert import ConvertOptions, convert

    report = convert(path, out, ConvertOptions(format="int8", float_layers=layers, evaluate=False))
    assert report.float_layers == list(layers) and report.float_ops  # the report names what stayed float
    return report.as_dict()


def _light_benchmark(path: Path) -> None:
    """The file loads and runs in the light runtime (TensorFlow blocked)."""
    from conftest import run_light_cli

    done = run_light_cli("benchmark", str(path), "--runs", "2", "--warmup", "1")
    assert done.returncode == 0 and "LEAKED []" in done.stdout, done.stdout + done.stderr


def test_float_layers_on_a_classifier(lenet: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _same_calibration(monkeypatch, lenet["calib"])
    out = tmp_path / "mixed.tflite"
    _convert_float_layers(lenet["path"], out, ("c1", "c3"))
    kept = _float_layer_ops(out, lenet["model"], ("c1", "c3"))
    assert len(kept) == 2 and set(kept.values()) == {"float32"}, kept
    images = lenet["split"].val.x[:64]
    keras_top1 = lenet["model"].predict(images.astype(np.float32), verbose=0).argmax(1)
    tflite_top1 = TFLiteModel(out).predict(images).argmax(1)
    assert (keras_top1 == tflite_top1).mean() >= 0.9
    _light_benchmark(out)


@pytest.fixture(scope="module")
def shapes_detect() -> Any:
    from edgecnn.data import load_split

    return load_split("shapes", "detect", 96, None, 0, 0.2)


def test_float_layers_on_a_detector(shapes_detect: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector keeps its custom postprocess op and its four float outputs with layers kept float."""
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.detection.postprocess import plain
    from edgecnn.runtime.detect import read_detections

    keras.utils.set_random_seed(0)
    model = create("ssdlite_mobilenet_v2_035", len(shapes_detect.train.labels), 96, 3)
    set_bn_statistics(model, shapes_detect.train.x[:16])
    extra = plain(model.edgecnn_extra)
    labels = list(shapes_detect.train.labels)
    info = ModelInfo(task="detect", labels=labels, input_size=[96, 96], channels=3, extra=extra)
    path = save_keras(model, tmp_path / "model.keras", info)
    _same_calibration(monkeypatch, shapes_detect.train.x[:CALIB])
    out = tmp_path / "mixed.tflite"
    layers = ("Conv1", "class_head_0_depthwise")
    report = _convert_float_layers(path, out, layers)
    assert [o["dtype"] for o in report["outputs"]] == ["float32"] * 4
    assert report["ops"].get("TFLite_Detection_PostProcess") == 1
    kept = _float_layer_ops(out, model, layers)
    assert len(kept) >= 2 and set(kept.values()) == {"float32"}, kept
    runner = TFLiteModel(out)
    runner.set_input(shapes_detect.val.x[0])
    runner.invoke()
    boxes, classes, scores, count = read_detections(runner)
    assert boxes.shape[1] == 4 and 0 <= count <= len(scores)
    _light_benchmark(out)


def test_float_layers_on_a_segmenter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.data import load_split

    split = load_split("shapes-seg", "segment", 64, None, 0, 0.2)
    keras.utils.set_random_seed(0)
    labels = list(split.train.labels)
    model = create("unet_mobilenet_v2", len(labels), 64, 3)
    set_bn_statistics(model, split.train.x[:16])
    info = ModelInfo(task="segment", labels=labels, input_size=[64, 64], channels=3)
    path = save_keras(model, tmp_path / "model.keras", info)
    _same_calibration(monkeypatch, split.train.x[:CALIB])
    out = tmp_path / "mixed.tflite"
    layers = ("Conv1", "decoder_s16_dw")
    report = _convert_float_layers(path, out, layers)
    assert report["outputs"][0]["shape"] == [1, 64, 64, len(labels)]
    kept = _float_layer_ops(out, model, layers)
    assert len(kept) >= 2 and set(kept.values()) == {"float32"}, kept
    images = split.val.x[:4]
    logits = TFLiteModel(out).predict(images)  # untrained: its argmax says nothing, its shape does
    assert logits.shape == (4, 64, 64, len(labels)) and np.isfinite(logits).all()
    _light_benchmark(out)


def test_int16x8_row(lenet: dict, tmp_path: Path) -> None:
    """int16 activations, int8 weights, float32 I/O; the output within 1% of Keras's probabilities."""
    from edgecnn.convert.export import export
    from edgecnn.tasks import get_task

    exported = export(lenet["model"], get_task("classify"), lenet["info"], "int16x8", None, lenet["calib"])
    path = tmp_path / "m_int16x8.tflite"
    path.write_bytes(exported.blob)
    runner = TFLiteModel(path, delegate="none")
    assert runner.input["dtype"] == np.float32 and exported.record.quantization == "int16x8"
    interpreter = runner.interpreter
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    conv = [op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert len(conv) == 2
    for op in conv:
        data, weights = (tensors[int(i)] for i in op["inputs"][:2])
        assert data["dtype"] == np.int16 and weights["dtype"] == np.int8
        assert tensors[int(op["outputs"][0])]["dtype"] == np.int16
    images = lenet["split"].val.x[:32]
    keras_probs = lenet["model"].predict(images.astype(np.float32), verbose=0)
    assert float(np.abs(runner.predict(images) - keras_probs).max()) <= 0.01


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--int16x8", "--io", "uint8"], "--io uint8 does not apply to int16x8; int16x8 keeps float32 input"),
        (["--float16", "--float-layers", "c1"], "it does not apply to float16: use --int8"),
        (["--int8", "--all-int8", "--float-layers", "c1"], "use one of them"),
    ],
)
def test_rows_refuse_what_they_cannot_do(lenet: dict, tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    assert main(["convert", str(lenet["path"]), *flags, "-o", str(tmp_path / "x.tflite")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_task_pieces_come_from_the_task_object(lenet: dict, tmp_path: Path) -> None:
    """A Task subclass's graph, ONNX function and metadata outputs are what export uses; a task named
    'detect' that does not override them exports no detection decoding (nothing is looked up by name)."""
    from edgecnn.convert.export import export
    from edgecnn.convert.onnx import plain_function
    from edgecnn.convert.tflite_metadata import classify_outputs
    from edgecnn.core.graph import keras_graph
    from edgecnn.core.keras_env import keras
    from edgecnn.tasks.classify import ClassifyTask

    asked: list[str] = []

    class Doubled(ClassifyTask):
        name = "detect"  # the name of a task with its own decoding: must not matter

        def export_graph(self, model: Any, info: ModelInfo) -> Any:
            asked.append("graph")
            inputs = keras.Input(model.input_shape[1:], batch_size=1)
            return keras_graph(keras.Model(inputs, 2.0 * model(inputs)))

        def onnx_function(self, model: Any, info: ModelInfo) -> Any:
            asked.append("onnx")
            return plain_function(model, "fake_scores")

        def metadata_outputs(self, flatbuffer: Any) -> Any:
            asked.append("metadata")
            return classify_outputs(flatbuffer)

    task, info = Doubled(), lenet["info"]
    path = tmp_path / "doubled.tflite"
    path.write_bytes(export(lenet["model"], task, info, "float32").blob)
    images = lenet["split"].val.x[:8]
    keras_probs = lenet["model"].predict(images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(TFLiteModel(path).predict(images), 2.0 * keras_probs, atol=1e-5)
    pytest.importorskip("tf2onnx")
    import onnx

    proto = onnx.load_model_from_string(export(lenet["model"], task, info, "onnx-float32").blob)
    assert [o.name for o in proto.graph.output] == ["fake_scores"]
    assert asked == ["graph", "metadata", "onnx"]
