"""Detection through the whole product path, as a user runs it: ``edgecnn train`` on the
built-in data (task taken from the architecture), ``convert --int8`` (task from the model's metadata),
``eval`` of the .tflite with TensorFlow blocked, ``demo`` on a folder of frames, ``benchmark``, ``optimize
--qat`` and the ``--task`` agreement check.

Runs are short (CI budget: a few epochs at 96x96), so the accuracy asserted here is "learned something and
the int8 model matches its Keras self"; the accuracy targets (mAP@0.5 and mean IoU >= 0.80, int8 within 2
points) are met by the full recipes in training/ and recorded by ``python training/zoo.py``, and asserted
under ``-m slow`` in test_segment_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from conftest import run_cli, run_light_cli
from e2e_common import SIZE, convert_int8, train_run, write_frames

pytestmark = pytest.mark.tf  # trains a detector: not in the fast lane


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run("ssdlite_mobilenet_v2_035", "shapes", tmp_path_factory.mktemp("detect") / "run", 8, 32)


# ---------------------------------------------------------------------------------------------- detect
def test_detect_run_folder_and_metadata(detect_run: Path) -> None:
    from edgecnn.core.metadata import read_keras_info

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
    from edgecnn.core.metadata import read_tflite_info

    report = convert_int8(detect_run)
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
        convert_int8(detect_run)
    result = run_light_cli("eval", str(model), "--json")
    assert result.returncode == 0 and "LEAKED []" in result.stdout, result.stderr
    metrics = json.loads(result.stdout.splitlines()[0])
    assert metrics["task"] == "detect" and 0.2 < metrics["map50"] <= 1.0 and metrics["images"] == 240

    frame_folder = write_frames("shapes", tmp_path / "frames")
    out = tmp_path / "demo.mp4"
    result = run_light_cli(
        "demo", "--model", str(model), "--source", str(frame_folder), "--no-display", "--save", str(out), "--json"
    )
    assert result.returncode == 0 and "LEAKED []" in result.stdout, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["frames"] == 6
    capture = cv2.VideoCapture(str(out))
    ok, frame = capture.read()
    assert ok and frame.shape == (160, 160, 3)


def test_detect_benchmark_and_task_mismatch(detect_run: Path) -> None:
    model = detect_run / "model_int8.tflite"
    if not model.is_file():
        convert_int8(detect_run)
    bench = run_cli("benchmark", str(model), "--runs", "5", "--json")
    assert bench.returncode == 0 and json.loads(bench.stdout)["runs"] == 5
    for command in ("eval", "benchmark"):
        wrong = run_cli(command, str(model), "--task", "segment")
        assert wrong.returncode == 2, command
        assert wrong.stderr.strip() == (
            f"edgecnn {command}: error: --task segment does not match {model}, which is a detect model; drop --task"
        )
    keras_model = detect_run / "model.keras"
    for command in ("convert", "optimize"):
        extra = ["--qat"] if command == "optimize" else []
        wrong = run_cli(command, str(detect_run / "model.keras"), *extra, "--task", "classify")
        assert wrong.returncode == 2, command
        assert wrong.stderr.strip().endswith(f"does not match {keras_model}, which is a detect model; drop --task")


def test_detect_qat_through_optimize(detect_run: Path, tmp_path: Path) -> None:
    from edgecnn.pipelines.optimize import OptimizeConfig, optimize

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
