"""Segmentation: every registered segmenter builds, saves, converts to int8 and runs in LiteRT; a small
U-Net trained on shapes drawn over real photos beats the all-background baseline and its int8 .tflite
agrees with Keras pixel by pixel; metrics, loss, data pipeline and the runtime adapter, checked by hand.

Data: filled circles (class 1) and squares (class 2) of random colours drawn with OpenCV on crops of
scikit-image's sample photos, a 1-pixel band of 255 (ignore) along each outline as VOC marks borders.
Training uses three photos, validation crops of a fourth (coffee), so the agreement is measured on
real-photo content the model never saw.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgecnn.archs import get_arch, list_archs
from edgecnn.benchmarks.segmentation import confusion_matrix, segmentation_metrics
from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime.segment import PACKED_MAX_CLASSES, Segmentation, class_ids, palette, segment

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane

LABELS = ["background", "circle", "square"]
SIZE = 64  # test input size: a multiple of 32, as unet_mobilenet_v2 needs
SEGMENTERS = list_archs("segment")
# Converting runs the whole Keras model through a SavedModel export: 10-30 s per network on 2 cores. One
# MobileNet-based member converts in the fast run (it is also the Edge TPU check's subject), the rest under -m slow.
FAST_CONVERSION = "unet_mobilenet_v2"


# ----------------------------------------------------------------------------------------------- data
def draw_shapes(photo: np.ndarray, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random size x size crops of a half-size ``photo`` (RGB) with 1 or 2 shapes each, and their masks."""
    rng = np.random.default_rng(seed)
    photo = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2), interpolation=cv2.INTER_AREA)
    h, w = photo.shape[:2]
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, h - size), rng.integers(0, w - size)
        image, mask = np.ascontiguousarray(photo[y : y + size, x : x + size]), masks[i]
        for cls in rng.permutation([1, 2])[: rng.integers(1, 3)]:
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            r = int(rng.integers(size // 8, size // 3))
            cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
            if cls == 1:
                cv2.circle(image, (cx, cy), r, colour, -1)
                cv2.circle(mask, (cx, cy), r, 1, -1)
                cv2.circle(mask, (cx, cy), r, 255, 1)
            else:
                cv2.rectangle(image, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
                cv2.rectangle(mask, (cx - r, cy - r), (cx + r, cy + r), 2, -1)
                cv2.rectangle(mask, (cx - r, cy - r), (cx + r, cy + r), 255, 1)
        images[i] = image
    return images, masks


def photos(names: list[str], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from skimage import data as skdata

    parts = [draw_shapes(getattr(skdata, name)(), n // len(names), SIZE, seed + i) for i, name in enumerate(names)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@pytest.fixture(scope="module")
def shapes_data() -> dict[str, np.ndarray]:
    x_train, y_train = photos(["astronaut", "chelsea", "rocket"], 192, seed=0)
    x_val, y_val = photos(["coffee"], 48, seed=7)
    return {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}


def _calibration(images: np.ndarray) -> np.ndarray:
    return images[:16].astype(np.float32)


@pytest.fixture(scope="module")
def trained_unet(shapes_data: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small U-Net (8 filters, 3 levels) trained 8 epochs with seed 0, and its int8 .tflite."""
    from edgecnn.archs import create
    from edgecnn.convert.tflite import to_tflite
    from edgecnn.core.keras_env import keras
    from edgecnn.core.metadata import ModelInfo, embed_tflite_info
    from edgecnn.segmentation import make_dataset, masked_sparse_ce

    keras.utils.set_random_seed(0)
    model = create("unet", len(LABELS), SIZE, width=8, depth=3)
    model.compile(keras.optimizers.Adam(3e-3), masked_sparse_ce)
    train = make_dataset(shapes_data["x_train"], shapes_data["y_train"], 8, seed=0, augment=True, train=True)
    model.fit(train, epochs=8, verbose=0)
    info = ModelInfo(task="segment", labels=LABELS, input_size=[SIZE, SIZE], arch="unet", quantization="int8")
    blob = to_tflite(model, "int8", "uint8", _calibration(shapes_data["x_train"]))
    path = tmp_path_factory.mktemp("unet") / "unet_int8.tflite"
    path.write_bytes(embed_tflite_info(blob, info))
    return {"model": model, "tflite": path}


_CONVERTED: dict[tuple[str, bool], bytes] = {}


def converted(name: str, logits: bool) -> bytes:
    """``name`` at SIZE with 3 classes as int8 (uint8 I/O), with or without its final softmax; built once."""
    if (name, logits) not in _CONVERTED:
        from edgecnn.archs import create
        from edgecnn.convert.tflite import to_tflite
        from edgecnn.core.keras_env import keras
        from edgecnn.segmentation import logits_model

        keras.utils.set_random_seed(0)
        model = create(name, len(LABELS), SIZE)
        calib = np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE, 3)).astype(np.float32)
        _CONVERTED[name, logits] = to_tflite(logits_model(model) if logits else model, "int8", "uint8", calib)
    return _CONVERTED[name, logits]


def _slow_unless(fast: str) -> list[Any]:
    return [n if n == fast else pytest.param(n, marks=pytest.mark.slow) for n in SEGMENTERS]


# ------------------------------------------------------------------------------------- architectures
def test_segmenters_are_registered_with_their_task() -> None:
    assert {"unet", "unet_mobilenet_v2", "deeplabv3_mobilenet_v2"} <= set(SEGMENTERS)
    for name in SEGMENTERS:
        spec = get_arch(name)
        assert spec.task == "segment" and spec.edgetpu, name
    assert not set(SEGMENTERS) & set(list_archs("classify"))


@pytest.mark.parametrize("name", SEGMENTERS)
def test_every_segmenter_outputs_full_size_softmax_maps(name: str) -> None:
    from edgecnn.archs import create
    from edgecnn.core.keras_env import keras

    keras.utils.set_random_seed(0)
    model = create(name, 4, SIZE)
    x = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.float32)
    probs = model(x, training=False).numpy()
    assert probs.shape == (1, SIZE, SIZE, 4) and model.output_shape == (None, SIZE, SIZE, 4)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert model.layers[-1].name == "predictions"
    wide = create(name, 4, (SIZE, 2 * SIZE))  # non-square inputs keep their shape too
    assert wide.output_shape == (None, SIZE, 2 * SIZE, 4)


@pytest.mark.parametrize("name", _slow_unless("unet"))  # the MobileNet-based ones take 6-9 s each
def test_every_segmenter_saves_and_reloads(name: str, tmp_path: Path) -> None:
    from edgecnn.archs import create
    from edgecnn.core.keras_env import keras
    from edgecnn.core.keras_io import save_keras
    from edgecnn.core.metadata import ModelInfo
    from edgecnn.trainer.load import load_keras

    keras.utils.set_random_seed(0)
    model = create(name, 3, SIZE)
    path = save_keras(model, tmp_path / "model.keras", ModelInfo(task="segment", labels=LABELS, arch=name))
    loaded, info = load_keras(path)
    x = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert info is not None and info.labels == LABELS


@pytest.mark.parametrize("name", SEGMENTERS)
def test_every_segmenter_maps_to_the_edgetpu_but_its_per_pixel_softmax(name: str) -> None:
    """Keras-level check: everything maps; the (H, W, C) softmax does not (Coral: SOFTMAX is 1-D only)."""
    from edgecnn.archs import create
    from edgecnn.edgetpu.check import check_keras, format_check
    from edgecnn.segmentation import logits_model

    model = create(name, 3, SIZE)
    full = check_keras(model)
    assert full.first_fallback is not None and full.after_fallback == 0, format_check(full)
    assert full.ops[full.first_fallback].name == "predictions"
    assert "not one-dimensional" in full.ops[full.first_fallback].reasons[0]
    report = check_keras(logits_model(model))
    assert report.fully_mapped and report.mapped == report.counted, format_check(report)


def test_bad_options_are_one_line_errors() -> None:
    from edgecnn.archs import create

    with pytest.raises(EdgecnnError, match=r"^unet_mobilenet_v2 needs an input size divisible by 32, got 80x80; "):
        create("unet_mobilenet_v2", 3, 80)
    with pytest.raises(EdgecnnError, match=r"^unet needs an input size divisible by 16, got 72x72; use e.g. --img 80"):
        create("unet", 3, 72)
    with pytest.raises(EdgecnnError, match=r"^a segmentation model needs 2 or more classes \(background included\)"):
        create("deeplabv3_mobilenet_v2", 1, SIZE)
    with pytest.raises(EdgecnnError, match=r"^skip_stride must be one of \(0, 4, 8\)"):
        create("deeplabv3_mobilenet_v2", 3, SIZE, skip_stride=2)
    with pytest.raises(EdgecnnError, match=r"^unet depth must be 1 to 6 levels, got 0"):
        create("unet", 3, SIZE, depth=0)


def test_deeplab_without_skip_and_logits_model_error() -> None:
    from edgecnn.archs import create
    from edgecnn.core.keras_env import keras
    from edgecnn.segmentation import logits_model

    model = create("deeplabv3_mobilenet_v2", 3, SIZE, skip_stride=0, alpha=0.35)
    assert model.output_shape == (None, SIZE, SIZE, 3) and "decoder_concat" not in [la.name for la in model.layers]
    assert logits_model(model).output_shape == (None, SIZE, SIZE, 3)
    inputs = keras.Input((8, 8, 3))
    plain = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(inputs))
    with pytest.raises(EdgecnnError, match="does not end in a softmax layer named 'predictions'"):
        logits_model(plain)


@pytest.mark.parametrize("name", _slow_unless(FAST_CONVERSION))
def test_every_segmenter_converts_to_int8_and_runs_in_litert(name: str, tmp_path: Path) -> None:
    from edgecnn.runtime.interpreter import TFLiteModel

    path = tmp_path / f"{name}_int8.tflite"
    path.write_bytes(converted(name, logits=True))
    runner = TFLiteModel(path, threads=2)
    assert runner.input["dtype"] == np.uint8 and runner.outputs[0]["dtype"] == np.uint8
    x = np.random.default_rng(2).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)
    scores = runner.predict(x)
    assert scores.shape == (2, SIZE, SIZE, 3) and np.isfinite(scores).all()
    result = segment(runner, np.zeros((48, 80, 3), np.uint8))  # no edgecnn record: labels are the ids
    assert result.mask.shape == (48, 80) and result.labels == ["0", "1", "2"]


@pytest.mark.parametrize("name", _slow_unless(FAST_CONVERSION))
def test_int8_segmenter_without_softmax_is_fully_mapped_on_edgetpu(name: str) -> None:
    from edgecnn.edgetpu.check import check_tflite, format_check

    report = check_tflite(converted(name, logits=True))
    assert report.fully_mapped and report.on_cpu == 0, format_check(report)
    assert {"RESIZE_BILINEAR", "CONCATENATION"} <= {op.op for op in report.ops}


@pytest.mark.slow
@pytest.mark.parametrize("name", SEGMENTERS)
def test_int8_segmenter_with_softmax_runs_all_but_the_softmax_on_edgetpu(name: str, tmp_path: Path) -> None:
    from edgecnn.edgetpu.check import check_tflite, format_check
    from edgecnn.runtime.interpreter import TFLiteModel

    blob = converted(name, logits=False)
    report = check_tflite(blob)
    first = report.ops[report.first_fallback]
    assert first.op == "SOFTMAX" and report.mapped == report.first_fallback, format_check(report)
    path = tmp_path / "model.tflite"
    path.write_bytes(blob)
    probs = TFLiteModel(path).predict(np.zeros((1, SIZE, SIZE, 3), np.uint8))
    assert probs.shape == (1, SIZE, SIZE, 3) and np.allclose(probs.sum(-1), 1.0, atol=0.05)


# -------------------------------------------------------------------------------------- trained U-Net
def test_trained_unet_beats_background_and_int8_agrees_with_keras(
    trained_unet: dict[str, Any], shapes_data: dict[str, np.ndarray]
) -> None:
    from edgecnn.runtime.interpreter import TFLiteModel

    x, y = shapes_data["x_val"], shapes_data["y_val"]
    keras_pred = trained_unet["model"].predict(x.astype(np.float32), verbose=0).argmax(-1)
    runner = TFLiteModel(trained_unet["tflite"], threads=2)
    int8_pred = runner.predict(x).argmax(-1)
    metrics = segmentation_metrics(keras_pred, y, LABELS)
    baseline = segmentation_metrics(np.zeros_like(keras_pred), y, LABELS)
    assert metrics["miou"] >= baseline["miou"] + 0.1, (metrics["per_class_iou"], baseline["miou"])
    assert metrics["per_class_iou"]["background"] > 0.85
    agreement = float((keras_pred == int8_pred).mean())
    assert agreement >= 0.95, agreement
    int8 = segmentation_metrics(int8_pred, y, LABELS)
    assert abs(int8["miou"] - metrics["miou"]) < 0.05


def test_segment_returns_a_mask_of_the_frame_size(trained_unet: dict[str, Any]) -> None:
    from skimage import data as skdata

    from edgecnn.runtime.interpreter import TFLiteModel

    runner = TFLiteModel(trained_unet["tflite"], threads=2)
    frame = np.ascontiguousarray(skdata.chelsea()[:, :, ::-1])  # a BGR camera frame, 300 x 451
    cv2.circle(frame, (200, 150), 70, (40, 200, 250), -1)
    result = segment(runner, frame)
    assert isinstance(result, Segmentation) and result.labels == LABELS
    assert result.mask.shape == frame.shape[:2] and result.mask.dtype == np.uint8
    assert set(np.unique(result.mask)) <= {0, 1, 2} and result.mask[150, 200] != 0
    # the same ids as the model's own argmax, enlarged by nearest neighbour
    small = cv2.resize(frame, (SIZE, SIZE), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    ids = runner.predict(small[None]).argmax(-1)[0].astype(np.uint8)
    np.testing.assert_array_equal(result.mask, cv2.resize(ids, (451, 300), interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float32])
@pytest.mark.parametrize("classes", [1, 2, 21, PACKED_MAX_CLASSES, PACKED_MAX_CLASSES + 1])
def test_class_ids_equal_argmax_with_ties_and_extremes(dtype: type, classes: int) -> None:
    """The packed int16 reduction of 8-bit scores picks what argmax picks, the first class among equals."""
    rng = np.random.default_rng(classes)
    info = np.iinfo(dtype) if dtype != np.float32 else np.iinfo(np.int8)
    scores = rng.integers(info.min, info.max + 1, (23, 31, classes)).astype(dtype)
    scores[:4] = scores[:4, :, :1]  # every class equal
    scores[4:7], scores[7:9] = info.max, info.min
    scores[9, :, -1] = info.max  # the last class alone at the top
    ids = class_ids(scores[None][0])
    assert ids.dtype == np.uint8 and ids.shape == (23, 31)
    np.testing.assert_array_equal(ids, scores.argmax(-1))
    np.testing.assert_array_equal(ids[:9], 0)


def test_palette_is_the_voc_colormap() -> None:
    colours = palette(22)
    assert colours.shape == (22, 3) and colours.dtype == np.uint8
    assert colours[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert colours[15].tolist() == [192, 128, 128] and colours[20].tolist() == [0, 64, 128]  # person, tvmonitor
    assert len({tuple(c) for c in palette(256)}) == 256


def test_runtime_and_metrics_never_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'): raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from edgecnn.runtime.segment import palette, segment\n"
        "from edgecnn.benchmarks.segmentation import segmentation_metrics\n"
        "m = segmentation_metrics(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), np.uint8), ['background'])\n"
        "assert m['miou'] == 1.0 and palette(2).shape == (2, 3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# -------------------------------------------------------------------------------------------- metrics
def test_metrics_by_hand_on_a_2x3_example() -> None:
    labels = ["background", "a", "b", "c"]
    truth = np.array([[[0, 0, 1], [1, 2, 255]]], np.uint8)
    pred = np.array([[[0, 1, 1], [1, 2, 3]]])  # the 3 falls on an ignored pixel: it counts for nothing
    m = segmentation_metrics(pred, truth, labels)
    # background: TP 1, FN 1 -> 1/2; a: TP 2, FP 1 -> 2/3; b: TP 1 -> 1; c: nowhere (ignored pixel only) -> None
    assert m["per_class_iou"] == {"background": 0.5, "a": 0.6667, "b": 1.0, "c": None}
    assert m["miou"] == round((1 / 2 + 2 / 3 + 1) / 3, 4) and m["pixel_accuracy"] == 0.8 and m["images"] == 1
    assert m["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    pred[0, 1, 2] = 0
    assert segmentation_metrics(pred, truth, labels) == m
    pred[0, 1, 1] = 3  # a real pixel predicted as c: c now appears (IoU 0), b loses its only pixel
    m2 = segmentation_metrics(pred, truth, labels)
    assert m2["per_class_iou"]["c"] == 0.0 and m2["per_class_iou"]["b"] == 0.0
    assert m2["miou"] == round((1 / 2 + 2 / 3) / 4, 4)


def test_metrics_reject_bad_input() -> None:
    truth = np.zeros((1, 2, 2), np.uint8)
    with pytest.raises(EdgecnnError, match=r"^prediction class id 5 is outside 0\.\.1"):
        segmentation_metrics(np.full((1, 2, 2), 5), truth, ["background", "x"])
    with pytest.raises(EdgecnnError, match=r"^predictions \(1, 2, 3\) and masks \(1, 2, 2\) differ in shape"):
        segmentation_metrics(np.zeros((1, 2, 3)), truth, ["background", "x"])
    assert confusion_matrix(np.zeros((1, 2, 2)), np.full((1, 2, 2), 255, np.uint8), 2).sum() == 0
    empty = segmentation_metrics(np.zeros((1, 2, 2)), np.full((1, 2, 2), 255, np.uint8), ["background", "x"])
    assert empty["miou"] == 0.0 and empty["pixel_accuracy"] == 0.0


# ------------------------------------------------------------------------------------- loss and data
def test_masked_loss_ignores_255_pixels() -> None:
    from edgecnn.core.keras_env import tf
    from edgecnn.segmentation import masked_sparse_ce, segmentation_loss, soft_dice_loss

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (2, 4, 5)).astype(np.uint8)
    truth[0, :2] = 255
    probs = rng.dirichlet(np.ones(3), (2, 4, 5)).astype(np.float32)
    other = probs.copy()
    other[truth == 255] = rng.dirichlet(np.ones(3), int((truth == 255).sum()))
    valid = truth != 255
    expected = -np.log(np.take_along_axis(probs, np.where(valid, truth, 0)[..., None], -1)[..., 0])[valid].mean()
    for loss in (masked_sparse_ce, soft_dice_loss, segmentation_loss(0.5)):
        a = float(loss(tf.constant(truth), tf.constant(probs)))
        b = float(loss(tf.constant(truth), tf.constant(other)))
        assert a == pytest.approx(b, abs=1e-6), loss.__name__
    assert float(masked_sparse_ce(tf.constant(truth), tf.constant(probs))) == pytest.approx(expected, rel=1e-5)
    assert float(masked_sparse_ce(tf.constant(truth[..., None]), tf.constant(probs))) == pytest.approx(expected, 1e-5)
    assert float(masked_sparse_ce(tf.fill((1, 4, 5), 255), tf.constant(probs[:1]))) == 0.0  # nothing labelled
    perfect = np.eye(3, dtype=np.float32)[np.where(valid, truth, 0)]
    assert float(soft_dice_loss(tf.constant(truth), tf.constant(perfect))) == pytest.approx(0.0, abs=1e-6)


def test_dataset_flips_image_and_mask_together_and_is_seeded() -> None:
    from edgecnn.segmentation import make_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 8, 8, 3)).astype(np.uint8)
    masks = (images[..., 0] > 127).astype(np.uint8)  # the mask is a function of the image pixel by pixel
    masks[:, 0, 0] = 255

    def batches(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        ds = make_dataset(images, masks, 5, seed=seed, augment=True, train=True)
        return [(x.numpy(), y.numpy()) for x, y in ds]

    first = batches(0)
    x = np.concatenate([b[0] for b in first])
    y = np.concatenate([b[1] for b in first])
    assert x.dtype == np.float32 and y.dtype == np.int32 and [len(b[0]) for b in first] == [5, 5, 2]
    assert ((x[..., 0] > 127) == (y == 1))[y != 255].all()
    originals = {images[i].tobytes(): i for i in range(12)}
    flipped = [x_.astype(np.uint8)[:, ::-1].tobytes() in originals for x_ in x]
    kept = [x_.astype(np.uint8).tobytes() in originals for x_ in x]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)
    for x_, y_, f in zip(x, y, flipped, strict=True):
        i = originals[(x_.astype(np.uint8)[:, ::-1] if f else x_.astype(np.uint8)).tobytes()]
        np.testing.assert_array_equal(y_, masks[i][:, ::-1] if f else masks[i])
    again = batches(0)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(first, again, strict=True))
    plain = make_dataset(images, masks, 12, seed=0, augment=False, train=False)
    x0, y0 = next(iter(plain))
    np.testing.assert_array_equal(x0.numpy(), images.astype(np.float32))
    np.testing.assert_array_equal(y0.numpy(), masks)
    with pytest.raises(EdgecnnError, match="each image needs a mask of its size"):
        make_dataset(images, masks[:, :4], 4, 0, False, False)
