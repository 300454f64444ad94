"""Segmentation through the whole product path, as a user runs it: ``edgecnn train`` on the built-in
data (task taken from the architecture), ``convert --int8`` (task from the model's metadata), ``eval`` of
the .tflite and ``demo`` with TensorFlow blocked; the demo's overlays; task and data mismatches.

Runs are short (CI budget: a few epochs at 96x96), so the accuracy asserted here is "learned something and
the int8 model matches its Keras self"; the accuracy targets (mAP@0.5 and mean IoU >= 0.80, int8 within 2
points) are met by the full recipes in training/ and recorded by ``python training/zoo.py``, and asserted
under ``-m slow`` below.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli, run_light_cli, tf_fixture
from e2e_common import SIZE, convert_int8, train_run, write_frames


@tf_fixture(scope="module")
def segment_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run("unet_mobilenet_v2", "shapes-seg", tmp_path_factory.mktemp("segment") / "run", 5, 16)


# --------------------------------------------------------------------------------------------- segment
def test_segment_trains_converts_and_keeps_iou(segment_run: Path) -> None:
    metrics = json.loads((segment_run / "metrics.json").read_text())
    report = convert_int8(segment_run)
    print(metrics["val_miou"], report["accuracy"])
    assert metrics["task"] == "segment" and metrics["val_images"] == 240
    assert metrics["val_miou"] > 0.3  # background alone scores about 0.22 (one class of four)
    assert report["outputs"][0]["shape"] == [1, SIZE, SIZE, 4] and report["outputs"][0]["dtype"] == "uint8"
    assert "SOFTMAX" not in report["ops"]  # deployed as logits: the Edge TPU runs SOFTMAX on 1-D inputs only
    assert abs(report["accuracy"]["delta_points"]) <= 2.0
    assert report["accuracy"]["pixel_agreement"] >= 0.97


def test_segment_eval_and_demo_without_tensorflow(segment_run: Path, tmp_path: Path) -> None:
    model = segment_run / "model_int8.tflite"
    if not model.is_file():
        convert_int8(segment_run)
    result = run_light_cli("eval", str(model), "--json")
    assert result.returncode == 0 and "LEAKED []" in result.stdout, result.stderr
    metrics = json.loads(result.stdout.splitlines()[0])
    assert metrics["task"] == "segment" and set(metrics["per_class_iou"]) == {
        "background",
        "circle",
        "square",
        "triangle",
    }
    frame_folder = write_frames("shapes-seg", tmp_path / "frames", 3)
    result = run_light_cli("demo", "--model", str(model), "--source", str(frame_folder), "--no-display", "--json")
    assert result.returncode == 0 and "LEAKED []" in result.stdout, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["frames"] == 3


def test_overlays_draw_boxes_and_masks() -> None:
    from edgecnn.runtime.detect import Detection
    from edgecnn.runtime.segment import Segmentation
    from edgecnn.video.overlay import class_colour, draw_detections, draw_segmentation

    frame = np.zeros((120, 160, 3), np.uint8)
    draw_detections(frame, [Detection(1, "square", 0.9, (20, 30, 80, 100))])
    assert tuple(frame[60, 20]) == class_colour(1)  # the box's left edge
    mask = np.zeros((120, 160), np.uint8)
    mask[:, 100:] = 2
    shown = draw_segmentation(np.full((120, 160, 3), 200, np.uint8), Segmentation(mask, ["bg", "a", "b"]))
    assert (shown[10, 10] == 200).all()  # background is left clear
    expected = (np.array([200, 200, 200]) * 0.5 + np.array(class_colour(1)) * 0.5).astype(np.uint8)
    assert (shown[10, 150] == expected).all()
    plain = np.full((120, 160, 3), 200, np.uint8)
    assert (draw_segmentation(plain.copy(), Segmentation(np.zeros_like(mask), ["bg", "a"])) == plain).all()
    # A model-sized id map (60x80) for a 120x160 frame draws as its frame-sized mask does.
    small = Segmentation(mask[::2, ::2].copy(), ["bg", "a", "b"], (120, 160))
    np.testing.assert_array_equal(small.mask, mask)
    drawn = draw_segmentation(np.full((120, 160, 3), 200, np.uint8), small)
    np.testing.assert_array_equal(drawn, shown)
    assert small.counts.tolist() == [50 * 60, 0, 30 * 60]


def test_segmentation_is_described_by_class_share() -> None:
    from edgecnn.runtime.segment import Segmentation
    from edgecnn.tasks import get_task

    ids = np.zeros((10, 20), np.uint8)
    ids[:5, :5] = 1  # 12.5%
    ids[:, 10:] = 2  # 50%
    result = Segmentation(ids, ["bg", "cat", "dog"], (480, 640))
    assert get_task("segment").describe(result) == ["cat 12% of the frame", "dog 50% of the frame"]


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.tf
def test_task_and_data_mismatches_are_one_line_errors(tmp_path: Path) -> None:
    wrong_task = run_cli(
        "train", "--arch", "ssdlite_mobilenet_v2_035", "--task", "classify", "--out", str(tmp_path / "a")
    )
    assert wrong_task.returncode == 2 and wrong_task.stderr.strip() == (
        "edgecnn train: error: --task classify does not match architecture ssdlite_mobilenet_v2_035, "
        "which is a detect model; drop --task"
    )
    wrong_data = run_cli("train", "--arch", "unet", "--data", "digits", "--out", str(tmp_path / "b"))
    assert wrong_data.returncode == 2 and "Traceback" not in wrong_data.stderr
    assert "digits" in wrong_data.stderr and "masks/" in wrong_data.stderr
    assert not (tmp_path / "b" / "model.keras").exists()


# ------------------------------------------------------------------------------- the recorded targets
@pytest.mark.slow  # the full recipes: about 5 minutes each on 2 cores
@pytest.mark.parametrize(
    ("recipe", "metric"),
    [("ssdlite_mobilenet_v2_035_shapes.yaml", "map50"), ("unet_mobilenet_v2_shapes_seg.yaml", "miou")],
)
def test_recipe_meets_its_target(recipe: str, metric: str, tmp_path: Path) -> None:
    from edgecnn.core.config import load_train_config
    from edgecnn.pipelines.convert import ConvertOptions, convert
    from edgecnn.pipelines.train import train

    config = load_train_config(ROOT / "training" / recipe)
    config.out = str(tmp_path / "run")
    trained = train(config, verbose=0)
    report = convert(trained.model_path, None, ConvertOptions(format="int8"))
    assert trained.metrics["val_metric"] >= 0.80 and report.accuracy["tflite"] >= 0.80
    assert abs(report.accuracy["delta_points"]) <= 2.0
