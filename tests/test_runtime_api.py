"""The Python API (``from edgecnn.runtime import classify, detect, segment, open_model``) on real converted
models, run where TensorFlow cannot be imported (as on a Pi's light install): the example in
``edgecnn/runtime/__init__.py``'s docstring runs as written, classify names validation digits, detect gives
boxes in the frame's pixels, segment gives a frame-sized mask, and a model of another task is a one-line error.

The models are made with TensorFlow (the digits LeNet-5 of conftest, and a seeded untrained SSDLite and U-Net
on the shapes data, converted to int8); the API runs in a subprocess that blocks TensorFlow.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TF_BLOCK, TF_LEAK_CHECK, tf_fixture

import edgecnn.runtime

SHAPES = 64  # the detector's and segmenter's input size
FRAME_HW = (200, 300)  # frames are larger than the models' inputs and not square: the API resizes


def docstring_example() -> str:
    """The indented block after ``::`` in edgecnn.runtime's docstring, dedented: the code a user copies."""
    doc = edgecnn.runtime.__doc__ or ""
    block = doc.split("::\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def run_light(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing TensorFlow raises, then report leaked modules."""
    result = subprocess.run(
        [sys.executable, "-c", TF_BLOCK + code + TF_LEAK_CHECK], capture_output=True, text=True, cwd=cwd, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LEAKED []" in result.stdout, result.stdout
    return result


def _shapes_model(task: str, arch: str, data: str, folder: Path) -> Path:
    """A seeded untrained model of ``task`` on the shapes data, saved with its record and converted to int8.
    An untrained detector's class heads sit under NMS's score floor: seeded random biases let boxes through."""
    from edgecnn.archs import create
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.core.metadata import ModelInfo
    from edgecnn.data import load_split
    from edgecnn.detection.postprocess import plain
    from edgecnn.pipelines.convert import ConvertOptions, convert

    val = load_split(data, task, SHAPES, None, 0, 0.2).val
    keras.utils.set_random_seed(0)
    model = create(arch, len(val.labels), SHAPES, 3)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.startswith("class_head_") and layer.name.endswith("_conv"):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(-3.0, 1.0, bias.shape).astype(np.float32)])
    extra = plain(getattr(model, "edgecnn_extra", {}))
    info = ModelInfo(task=task, labels=list(val.labels), input_size=[SHAPES, SHAPES], arch=arch, extra=extra)
    keras_path = save_keras(model, folder / f"{task}.keras", info)
    options = ConvertOptions(format="int8", calib=data, calib_samples=32, evaluate=False)
    return Path(convert(keras_path, None, options).output)


@tf_fixture(scope="module")
def deployed(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as a user has it on the Pi: the three int8 models the example opens, photo.jpg, and
    labelled frames: digits/LABEL_I.png (validation digits) and shapes/I.png (validation scenes), BGR."""
    from edgecnn.data import load_split

    folder = tmp_path_factory.mktemp("deployed")
    work = tmp_path_factory.mktemp("api_models")
    shutil.copy(digits_run / "model_int8.tflite", folder / "model_int8.tflite")
    shutil.copy(_shapes_model("detect", "ssdlite_mobilenet_v2_035", "shapes", work), folder / "detector_int8.tflite")
    shutil.copy(_shapes_model("segment", "unet_mobilenet_v2", "shapes-seg", work), folder / "segmenter_int8.tflite")
    digits = load_split("digits", "classify", 32, None, 0, 0.2).val
    (folder / "digits").mkdir()
    for i in range(20):
        gray = cv2.resize(digits.x[i, :, :, 0], FRAME_HW[::-1], interpolation=cv2.INTER_NEAREST)
        name = f"{digits.labels[digits.y[i]]}_{i}.png"  # the true label first
        cv2.imwrite(str(folder / "digits" / name), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    shutil.copy(next((folder / "digits").iterdir()), folder / "photo.jpg")  # PNG bytes: cv2.imread reads by content
    scenes = load_split("shapes", "detect", 160, None, 0, 0.2).val
    (folder / "shapes").mkdir()
    for i in range(3):
        frame = cv2.resize(scenes.x[i], FRAME_HW[::-1], interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / "shapes" / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def test_the_docstring_example_runs_as_written_without_tensorflow(deployed: Path) -> None:
    example = docstring_example()
    assert "from edgecnn.runtime import classify, detect, open_model, segment" in example
    result = run_light(example, deployed)
    lines = result.stdout.splitlines()
    assert [bool(re.fullmatch(r"\d: \d\.\d\d", line)) for line in lines[:3]] == [True] * 3, lines
    for line in lines[3:-1]:  # the detections: label, score, (x0, y0, x1, y1)
        assert re.fullmatch(r"(circle|square|triangle) 0\.\d+ \(\d+, \d+, \d+, \d+\)", line), line


CLASSIFY = """
import json, pathlib, cv2
from edgecnn.runtime import Class, classify, open_model
model = open_model('model_int8.tflite')
found = {}
for path in sorted(pathlib.Path('digits').glob('*.png')):
    classes = classify(model, cv2.imread(str(path)), top_k=3)
    assert all(type(c) is Class for c in classes)
    found[path.stem.split('_')[0] + '_' + path.stem.split('_')[1]] = [[c.id, c.label, c.score] for c in classes]
print(json.dumps(found))
"""


def test_classify_names_validation_digits(deployed: Path) -> None:
    found = json.loads(run_light(CLASSIFY, deployed).stdout.splitlines()[0])
    assert len(found) == 20
    right = 0
    for name, classes in found.items():
        assert len(classes) == 3
        assert [c[1] for c in classes] == [str(c[0]) for c in classes]  # digits' labels are their ids
        scores = [c[2] for c in classes]
        assert scores == sorted(scores, reverse=True) and 0.0 <= scores[-1] and scores[0] <= 1.0
        right += classes[0][1] == name.split("_")[0]
    assert right >= 18, found  # the int8 LeNet-5 scores about 97% on the validation digits


DETECT = """
import json, pathlib, cv2
from edgecnn.runtime import Detection, detect, open_model
from edgecnn.runtime.detect import read_detections
model = open_model('detector_int8.tflite')
found = []
for path in sorted(pathlib.Path('shapes').glob('*.png')):
    frame = cv2.imread(str(path))
    objects = detect(model, frame, threshold=0.3)
    assert all(type(d) is Detection for d in objects)
    boxes, classes, scores, count = read_detections(model)  # the same run, as the model gave it
    raw = [[b.tolist(), int(c), float(s)] for b, c, s in zip(boxes[:count], classes[:count], scores[:count])]
    objects = [[d.id, d.label, d.score, list(d.box)] for d in objects]
    found.append({'shape': frame.shape, 'objects': objects, 'raw': raw})
print(json.dumps({'labels': model.labels, 'frames': found}))
"""


def in_pixels(box: list[float], width: int, height: int) -> list[int]:
    """A normalized [ymin, xmin, ymax, xmax] box as [x0, y0, x1, y1] pixels of a width x height frame."""
    ymin, xmin, ymax, xmax = (min(max(v, 0.0), 1.0) for v in box)
    return [round(xmin * width), round(ymin * height), round(xmax * width), round(ymax * height)]


def test_detect_gives_labelled_boxes_in_the_frames_pixels(deployed: Path) -> None:
    result = json.loads(run_light(DETECT, deployed).stdout.splitlines()[0])
    assert result["labels"] == ["circle", "square", "triangle"]
    height, width = FRAME_HW
    total = 0
    for frame in result["frames"]:
        assert frame["shape"] == [height, width, 3]
        objects = frame["objects"]
        total += len(objects)
        assert [o[2] for o in objects] == sorted((o[2] for o in objects), reverse=True)  # best first
        expected = sorted(
            ([c, result["labels"][c], s, in_pixels(box, width, height)] for box, c, s in frame["raw"] if s >= 0.3),
            key=lambda o: -o[2],
        )
        assert [[o[0], o[1], o[3]] for o in objects] == [[e[0], e[1], e[3]] for e in expected]
        assert np.allclose([o[2] for o in objects], [e[2] for e in expected])
        for _, _, score, (x0, y0, x1, y1) in objects:
            assert score >= 0.3 and 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
    assert total > 0  # the seeded heads let boxes through: there was something to check


SEGMENT = """
import json, pathlib, cv2, numpy as np
from edgecnn.runtime import open_model, segment
model = open_model('segmenter_int8.tflite')
frame = cv2.imread('shapes/0.png')
mask = segment(model, frame)
ids = model.scores(0)[0].argmax(-1).astype(np.uint8)  # the same run's class ids at the model's size
resized = cv2.resize(ids, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
small = segment(model, cv2.resize(frame, (40, 30)))
print(json.dumps({'shape': mask.shape, 'dtype': str(mask.dtype), 'ids': sorted(set(mask.reshape(-1).tolist())),
                  'equal': bool((mask == resized).all()), 'small': small.shape, 'labels': model.labels}))
"""


def test_segment_gives_a_class_id_per_frame_pixel(deployed: Path) -> None:
    result = json.loads(run_light(SEGMENT, deployed).stdout.splitlines()[0])
    assert result["shape"] == list(FRAME_HW) and result["dtype"] == "uint8"
    assert result["small"] == [30, 40]  # the frame's size, whatever it is
    assert result["equal"]  # the model's ids, nearest-neighbour resized: never blended into other ids
    assert set(result["ids"]) <= set(range(len(result["labels"]))) and len(result["labels"]) == 4


WRONG_TASK = """
import cv2
from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime import classify, detect, open_model, segment
frame = cv2.imread('photo.jpg')
for function, path in ((classify, 'detector_int8.tflite'), (detect, 'segmenter_int8.tflite'),
                       (segment, 'model_int8.tflite')):
    try:
        function(open_model(path), frame)
    except EdgecnnError as exc:
        print(exc)
"""


def test_a_model_of_another_task_is_a_one_line_error(deployed: Path) -> None:
    lines = run_light(WRONG_TASK, deployed).stdout.splitlines()[:3]
    assert lines == [
        "detector_int8.tflite is a detect model, not a classify one; run it with edgecnn.runtime.detect(model, frame)",
        "segmenter_int8.tflite is a segment model, not a detect one; run it with edgecnn.runtime.segment(model, frame)",
        "model_int8.tflite is a classify model, not a segment one; run it with edgecnn.runtime.classify(model, frame)",
    ]
