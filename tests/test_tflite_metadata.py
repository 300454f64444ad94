"""Standard TFLite metadata (TFLITE_METADATA) beside edgecnn's record in every converted .tflite.

Always: the structure of what ``edgecnn convert`` writes for the three tasks, read back field by field
(edgecnn's bounds-checked flatbuffer reader, indices of ``metadata_schema.fbs``), the labels packed as
``labels.txt``, and edgecnn's own record still read. Where MediaPipe is installed in its own venv
(``MEDIAPIPE_PYTHON``; it cannot share edgecnn's): MediaPipe's displayer reads our metadata exactly as it
reads what MediaPipe's own writers write for the same model, and MediaPipe Tasks (ImageClassifier,
ObjectDetector, ImageSegmenter) run our float32 and int8 models with the labels named and results equal to
edgecnn's own adapters'.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgecnn.convert.tflite_metadata import AXIS_LABELS, BOUNDING_BOX, FEATURE, GRAYSCALE, IMAGE, RGB, VALUE_LABELS
from edgecnn.core.metadata import I8, I32, U8, FlatTable, ModelInfo, read_tflite_info, read_tflite_metadata

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane

HERE = Path(__file__).resolve().parent
DIGITS = [str(i) for i in range(10)]


# ------------------------------------------------------------------------------- reading it back
def standard(path: Path) -> FlatTable:
    raw = read_tflite_metadata(path)["TFLITE_METADATA"]
    assert raw[4:8] == b"M001"  # the metadata schema's file identifier
    return FlatTable.root(raw)


def tensor(t: FlatTable) -> dict:
    """A TensorMetadata as a dict of what these tests check."""
    content = t.table(3)
    out = {"name": t.string(0), "type": content.scalar(0, U8)}
    props = content.table(1)
    if out["type"] == IMAGE:
        out["colour"] = props.scalar(0, I8)
    if out["type"] == BOUNDING_BOX:
        out["index"], out["box"] = props.numbers(0, "I"), props.scalar(1, I8)
    if content.has(2):
        out["range"] = (content.table(2).scalar(0, I32), content.table(2).scalar(1, I32))
    if t.has(4):
        unit = t.item(4, 0)
        out["normalization"] = (unit.scalar(0, U8), unit.table(1).numbers(0, "f"), unit.table(1).numbers(1, "f"))
    if t.has(5):
        out["stats"] = (t.table(5).numbers(1, "f"), t.table(5).numbers(0, "f"))  # (min, max)
    if t.has(6):
        out["files"] = [(f.string(0), f.scalar(2, I8)) for f in t.tables(6)]
    return out


def read(path: Path) -> dict:
    root = standard(path)
    graph = root.item(3, 0)
    return {
        "name": root.string(0),
        "author": root.string(4),
        "version": root.string(7),
        "inputs": [tensor(t) for t in graph.tables(2)],
        "outputs": [tensor(t) for t in graph.tables(3)],
        "groups": [(g.string(0), _strings(g, 1)) for g in graph.tables(8)],
        "custom": [(c.string(0), bytes(c.array(1, "u1"))) for c in graph.tables(9)],
    }


def _strings(table: FlatTable, index: int) -> list[str]:
    """A vector of strings: each element an offset to a length-prefixed string."""
    start, length = table.span(index, 4)
    found = []
    for at in range(start, start + 4 * length, 4):
        target = at + int.from_bytes(table.buf[at : at + 4], "little")
        size = int.from_bytes(table.buf[target : target + 4], "little")
        found.append(table.buf[target + 4 : target + 4 + size].decode())
    return found


IMAGE_INPUT = {"name": "image", "type": IMAGE, "normalization": (1, (0.0,), (1.0,)), "stats": ((0.0,), (255.0,))}


@pytest.mark.parametrize(("fmt", "score_max"), [("float32", 1.0), ("int8", 255.0)])
def test_digits_models_carry_both_records(digits_run: Path, fmt: str, score_max: float) -> None:
    from edgecnn.runtime import TFLiteModel

    path = digits_run / f"model_{fmt}.tflite"
    assert {"edgecnn", "TFLITE_METADATA"} <= set(read_tflite_metadata(path))
    assert read_tflite_info(path).labels == DIGITS  # edgecnn's own record, read as before
    with zipfile.ZipFile(path) as packed:  # the labels file, packed after the flatbuffer
        assert packed.namelist() == ["labels.txt"] and packed.read("labels.txt").decode().split("\n") == DIGITS
    meta = read(path)
    assert (meta["name"], meta["version"]) == ("ImageClassifier", "1.0.0") and meta["author"].startswith("edgecnn ")
    assert meta["inputs"] == [{**IMAGE_INPUT, "colour": GRAYSCALE}]  # LeNet-5 on digits takes gray pixels 0..255
    assert meta["outputs"] == [
        {"name": "score", "type": FEATURE, "stats": ((0.0,), (score_max,)), "files": [("labels.txt", AXIS_LABELS)]}
    ]
    assert TFLiteModel(path).predict(np.zeros((1, 32, 32, 1), np.uint8)).shape == (1, 10)  # still loads and runs


def spread_class_heads(model) -> None:
    """An untrained detector's class heads sit at the focal-loss prior (p = 0.01, under NMS's 0.05 floor):
    seeded random biases let boxes through, so both sides have detections to compare."""
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.startswith("class_head_") and layer.name.endswith("_conv"):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(-3.0, 1.0, bias.shape).astype(np.float32)])


@pytest.fixture(scope="module")
def task_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A seeded untrained detector and segmenter on the shapes data at 64x64, saved with their records and
    converted by ``edgecnn convert`` (float32); int8 on demand (``convert_to``)."""
    from edgecnn.archs import create
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.data import load_split
    from edgecnn.detection.postprocess import plain

    folder = tmp_path_factory.mktemp("tasks")
    found = {}
    for task, arch, data in (
        ("detect", "ssdlite_mobilenet_v2_035", "shapes"),
        ("segment", "unet_mobilenet_v2", "shapes-seg"),
    ):
        val = load_split(data, task, 64, None, 0, 0.2).val
        keras.utils.set_random_seed(0)
        model = create(arch, len(val.labels), 64, 3)
        if task == "detect":
            spread_class_heads(model)
        info = ModelInfo(
            task=task,
            labels=list(val.labels),
            input_size=[64, 64],
            channels=3,
            arch=arch,
            extra=plain(getattr(model, "edgecnn_extra", {})),
        )
        keras_path = save_keras(model, folder / f"{task}.keras", info)
        found[task] = {"keras": keras_path, "images": val.x[:6], "float32": convert_to(keras_path, "float32")}
    return found


def convert_to(keras_path: Path, fmt: str) -> Path:
    from edgecnn.pipelines.convert import ConvertOptions, convert

    data = "shapes" if "detect" in keras_path.stem else "shapes-seg"
    return Path(
        convert(keras_path, None, ConvertOptions(format=fmt, calib=data, calib_samples=32, evaluate=False)).output
    )


def test_detector_outputs_are_described_in_their_order(task_models: dict) -> None:
    from edgecnn.runtime.detect import _layout
    from edgecnn.runtime.interpreter import TFLiteModel

    path = task_models["detect"]["float32"]
    meta = read(path)
    assert (meta["name"], meta["version"]) == ("ObjectDetector", "1.5.0")  # content ranges and groups: 1.5.0, 1.2.0
    assert meta["inputs"] == [{**IMAGE_INPUT, "colour": RGB}]
    positions = _layout(TFLiteModel(path))  # where edgecnn's adapter finds each role
    names = {"boxes": "location", "classes": "category", "scores": "score", "count": "number of detections"}
    assert [o["name"] for o in meta["outputs"]] == [names[r] for r, _ in sorted(positions.items(), key=lambda p: p[1])]
    by_name = {o["name"]: o for o in meta["outputs"]}
    assert by_name["location"] == {
        "name": "location",
        "type": BOUNDING_BOX,
        "index": (1, 0, 3, 2),  # [ymin, xmin, ymax, xmax]
        "box": 1,  # BOUNDARIES, coordinates RATIO (the default)
        "range": (2, 2),
        "stats": ((), ()),
    }
    assert by_name["category"]["files"] == [("labels.txt", VALUE_LABELS)] and by_name["category"]["range"] == (2, 2)
    assert "range" not in by_name["number of detections"]
    assert meta["groups"] == [("detection_result", ["location", "category", "score"])]


def test_segmenter_output_and_options(task_models: dict) -> None:
    meta = read(task_models["segment"]["float32"])
    assert (meta["name"], meta["version"]) == ("ImageSegmenter", "1.5.0")
    assert meta["outputs"] == [
        {
            "name": "segmentation_masks",
            "type": IMAGE,
            "colour": GRAYSCALE,
            "range": (1, 2),
            "stats": ((), ()),
            "files": [("labels.txt", AXIS_LABELS)],
        }
    ]
    ((name, data),) = meta["custom"]
    assert name == "SEGMENTER_METADATA" and data[4:8] == b"V001"
    assert FlatTable.root(data).scalar(0, I8) == 2  # activation SOFTMAX: the .tflite ends in logits


# ------------------------------------------------------------------------------------ MediaPipe
MEDIAPIPE = os.environ.get("MEDIAPIPE_PYTHON")
needs_mediapipe = pytest.mark.skipif(
    not MEDIAPIPE or not Path(MEDIAPIPE).exists(),
    reason="MediaPipe Tasks needs its own venv (mediapipe 1.2 pins absl-py~=2.3 against "
    "tensorflow-model-optimization's absl-py~=1.2 and replaces opencv-python-headless): "
    "python3 -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe, then MEDIAPIPE_PYTHON=/tmp/mp/bin/python",
)


def mediapipe(task: str, model: Path, images: np.ndarray, tmp_path: Path) -> dict:
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run(
        [MEDIAPIPE, str(HERE / "mediapipe_tasks.py"), task, str(model), str(tmp_path / "images.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert "error" not in report, report["error"]  # e.g. a float32 model without NormalizationOptions
    ours, reference = report["metadata"], report["reference"]
    for side in (ours["json"], reference["json"]):  # the version is computed by a native module 1.2 lacks
        side.pop("min_parser_version", None)
        side.pop("author", None)
    assert ours["json"] == reference["json"]  # field for field what MediaPipe's own writer writes
    assert ours["files"] == ["labels.txt"]
    return report


@pytest.fixture(scope="module")
def rgb_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet-5 trained on digits in RGB (MediaPipe's classifier takes RGB models only), float32 and int8."""
    from edgecnn.core.config import TrainConfig
    from edgecnn.pipelines.convert import ConvertOptions, convert
    from edgecnn.pipelines.train import train

    run = tmp_path_factory.mktemp("rgb") / "run"
    config = TrainConfig(arch="lenet5", data="digits", img=32, channels=3, epochs=8, seed=0, out=str(run))
    result = train(config, verbose=0)
    for fmt in ("float32", "int8"):
        convert(result.model_path, None, ConvertOptions(format=fmt, evaluate=False))
    return run


@needs_mediapipe
def test_mediapipe_refuses_gray_models(digits_run: Path, tmp_path: Path) -> None:
    """MediaPipe Tasks 1.2 run RGB models only; a gray model's metadata says GRAYSCALE, and MediaPipe says no."""
    images = np.zeros((1, 32, 32, 1), np.uint8)
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run(
        [
            MEDIAPIPE,
            str(HERE / "mediapipe_tasks.py"),
            "classify",
            str(digits_run / "model_int8.tflite"),
            str(tmp_path / "images.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(done.stdout)["error"] == "Only RGB color space is supported for now."


@needs_mediapipe
@pytest.mark.parametrize("fmt", ["float32", "int8"])
def test_mediapipe_classifies_with_our_labels(fmt: str, rgb_digits: Path, tmp_path: Path) -> None:
    from edgecnn.data import load_split
    from edgecnn.runtime import TFLiteModel

    path = rgb_digits / f"model_{fmt}.tflite"
    images = load_split("digits", "classify", 32, 3, 0, 0.2).val.x[:16]
    report = mediapipe("classify", path, images, tmp_path)
    assert report["metadata"]["labels"] == DIGITS
    probs = TFLiteModel(path).predict(images)
    for categories, p in zip(report["results"], probs, strict=True):
        assert len(categories) == 10 and all(name == DIGITS[index] for index, _, name in categories)
        assert categories[0][0] == int(p.argmax())  # MediaPipe's best category is edgecnn's top-1, named
        scores = np.zeros(10)
        for index, score, _ in categories:
            scores[index] = score
        np.testing.assert_allclose(scores, p, atol=1e-6)


@needs_mediapipe
@pytest.mark.parametrize("fmt", ["float32", "int8"])
def test_mediapipe_detects_what_edgecnn_detects(fmt: str, task_models: dict, tmp_path: Path) -> None:
    from edgecnn.runtime.detect import read_detections
    from edgecnn.runtime.interpreter import TFLiteModel

    models = task_models["detect"]
    path = models.get(fmt) or models.setdefault(fmt, convert_to(models["keras"], fmt))
    report = mediapipe("detect", path, models["images"], tmp_path)
    assert report["metadata"]["labels"] == ["circle", "square", "triangle"]
    model = TFLiteModel(path)
    tolerance = 1e-6 if fmt == "float32" else INT8_STEP
    compared = 0
    for found, image in zip(report["results"], models["images"], strict=True):
        model.set_input(image)
        model.invoke()
        boxes, classes, scores, count = read_detections(model)
        assert len(found) == count > 0
        unmatched = set(range(count))
        for box, _, score, name in found:  # any order: equal scores tie
            match = [
                i
                for i in unmatched
                if same_detection(box, score, name, boxes[i], scores[i], model.labels[int(classes[i])], tolerance)
            ]
            assert match, (box, score, name)
            unmatched.remove(match[0])
            compared += 1
    print(f"{fmt} detector: {compared} detections equal")


# MediaPipe 1.2 bundles its own XNNPACK: on int8 models it rounds an occasional value one quantization step
# apart from LiteRT 2.3's (the trained zoo detector: one score per image in 7 of 40 images, 0.4783 against
# 0.4822, same boxes and labels; benchmarks/results/runtimes.md). Float32 results are equal.
INT8_STEP = 1 / 256 + 1e-6


def same_detection(
    mp_box: list[int], mp_score: float, mp_name: str, box: np.ndarray, score: float, name: str, tolerance: float
) -> bool:
    """MediaPipe's pixel box is its origin clipped to the image and the unclipped size, both truncated
    (edgecnn's Detection clips both corners and rounds): equal to the op's box within a pixel that way."""
    ymin, xmin, ymax, xmax = np.asarray(box, np.float64) * 64  # the 64x64 test images, at the model's size
    x0, y0, x1, y1 = mp_box
    expected = (max(xmin, 0.0), max(ymin, 0.0), xmax - xmin, ymax - ymin)
    error = max(abs(a - b) for a, b in zip((x0, y0, x1 - x0, y1 - y0), expected, strict=True))
    return name == mp_name and abs(score - mp_score) <= tolerance and error <= 1.0


@needs_mediapipe
@pytest.mark.parametrize("fmt", ["float32", "int8"])
def test_mediapipe_segments_as_edgecnn_does(fmt: str, task_models: dict, tmp_path: Path) -> None:
    from edgecnn.runtime.interpreter import TFLiteModel
    from edgecnn.runtime.segment import segment

    models = task_models["segment"]
    path = models.get(fmt) or models.setdefault(fmt, convert_to(models["keras"], fmt))
    report = mediapipe("segment", path, models["images"], tmp_path)
    assert report["metadata"]["labels"] == ["background", "circle", "square", "triangle"]
    model = TFLiteModel(path)
    agreement = []
    for mask, image in zip(report["results"], models["images"], strict=True):
        ours = segment(model, image, src="rgb").mask
        agreement.append(float((np.asarray(mask, np.uint8).reshape(ours.shape) == ours).mean()))
    print(f"{fmt} segmenter: pixel agreement with MediaPipe {min(agreement):.4f} (worst image)")
    # float32: equal; int8: an untrained model's logits tie often, and a value one step apart (see INT8_STEP)
    # flips the argmax of a few pixels (the trained zoo segmenter: recorded in benchmarks/results/runtimes.md)
    assert min(agreement) >= (1.0 if fmt == "float32" else 0.97)
