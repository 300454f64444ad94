"""Detection end to end: anchors and box coding, target assignment, COCO mAP, the loss, and export with the
TFLite detection postprocess read back by a plain LiteRT interpreter and by edgecnn's adapter.

The data are tiny synthetic scenes (filled rectangles = class 0, filled circles = class 1, on noise),
drawn with OpenCV here, so nothing depends on the dataset module. One small SSDLite (MobileNet v2 0.35
at 128x128) is trained for a few steps and exported once per module (float32 and int8 with uint8 I/O).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.archs import create, get_arch, list_archs
from edgecnn.benchmarks.detection import coco_map
from edgecnn.detection.anchors import anchor_config, anchors_per_cell, generate_anchors, num_anchors
from edgecnn.detection.targets import BACKGROUND, BOX_SCALE, IGNORE, anchors_to_corners, assign, decode, encode, iou
from edgecnn.trainer.fit import set_bn_statistics

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane

SIZE = 128
LABELS = ["square", "circle"]
MAX_DETECTIONS = 25
SCORE_THRESHOLD = 0.05
IOU_THRESHOLD = 0.5


def scenes(n: int, size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """n RGB images with 1-2 objects each: (N, S, S, 3) uint8, boxes (K, 4) yxyx normalized, classes (K,)."""
    rng = np.random.default_rng(seed)
    images, boxes, classes = [], [], []
    for _ in range(n):
        image = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
        b, c = [], []
        for _ in range(int(rng.integers(1, 3))):
            cls, side = int(rng.integers(0, 2)), int(rng.integers(size // 6, size // 2))
            y, x = (int(v) for v in rng.integers(0, size - side, 2))
            if cls == 0:
                cv2.rectangle(image, (x, y), (x + side - 1, y + side - 1), (230, 70, 60), -1)
            else:
                cv2.circle(image, (x + side // 2, y + side // 2), side // 2, (70, 230, 90), -1)
            b.append([y / size, x / size, (y + side) / size, (x + side) / size])
            c.append(cls)
        images.append(image)
        boxes.append(np.asarray(b, np.float32))
        classes.append(np.asarray(c, np.int32))
    return np.stack(images), boxes, classes


def reference_postprocess(
    encodings: np.ndarray, scores: np.ndarray, anchors: np.ndarray, box_scale: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy copy of TFLite_Detection_PostProcess (fast NMS, one class per box): decode, best class per
    anchor, keep scores >= threshold, stable sort, greedily drop boxes with IoU > threshold."""
    boxes = decode(encodings, anchors, box_scale)
    classes = scores.argmax(axis=1)
    best = scores.max(axis=1)
    keep = np.flatnonzero(best >= SCORE_THRESHOLD)
    order = keep[np.argsort(-best[keep], kind="stable")]
    selected: list[int] = []
    for i in order:
        if len(selected) == MAX_DETECTIONS:
            break
        if not selected or iou(boxes[i][None], boxes[selected]).max() <= IOU_THRESHOLD:
            selected.append(int(i))
    return boxes[selected], classes[selected], best[selected]


# --------------------------------------------------------------------------------------------- anchors, coding


@pytest.mark.parametrize("name", list_archs("detect"))
def test_anchors_match_every_detector(name: str) -> None:
    from edgecnn.core.keras_env import keras
    from edgecnn.detection.postprocess import plain

    model = create(name, 3, SIZE)
    extra = plain(model.edgecnn_extra)
    json.dumps(extra)  # the record travels as JSON in the model files
    config = extra["anchors"]
    k = anchors_per_cell(config)
    expected = sum(lv["feature_size"][0] * lv["feature_size"][1] * k for lv in config["levels"])
    boxes, scores = model.output_shape
    assert boxes[1:] == (expected, 4) and scores[1:] == (expected, 3)
    assert num_anchors(config) == expected and generate_anchors(config).shape == (expected, 4)
    assert config["levels"][-1]["feature_size"] == [1, 1]
    assert config["levels"][0]["feature_size"] == [SIZE // 8, SIZE // 8]
    assert extra["box_scale"] == [10.0, 10.0, 5.0, 5.0]
    assert get_arch(name).task == "detect"
    keras.backend.clear_session()


def test_anchor_layout_is_row_major_then_anchor() -> None:
    config = anchor_config([(4, 3), (2, 2)])
    anchors = generate_anchors(config)
    k = anchors_per_cell(config)
    assert k == 4 and len(anchors) == (12 + 4) * k
    # level 0, cell (y=2, x=1), anchor 1 (aspect ratio 2: wider than tall)
    row = anchors[(2 * 3 + 1) * k + 1]
    np.testing.assert_allclose(row[:2], [2.5 / 4, 1.5 / 3], rtol=1e-6)
    s = config["levels"][0]["scale"]
    np.testing.assert_allclose(row[2:], [s / np.sqrt(2), s * np.sqrt(2)], rtol=1e-6)
    # the extra anchor of a cell is square, of side sqrt(s_k * s_k+1)
    last = anchors[12 * k - 1]
    np.testing.assert_allclose(last[2:], [np.sqrt(s * config["levels"][0]["next_scale"])] * 2, rtol=1e-6)
    # level 1 starts after level 0
    np.testing.assert_allclose(anchors[12 * k, :2], [0.25, 0.25], rtol=1e-6)


def test_encode_decode_round_trip() -> None:
    rng = np.random.default_rng(0)
    anchors = generate_anchors(anchor_config([(8, 8), (4, 4)]))
    top_left = rng.uniform(0, 0.7, (len(anchors), 2))
    boxes = np.concatenate([top_left, top_left + rng.uniform(0.02, 0.3, (len(anchors), 2))], axis=1)
    codes = encode(boxes, anchors, BOX_SCALE)
    assert codes.dtype == np.float32 and codes.shape == boxes.shape
    np.testing.assert_allclose(decode(codes, anchors, BOX_SCALE), boxes, atol=2e-6)
    # an anchor's own box encodes to zeros
    np.testing.assert_allclose(encode(anchors_to_corners(anchors), anchors), 0.0, atol=1e-5)


def test_assign_gives_every_box_a_positive() -> None:
    anchors = generate_anchors(anchor_config([(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]))
    gt = np.array(
        [[0.10, 0.10, 0.50, 0.50], [0.12, 0.12, 0.52, 0.50], [0.80, 0.80, 0.82, 0.83], [0.0, 0.3, 1.0, 0.4]],
        np.float32,
    )
    classes = np.array([0, 1, 2, 1])
    box_targets, class_targets = assign(anchors, gt, classes, 3)
    assert box_targets.shape == (len(anchors), 4) and class_targets.dtype == np.int32
    positive = class_targets >= 0
    decoded = decode(box_targets[positive], anchors[positive])
    for box, cls in zip(gt, classes, strict=True):  # tiny, thin and overlapping boxes each have a positive
        match = iou(box[None], decoded)[0] > 0.999
        assert match.any() and (class_targets[positive][match] == cls).all()
    assert (class_targets == BACKGROUND).sum() > 0.8 * len(anchors)
    assert (class_targets == IGNORE).any()
    assert (box_targets[~positive] == 0).all()
    empty_boxes, empty_classes = assign(anchors, np.zeros((0, 4)), np.zeros(0), 3)
    assert (empty_classes == BACKGROUND).all() and not empty_boxes.any()


def test_assign_rejects_bad_class_ids() -> None:
    from edgecnn.core.errors import EdgecnnError

    anchors = generate_anchors(anchor_config([(2, 2)]))
    with pytest.raises(EdgecnnError, match="class ids must be 0..1"):
        assign(anchors, np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([2]), 2)


# ------------------------------------------------------------------------------------------------- COCO mAP


def test_coco_map_perfect_predictions() -> None:
    _, boxes, classes = scenes(6)
    scores = [np.linspace(0.9, 0.5, len(c)) for c in classes]
    result = coco_map(boxes, classes, boxes, classes, scores, LABELS + ["unused"], (SIZE, SIZE))
    assert result["map50"] == pytest.approx(1.0) and result["map"] == pytest.approx(1.0)
    assert result["per_class_ap50"]["square"] == pytest.approx(1.0)
    assert result["per_class_ap50"]["unused"] is None and result["images"] == 6


def test_coco_map_hand_checked() -> None:
    """Two ground-truth squares; one exact detection (0.9) and one miss (0.8). Precision is 1 up to recall
    0.5 and recall never passes 0.5, so COCO's 101-point AP is 51/101 at every IoU threshold."""
    truth = [np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]], np.float32)]
    preds = [np.array([[0.1, 0.1, 0.4, 0.4], [0.6, 0.0, 0.7, 0.1]], np.float32)]
    result = coco_map(truth, [np.array([0, 0])], preds, [np.array([0, 0])], [np.array([0.9, 0.8])], ["a"], (100, 100))
    assert result["map50"] == pytest.approx(51 / 101) and result["map"] == pytest.approx(51 / 101)
    # a false positive ranked first: precision 0.5 at every recall
    preds = [np.array([[0.6, 0.0, 0.7, 0.1], [0.1, 0.1, 0.4, 0.4]], np.float32)]
    labels = ["a", "b"]
    result = coco_map(truth, [np.array([0, 1])], preds, [np.array([0, 0])], [np.array([0.9, 0.8])], labels, (100, 100))
    assert result["per_class_ap50"]["a"] == pytest.approx(0.5) and result["per_class_ap50"]["b"] == 0.0


# ----------------------------------------------------------------------------------------------------- loss


def test_focal_and_box_loss_values() -> None:
    from edgecnn.core.keras_env import tf
    from edgecnn.detection.loss import detection_losses

    losses = detection_losses()
    # one image, 3 anchors, 1 class: a positive, a background and an ignored anchor, all scored 0.5
    scores = tf.fill([1, 3, 1], 0.5)
    value = losses[1](tf.constant([[0, -1, -2]]), scores).numpy()
    expected = 0.25 * 0.25 * np.log(2) + 0.75 * 0.25 * np.log(2)  # alpha_t (1 - p_t)^2 CE, over 1 positive
    assert value == pytest.approx(expected, rel=1e-4)
    box_true = tf.constant([[[1.0, 0.0, 0.0, 0.0, 1.0], [5.0, 5.0, 5.0, 5.0, 0.0], [0.0, 0.0, 0.0, 3.0, 1.0]]])
    value = losses[0](box_true, tf.zeros([1, 3, 4])).numpy()
    assert value == pytest.approx((0.5 + 2.5) / 2)  # Huber: 0.5 x^2 below 1, |x| - 0.5 above; 2 positives


def test_make_dataset_targets_follow_the_flip() -> None:
    from edgecnn.detection.loss import make_dataset

    anchors = generate_anchors(anchor_config([(8, 8), (4, 4), (2, 2), (1, 1)]))
    images, boxes, classes = scenes(8, 64)
    ds = make_dataset(images, boxes, classes, anchors, BOX_SCALE, 2, 8, seed=0, augment=True, shuffle=False)
    x, y = next(iter(ds))
    assert x.dtype.name == "float32" and x.shape == (8, 64, 64, 3)
    assert y[0].shape == (8, len(anchors), 5) and y[1].shape == (8, len(anchors))
    flipped = 0
    for i, (box_y, class_y) in enumerate(zip(y[0].numpy(), y[1].numpy(), strict=True)):
        positive = class_y >= 0
        decoded = decode(box_y[positive, :4], anchors[positive])
        mirror = boxes[i][:, [0, 3, 2, 1]] * [1, -1, 1, -1] + [0, 1, 0, 1]
        as_is, as_mirror = iou(decoded, boxes[i]).max(), iou(decoded, mirror).max()
        flipped += as_mirror > as_is
        assert max(as_is, as_mirror) > 0.999
        assert positive.sum() == box_y[:, 4].sum()
    assert 0 < flipped < 8
    again = next(
        iter(make_dataset(images, boxes, classes, anchors, BOX_SCALE, 2, 8, seed=0, augment=True, shuffle=False))
    )
    np.testing.assert_array_equal(again[0].numpy(), x.numpy())  # seeded


# --------------------------------------------------------------------------------------- train, export, run


@pytest.fixture(scope="module")
def trained():
    """SSDLite MobileNet v2 0.35 at 128, 2 classes, trained for 24 steps on 48 synthetic scenes (~16 s)."""
    from edgecnn.core.keras_env import keras
    from edgecnn.detection.loss import make_dataset
    from edgecnn.detection.postprocess import plain
    from edgecnn.trainer.fit import compile_detector

    keras.utils.set_random_seed(0)
    images, boxes, classes = scenes(48)
    model = create("ssdlite_mobilenet_v2_035", len(LABELS), SIZE)
    extra = plain(model.edgecnn_extra)
    anchors = generate_anchors(extra["anchors"])
    ds = make_dataset(images, boxes, classes, anchors, extra["box_scale"], len(LABELS), 8, seed=0, augment=True)
    compile_detector(model, 1e-2, 24)
    history = model.fit(ds, epochs=4, verbose=0).history
    set_bn_statistics(model, images[:32])
    test_images, test_boxes, test_classes = scenes(4, seed=1)
    return {
        "model": model,
        "extra": extra,
        "anchors": anchors,
        "history": history,
        "images": images,
        "test": (test_images, test_boxes, test_classes),
    }


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained detector as float32 and int8 (uint8 input) .tflite, with edgecnn metadata."""
    from edgecnn.convert.tflite import to_tflite
    from edgecnn.core.metadata import ModelInfo, embed_tflite_info
    from edgecnn.detection.nms import NmsSettings
    from edgecnn.detection.postprocess import detection_graph

    folder = tmp_path_factory.mktemp("detector")
    paths = {}
    for fmt, io in (("float32", "float32"), ("int8", "uint8")):
        calib = trained["images"][:16]
        nms = NmsSettings(MAX_DETECTIONS, SCORE_THRESHOLD, IOU_THRESHOLD)
        blob = to_tflite(detection_graph(trained["model"], trained["extra"], nms), fmt, io, calib)
        info = ModelInfo(
            task="detect",
            labels=LABELS,
            input_size=[SIZE, SIZE],
            arch="ssdlite_mobilenet_v2_035",
            quantization=fmt,
            extra={**trained["extra"], "io": io},
        )
        paths[fmt] = folder / f"detector_{fmt}.tflite"
        paths[fmt].write_bytes(embed_tflite_info(blob, info))
    return paths


def test_loss_is_finite_and_decreases(trained) -> None:
    losses = trained["history"]["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.75 * losses[0], losses
    assert trained["history"]["class_scores_loss"][-1] < trained["history"]["class_scores_loss"][0]


def _plain_interpreter_run(path: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """Run a detection .tflite with nothing but LiteRT, reading the outputs by their signature names."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    interpreter.set_tensor(detail["index"], image[None].astype(detail["dtype"]))
    interpreter.invoke()
    outputs = interpreter._get_full_signature_list()["serving_default"]["outputs"]  # what pycoral reads
    got = {name: interpreter.get_tensor(index) for name, index in outputs.items()}
    roles = {"count": got["output_0"], "scores": got["output_1"], "classes": got["output_2"], "boxes": got["output_3"]}
    # the same four by position: TF's order is scores, boxes, count, classes (as TF2 OD API exports)
    by_position = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    for array, role in zip(by_position, ("scores", "boxes", "count", "classes"), strict=True):
        np.testing.assert_array_equal(array, roles[role])
    return {**roles, "input_dtype": np.dtype(detail["dtype"])}


def _check_standard_outputs(out: dict[str, np.ndarray]) -> int:
    n = MAX_DETECTIONS
    assert out["boxes"].shape == (1, n, 4) and out["classes"].shape == (1, n) and out["scores"].shape == (1, n)
    assert out["count"].shape == (1,)
    assert all(out[k].dtype == np.float32 for k in ("boxes", "classes", "scores", "count"))
    count = int(out["count"][0])
    assert 1 <= count <= n
    valid = out["boxes"][0, :count]
    # Normalized, not pixels. The op does not clip decoded boxes to the image (nor do TF Object Detection
    # API exports): a box at the border, or a stray low-score box of this barely trained model, may reach
    # beyond 0..1, so consumers clip. The best detection lies on the image.
    assert np.isfinite(valid).all() and valid.min() > -1.0 and valid.max() < 2.0, valid
    top_center = (valid[0, :2] + valid[0, 2:]) / 2
    assert (0.0 <= top_center).all() and (top_center <= 1.0).all(), valid[0]
    assert (valid[:, 2:] >= valid[:, :2]).all()
    assert set(np.unique(out["classes"][0, :count])) <= {0.0, 1.0}
    scores = out["scores"][0, :count]
    assert (scores >= SCORE_THRESHOLD).all() and (np.diff(scores) <= 0).all()
    return count


def test_int8_detector_with_a_plain_interpreter(trained, exported) -> None:
    image = trained["test"][0][0]
    out = _plain_interpreter_run(exported["int8"], image)
    assert out["input_dtype"] == np.uint8
    count = _check_standard_outputs(out)
    # the int8 detector finds what the float Keras model finds
    encodings, scores = trained["model"](image[None].astype(np.float32), training=False)
    ref_boxes, _, _ = reference_postprocess(encodings[0].numpy(), scores[0].numpy(), trained["anchors"], BOX_SCALE)
    assert iou(out["boxes"][0, :1], ref_boxes[:3]).max() > 0.5
    assert count >= 1


def test_float32_detector_matches_numpy_reference(trained, exported) -> None:
    from edgecnn.detection.nms import NmsSettings, postprocess

    for image in trained["test"][0]:
        out = _plain_interpreter_run(exported["float32"], image)
        count = _check_standard_outputs(out)
        encodings, scores = trained["model"](image[None].astype(np.float32), training=False)
        boxes, classes, best = reference_postprocess(
            encodings[0].numpy(), scores[0].numpy(), trained["anchors"], BOX_SCALE
        )
        assert iou(out["boxes"][0, :1], boxes[:1])[0, 0] > 0.9
        assert out["classes"][0, 0] == classes[0]
        assert abs(count - len(boxes)) <= 1  # a score right at the threshold may fall either way
        n = min(count, len(boxes), 5)
        np.testing.assert_allclose(out["scores"][0, :n], best[:n], atol=1e-4)
        np.testing.assert_allclose(out["boxes"][0, :n], boxes[:n], atol=1e-3)
        # the library's numpy postprocess (OpenCV NMS), which evaluates Keras detectors, agrees with the kernel
        lib_boxes, lib_classes, lib_best = postprocess(
            encodings[0].numpy(),
            scores[0].numpy(),
            trained["anchors"],
            BOX_SCALE,
            NmsSettings(MAX_DETECTIONS, SCORE_THRESHOLD, IOU_THRESHOLD),
        )
        np.testing.assert_allclose(lib_boxes, boxes, atol=1e-6)
        np.testing.assert_array_equal(lib_classes, classes)
        np.testing.assert_allclose(lib_best, best, atol=1e-6)


def test_int8_graph_is_full_integer_until_the_postprocess(exported) -> None:
    from edgecnn.runtime.interpreter import TFLiteModel

    ops = TFLiteModel(exported["int8"], delegate="none").op_counts()
    assert ops.get("TFLite_Detection_PostProcess") == 1
    int8_ops = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "RESHAPE", "CONCATENATION", "LOGISTIC", "QUANTIZE"}
    allowed = int8_ops | {"DEQUANTIZE", "TFLite_Detection_PostProcess"}
    assert set(ops) <= allowed, set(ops) - allowed
    assert ops.get("DEQUANTIZE", 0) == 2  # box encodings and class scores, in front of the float op


def test_detect_adapter_returns_frame_pixels(trained, exported) -> None:
    from edgecnn.runtime.detect import Detection, detect, read_detections
    from edgecnn.runtime.interpreter import TFLiteModel

    image = trained["test"][0][0]
    frame = cv2.resize(image, (320, 240), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]  # a 4:3 BGR frame
    model = TFLiteModel(exported["int8"])
    found = detect(model, frame, threshold=0.0)
    boxes, classes, scores, count = read_detections(model)
    assert len(found) == count >= 1
    first = found[0]
    assert isinstance(first, Detection) and first.label in LABELS and first.id == int(classes[0])
    assert first.score == pytest.approx(float(scores[0]))
    x0, y0, x1, y1 = first.box
    assert all(isinstance(v, int) for v in first.box)
    assert 0 <= x0 <= x1 <= 320 and 0 <= y0 <= y1 <= 240
    ymin, xmin, ymax, xmax = np.clip(boxes[0], 0, 1)
    assert (x0, y0, x1, y1) == (round(xmin * 320), round(ymin * 240), round(xmax * 320), round(ymax * 240))
    assert detect(model, frame, threshold=1.01) == []


class _FakeModel:
    """Just what read_detections touches: four float outputs in a given order, no signature."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.outputs = [{"index": i, "shape": np.array(a.shape)} for i, a in enumerate(arrays)]
        self.interpreter = object()
        self.path = Path("fake.tflite")

    def output(self, i: int) -> np.ndarray:
        return self.arrays[i]


def test_read_detections_identifies_any_order() -> None:
    from edgecnn.runtime.detect import read_detections

    boxes = np.array([[[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 0.9], [0, 0, 0, 0]]], np.float32)
    classes = np.array([[1.0, 0.0, 0.0]], np.float32)
    scores = np.array([[0.9, 0.6, 0.0]], np.float32)
    count = np.array([2.0], np.float32)
    orders = [
        [boxes, classes, scores, count],  # TF1 exports
        [scores, boxes, count, classes],  # TF2 exports without a signature
        [count, classes, boxes, scores],  # anything else: identified by shape and integer values
    ]
    for arrays in orders:
        model = _FakeModel(arrays)
        for _ in range(2):  # the second read uses the layout found by the first
            b, c, s, n = read_detections(model)
        assert n == 2
        np.testing.assert_array_equal(b, boxes[0])
        np.testing.assert_array_equal(c, classes[0])
        np.testing.assert_array_equal(s, scores[0])


def test_export_rejects_a_mismatched_record(trained) -> None:
    from edgecnn.core.errors import EdgecnnError
    from edgecnn.detection.postprocess import detection_graph

    wrong = {**trained["extra"], "anchors": anchor_config([(4, 4)])}
    with pytest.raises(EdgecnnError, match="do not match its 64 anchors"):
        detection_graph(trained["model"], wrong)
    with pytest.raises(EdgecnnError, match="no anchors/box_scale"):
        detection_graph(trained["model"], {})


def test_runtime_side_never_imports_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import edgecnn.runtime.detect, edgecnn.benchmarks.detection, edgecnn.detection.anchors, "
        "edgecnn.detection.targets\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
