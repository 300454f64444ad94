"""Detection and segmentation through the whole product path, as a user runs it: ``edgecnn train`` on the
built-in data (task taken from the architecture), ``convert --int8`` (task from the model's metadata),
``eval`` of the .tflite with TensorFlow blocked, ``demo`` on a folder of frames, ``benchmark``, ``optimize
--qat`` and the ``--task`` agreement check.

Runs are short (CI budget: a few epochs at 96x96), so the accuracy asserted here is "learned something and
the int8 model matches its Keras self"; the accuracy targets (mAP@0.5 and mean IoU >= 0.80, int8 within 2
points) are met by the full recipes in training/ and recorded by ``python training/zoo.py``, and asserted
under ``-m slow`` below.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_cli
from test_light_runtime import probe

SIZE = 96


def _train(arch: str, data: str, out: Path, epochs: int, batch: int) -> Path:
    from edgecnn.config import TrainConfig
    from edgecnn.training.fit import train

    config = TrainConfig(arch=arch, data=data, img=SIZE, epochs=epochs, batch=batch, lr=3e-3, seed=0, out=str(out))
    return train(config, verbose=0).run_dir


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("ssdlite_mobilenet_v2_035", "shapes", tmp_path_factory.mktemp("detect") / "run", 8, 32)


@pytest.fixture(scope="module")
def segment_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("unet_mobilenet_v2", "shapes-seg", tmp_path_factory.mktemp("segment") / "run", 5, 16)


def _convert(run: Path) -> dict:
    result = run_cli("convert", str(run), "--int8", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _frames(data: str, folder: Path, n: int = 6) -> Path:
    """Validation images of a built-in set as PNG files: the demo's folder source."""
    from edgecnn.tasks import get_task

    task = get_task("detect" if data == "shapes" else "segment")
    val = task.load(data, 160, None, 0, 0.2).val
    folder.mkdir()
    for i, image in enumerate(val.x[:n]):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


# ---------------------------------------------------------------------------------------------- detect
def test_detect_run_folder_and_metadata(detect_run: Path) -> None:
    from edgecnn.metadata import read_keras_info

    metrics = json.loads((detect_run / "metrics.json").read_text())
    info = read_keras_info(detect_run / "model.keras")
    print(metrics)
    assert metrics["task"] == "detect" and metrics["metric"] == "map50" and metrics["val_images"] == 240
    assert metrics["val_map50"] > 0.2  # 8 short epochs learn the shapes (the full recipe reaches 0.85)
    assert info.task == "detect" and info.labels == ["circle", "square", "triangle"]
    assert info.extra["box_scale"] == [10.0, 10.0, 5.0, 5.0]
    assert [level["feature_size"] for level in info.extra["anchors"]["levels"]] == [
        [12, 12],
        [6, 6],
        [3, 3],
        [2, 2],
        [1, 1],
    ]
    assert (detect_run / "labels.txt").read_text().split() == info.labels
    assert (detect_run / "curves.png").stat().st_size > 0


def test_detect_int8_keeps_map_and_carries_its_decoding(detect_run: Path) -> None:
    from edgecnn.metadata import read_tflite_info

    report = _convert(detect_run)
    print(report["accuracy"])
    assert report["inputs"][0]["dtype"] == "uint8" and report["inputs"][0]["shape"] == [1, SIZE, SIZE, 3]
    assert sorted(o["shape"] for o in report["outputs"]) == [[1], [1, 25], [1, 25], [1, 25, 4]]
    assert report["ops"]["TFLite_Detection_PostProcess"] == 1
    assert report["accuracy"]["metric"] == "map50" and report["accuracy"]["images"] == 240
    assert abs(report["accuracy"]["delta_points"]) <= 2.0
    assert report["accuracy"]["detection_agreement"] >= 0.9
    info = read_tflite_info(report["output"])
    assert info.task == "detect" and info.quantization == "int8" and info.extra["anchors"]["levels"]


def test_detect_eval_and_demo_without_tensorflow(detect_run: Path, tmp_path: Path) -> None:
    model = detect_run / "model_int8.tflite"
    if not model.is_file():
        _convert(detect_run)
    result = probe("eval", str(model), "--json")
    assert result.returncode == 0 and "LEAKED []" in result.stdout, result.stderr
    metrics = json.loads(result.stdout.splitlines()[0])
    assert metrics["task"] == "detect" and 0.2 < metrics["map50"] <= 1.0 and metrics["images"] == 240

    frames = _frames("shapes", tmp_path / "frames")
    out = tmp_path / "demo.mp4"
    result = probe("demo", "--model", str(model), "--source", str(frames), "--no-display", "--save", str(out), "--json")
    assert result.returncode == 0 and "LEAKED []" in result.stdout, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["frames"] == 6
    capture = cv2.VideoCapture(str(out))
    ok, frame = capture.read()
    assert ok and frame.shape == (160, 160, 3)


def test_detect_benchmark_and_task_mismatch(detect_run: Path) -> None:
    model = detect_run / "model_int8.tflite"
    if not model.is_file():
        _convert(detect_run)
    bench = run_cli("benchmark", str(model), "--runs", "5", "--json")
    assert bench.returncode == 0 and json.loads(bench.stdout)["runs"] == 5
    wrong = run_cli("eval", str(model), "--task", "segment")
    assert wrong.returncode == 2
    assert wrong.stderr.strip().endswith(f"--task segment does not match {model}, which is a detect model; drop --task")


def test_detect_qat_through_optimize(detect_run: Path, tmp_path: Path) -> None:
    from edgecnn.optimize.pipeline import OptimizeConfig, optimize

    rows = {
        r.name: r for r in optimize(detect_run, OptimizeConfig(qat=True, epochs=1, bench_runs=5, out=str(tmp_path)))
    }
    print({k: (r.keras_score, r.tflite_score) for k, r in rows.items()})
    assert rows["qat"].metric == "map50"
    assert abs(rows["qat"].tflite_score - rows["qat"].keras_score) <= 0.02  # the int8 file is the QAT model
    assert rows["qat"].tflite_score >= rows["ptq_int8"].tflite_score - 0.05
    assert "mAP@0.5" in (tmp_path / "report.md").read_text()


def test_distillation_of_a_detector_is_refused(detect_run: Path) -> None:
    result = run_cli("optimize", str(detect_run), "--distill-from", str(detect_run))
    assert result.returncode == 2
    assert "--distill-from trains on soft class targets; this is a detect model" in result.stderr


# --------------------------------------------------------------------------------------------- segment
def test_segment_trains_converts_and_keeps_iou(segment_run: Path) -> None:
    metrics = json.loads((segment_run / "metrics.json").read_text())
    report = _convert(segment_run)
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
        _convert(segment_run)
    result = probe("eval", str(model), "--json")
    assert result.returncode == 0 and "LEAKED []" in result.stdout, result.stderr
    metrics = json.loads(result.stdout.splitlines()[0])
    assert metrics["task"] == "segment" and set(metrics["per_class_iou"]) == {
        "background",
        "circle",
        "square",
        "triangle",
    }
    frames = _frames("shapes-seg", tmp_path / "frames", 3)
    result = probe("demo", "--model", str(model), "--source", str(frames), "--no-display", "--json")
    assert result.returncode == 0 and "LEAKED []" in result.stdout, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["frames"] == 3


def test_overlays_draw_boxes_and_masks() -> None:
    from edgecnn.demo.overlay import class_colour, draw_detections, draw_segmentation
    from edgecnn.runtime.detect import Detection
    from edgecnn.runtime.segment import Segmentation

    frame = np.zeros((120, 160, 3), np.uint8)
    draw_detections(frame, [Detection(1, "square", 0.9, (20, 30, 80, 100))])
    assert tuple(frame[60, 20]) == class_colour(1)  # the box's left edge
    mask = np.zeros((120, 160), np.uint8)
    mask[:, 100:] = 2
    shown = draw_segmentation(np.full((120, 160, 3), 200, np.uint8), Segmentation(mask, ["bg", "a", "b"]))
    assert (shown[10, 10] == 200).all()  # background is left clear
    expected = (np.array([200, 200, 200]) * 0.5 + np.array(class_colour(1)) * 0.5).astype(np.uint8)
    assert (shown[10, 150] == expected).all()


# ------------------------------------------------------------------------------- the recorded targets
@pytest.mark.slow  # the full recipes: about 5 minutes each on 2 cores
@pytest.mark.parametrize(
    ("recipe", "metric"),
    [("ssdlite_mobilenet_v2_035_shapes.yaml", "map50"), ("unet_mobilenet_v2_shapes_seg.yaml", "miou")],
)
def test_recipe_meets_its_target(recipe: str, metric: str, tmp_path: Path) -> None:
    from edgecnn.config import load_train_config
    from edgecnn.convert.tflite import ConvertOptions, convert
    from edgecnn.training.fit import train

    config = load_train_config(ROOT / "training" / recipe)
    config.out = str(tmp_path / "run")
    trained = train(config, verbose=0)
    report = convert(trained.model_path, None, ConvertOptions(format="int8"))
    assert trained.metrics["val_metric"] >= 0.80 and report.accuracy["tflite"] >= 0.80
    assert abs(report.accuracy["delta_points"]) <= 2.0
