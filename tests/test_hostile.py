"""A corpus of bad inputs, as a careless or hostile user gives them: every one ends with exit code 2, at most
3 lines on stderr naming the bad value, no traceback, and no file written, changed or left behind.

The commands run in this process (``edgecnn.cli.main``): TensorFlow is imported once, so the whole corpus
takes seconds, not the minutes of a subprocess per case. ``tests/test_cli_errors.py`` runs the installed
entry point on a few of the same mistakes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.cli import main

# (case id, argv with {w} = the sandbox and {run} = a trained digits run, text the error line must contain)
CASES: list[tuple[str, str, str]] = [
    # --- numbers out of range, not numbers, not finite
    ("train-img-3", "train --img 3 --out {w}/r", "--img: 3 is not allowed; use 16..2048"),
    ("train-img-huge", "train --img 100000 --out {w}/r", "100000 is not allowed; use 16..2048"),
    ("train-img-text", "train --img abc --out {w}/r", "'abc' is not a whole number; use 16..2048"),
    ("train-img-negative", "train --img -5 --out {w}/r", "-5 is not allowed; use 16..2048"),
    ("train-lr-nan", "train --lr nan --out {w}/r", "nan is not allowed; use a finite positive number"),
    ("train-lr-inf", "train --lr inf --out {w}/r", "inf is not allowed; use a finite positive number"),
    ("train-lr-zero", "train --lr 0 --out {w}/r", "0 is not allowed; use a finite positive number"),
    ("train-lr-negative", "train --lr -0.1 --out {w}/r", "-0.1 is not allowed"),
    ("train-lr-text", "train --lr fast --out {w}/r", "'fast' is not a number"),
    ("train-epochs-zero", "train --epochs 0 --out {w}/r", "0 is not allowed; use 1 or more"),
    ("train-epochs-fraction", "train --epochs 2.5 --out {w}/r", "'2.5' is not a whole number"),
    ("train-batch-zero", "train --batch 0 --out {w}/r", "--batch: 0 is not allowed"),
    ("train-val-zero", "train --val-fraction 0 --out {w}/r", "0 is not allowed; use a number in (0, 1)"),
    ("train-val-one", "train --val-fraction 1 --out {w}/r", "1 is not allowed; use a number in (0, 1)"),
    ("train-val-big", "train --val-fraction 1.5 --out {w}/r", "1.5 is not allowed"),
    ("train-val-nan", "train --val-fraction nan --out {w}/r", "nan is not allowed"),
    ("train-channels-2", "train --channels 2 --out {w}/r", "--channels: invalid choice: 2"),
    ("train-arch-unknown", "train --arch lenet6 --out {w}/r", "unknown architecture 'lenet6'"),
    ("train-option-no-equals", "train --option alpha --out {w}/r", "'alpha' is not KEY=VALUE"),
    ("train-option-unknown", "train --option wings=2 --out {w}/r", "lenet5 has no option wings"),
    ("train-fine-tune-epochs-0", "train --fine-tune-epochs 0 --out {w}/r", "--fine-tune-epochs: 0 is not"),
    ("train-task-mismatch", "train --arch lenet5 --task detect --out {w}/r", "detect"),
    ("bench-threads-zero", "benchmark {run}/model_int8.tflite --threads 0", "0 is not allowed; use 1.."),
    ("bench-threads-huge", "benchmark {run}/model_int8.tflite --threads 100000", "100000 is not allowed; use 1.."),
    ("bench-threads-text", "benchmark {run}/model_int8.tflite --threads many", "'many' is not a whole number"),
    ("bench-runs-zero", "benchmark {run}/model_int8.tflite --runs 0", "0 is not allowed; use 1 or more"),
    ("bench-seconds-inf", "benchmark {run}/model_int8.tflite --seconds inf", "inf is not allowed"),
    ("bench-seconds-nan", "benchmark {run}/model_int8.tflite --seconds nan", "nan is not allowed"),
    ("bench-seconds-zero", "benchmark {run}/model_int8.tflite --seconds 0", "0 is not allowed"),
    ("bench-warmup-negative", "benchmark {run}/model_int8.tflite --warmup -1", "-1 is not allowed; use 0 or more"),
    ("bench-delegate-unknown", "benchmark {run}/model_int8.tflite --delegate gpu", "--delegate: invalid choice"),
    ("demo-threads-huge", "demo --model {run}/model_int8.tflite --threads 100000 --no-display", "100000 is not"),
    ("demo-top-k-zero", "demo --model {run}/model_int8.tflite --top-k 0 --no-display", "--top-k: 0 is not"),
    ("demo-threshold-big", "demo --model {run}/model_int8.tflite --threshold 1.5 --no-display", "use a number in"),
    ("demo-threshold-nan", "demo --model {run}/model_int8.tflite --threshold nan --no-display", "nan is not"),
    ("demo-threshold-negative", "demo --model {run}/model_int8.tflite --threshold -0.1 --no-display", "-0.1"),
    ("demo-max-frames-zero", "demo --model {run}/model_int8.tflite --max-frames 0 --no-display", "--max-frames"),
    ("demo-retries-negative", "demo --model {run}/model_int8.tflite --max-retries -1 --no-display", "-1 is not"),
    ("demo-serve-text", "demo --model {run}/model_int8.tflite --serve abc --source {w}/clip.mp4 --no-display", "abc"),
    ("demo-serve-port-huge", "demo --model {run}/model_int8.tflite --serve 70000 --no-display", "70000"),
    ("eval-threads-zero", "eval {run}/model_int8.tflite --threads 0", "0 is not allowed"),
    ("eval-split-unknown", "eval {run}/model_int8.tflite --split test", "--split: invalid choice: 'test'"),
    ("opt-prune-big", "optimize {run} --prune 1.5", "1.5 is not allowed; use a number in (0, 1)"),
    ("opt-prune-one", "optimize {run} --prune 1", "1 is not allowed; use a number in (0, 1)"),
    ("opt-prune-zero", "optimize {run} --prune 0", "0 is not allowed"),
    ("opt-prune-nan", "optimize {run} --prune nan", "nan is not allowed"),
    ("opt-cluster-one", "optimize {run} --cluster 1", "1 is not allowed; use 2 or more"),
    ("opt-alpha-two", "optimize {run} --qat --alpha 2", "2 is not allowed; use a number in [0, 1]"),
    ("opt-alpha-negative", "optimize {run} --qat --alpha -1", "-1 is not allowed"),
    ("opt-temperature-inf", "optimize {run} --qat --temperature inf", "inf is not allowed"),
    ("opt-lr-nan", "optimize {run} --qat --lr nan", "nan is not allowed"),
    ("opt-epochs-zero", "optimize {run} --qat --epochs 0", "0 is not allowed"),
    ("opt-nothing", "optimize {run}", "nothing to do"),
    ("opt-teacher-missing", "optimize {run} --distill-from {w}/teacher.keras", "model file not found"),
    ("opt-model-missing", "optimize {w}/nope.keras --qat", "model file not found"),
    ("profile-img-3", "profile lenet5 --img 3", "3 is not allowed; use 16..2048"),
    ("profile-too-small", "profile convnext_atto --img 16", "convnext_atto cannot take a 16x16 input"),
    ("profile-unknown", "profile lenet6", "lenet6"),
    ("profile-classes-zero", "profile lenet5 --classes 0", "0 is not allowed"),
    ("check-img-3", "check lenet5 --img 3", "3 is not allowed"),
    ("check-runtime-zero", "check lenet5 --runtime 0", "0 is not allowed"),
    ("check-missing", "check {w}/nope.tflite --edgetpu", "nope.tflite"),
    ("convert-calib-samples-zero", "convert {run} --int8 --calib-samples 0 -o {w}/o.tflite", "0 is not allowed"),
    ("convert-io-unknown", "convert {run} --int8 --io int4 -o {w}/o.tflite", "--io: invalid choice"),
    ("convert-two-formats", "convert {run} --int8 --float32 -o {w}/o.tflite", "not allowed with argument"),
    ("convert-io-float16", "convert {run} --float16 --io uint8 -o {w}/o.tflite", "--io uint8 does not apply"),
    # --- outputs: never over an input, the right extension, a writable place
    ("convert-onto-its-model", "convert {w}/model.keras --float32 -o {w}/model.keras", "must end in .tflite"),
    ("convert-onto-model-tflite", "convert {w}/m.tflite.keras --float32 -o {w}/m.tflite.keras", "must end in"),
    ("convert-output-txt", "convert {run} --float32 -o {w}/out.txt", "output {w}/out.txt must end in .tflite"),
    ("convert-output-no-folder", "convert {run} --float32 -o {w}/nope/out.tflite", "output folder does not exist"),
    ("convert-output-is-folder", "convert {run} --float32 -o {w}/folder.tflite", "output path is a folder"),
    ("convert-output-under-a-file", "convert {run} --float32 -o {w}/notes.txt/o.tflite", "notes.txt is a file"),
    (
        "demo-save-onto-source",
        "demo --model {run}/model_int8.tflite --source {w}/clip.mp4 --save {w}/clip.mp4 --no-display --max-frames 3",
        "is the input file",
    ),
    (
        "demo-save-onto-model",
        "demo --model {w}/model_int8.mp4 --source {w}/clip.mp4 --save {w}/model_int8.mp4 --no-display",
        "is the input file",
    ),
    (
        "demo-save-txt",
        "demo --model {run}/model_int8.tflite --source {w}/clip.mp4 --save {w}/out.txt --no-display",
        "--save {w}/out.txt must end in .mp4",
    ),
    (
        "demo-save-no-folder",
        "demo --model {run}/model_int8.tflite --source {w}/clip.mp4 --save {w}/nope/o.mp4 --no-display",
        "--save folder does not exist",
    ),
    ("train-out-is-file", "train --out {w}/notes.txt", "is a file"),
    ("train-out-under-a-file", "train --out {w}/notes.txt/run", "notes.txt is a file"),
    # --- models: missing, of the wrong kind, damaged
    ("convert-missing", "convert {w}/nope.keras --int8", "model file not found"),
    ("convert-tflite-input", "convert {run}/model_int8.tflite --int8", "is a .tflite model"),
    ("convert-garbage-keras", "convert {w}/garbage.keras --int8", "corrupt Keras model"),
    ("convert-empty-keras", "convert {w}/empty.keras --int8", "corrupt Keras model"),
    ("convert-text-as-h5", "convert {w}/notes.h5 --int8", "notes.h5"),
    ("convert-folder-without-model", "convert {w}/empty_folder --int8", "empty_folder"),
    (
        "convert-other-classes",
        "convert {run} --float32 --data {w}/other_classes -o {w}/o.tflite",
        "has classes ['cat', 'dog'] but the model was trained on",
    ),
    ("bench-missing", "benchmark {w}/nope.tflite", "model file not found"),
    ("bench-keras", "benchmark {run}/model.keras", "is a Keras model"),
    ("bench-garbage", "benchmark {w}/garbage.tflite", "garbage.tflite"),
    ("bench-empty", "benchmark {w}/empty.tflite", "empty.tflite"),
    ("bench-truncated", "benchmark {w}/truncated.tflite", "truncated.tflite"),
    ("bench-text", "benchmark {w}/notes.txt", "notes.txt"),
    ("bench-source-missing", "benchmark {run}/model_int8.tflite --source {w}/nope.mp4", "nope.mp4"),
    ("bench-source-garbage", "benchmark {run}/model_int8.tflite --source {w}/garbage.mp4", "garbage.mp4"),
    ("demo-model-missing", "demo --model {w}/nope.tflite --no-display", "model file not found"),
    ("demo-model-garbage", "demo --model {w}/garbage.tflite --source {w}/clip.mp4 --no-display", "garbage.tflite"),
    ("demo-model-keras", "demo --model {run}/model.keras --no-display", "is a Keras model"),
    ("demo-source-missing", "demo --model {run}/model_int8.tflite --source {w}/nope.mp4 --no-display", "nope.mp4"),
    (
        "demo-source-garbage",
        "demo --model {run}/model_int8.tflite --source {w}/garbage.mp4 --no-display",
        "garbage.mp4",
    ),
    (
        "demo-source-empty-folder",
        "demo --model {run}/model_int8.tflite --source {w}/empty_folder --no-display",
        "empty_folder",
    ),
    ("demo-camera-absent", "demo --model {run}/model_int8.tflite --source 97 --max-retries 0 --no-display", "97"),
    ("eval-missing", "eval {w}/nope.tflite", "model file not found"),
    ("eval-data-missing", "eval {run}/model_int8.tflite --data {w}/nope", "dataset not found: '{w}/nope'"),
    ("eval-other-classes", "eval {run}/model_int8.tflite --data {w}/other_classes", "has classes ['cat', 'dog']"),
    ("eval-keras-other-classes", "eval {run}/model.keras --data {w}/other_classes", "has classes ['cat', 'dog']"),
    ("eval-detection-data", "eval {run}/model_int8.tflite --data {w}/coco", "looks like a COCO detect dataset"),
    # --- recipes (YAML): syntax, tags, types, keys, values
    ("yaml-missing", "train --config {w}/nope.yaml --out {w}/r", "config file not found"),
    (
        "yaml-epochs-text",
        "train --config {w}/epochs_text.yaml --out {w}/r",
        "epochs_text.yaml:1: epochs: expected a whole number, got 'ten'",
    ),
    ("yaml-img-list", "train --config {w}/img_list.yaml --out {w}/r", "img_list.yaml:2: img: expected a whole number"),
    ("yaml-syntax", "train --config {w}/syntax.yaml --out {w}/r", "syntax.yaml:2: not valid YAML"),
    ("yaml-python-tag", "train --config {w}/python_tag.yaml --out {w}/r", "python_tag.yaml:1: not valid YAML"),
    ("yaml-unknown-key", "train --config {w}/unknown_key.yaml --out {w}/r", "unknown keys in"),
    ("yaml-list", "train --config {w}/a_list.yaml --out {w}/r", "a recipe is a mapping"),
    ("yaml-lr-nan", "train --config {w}/lr_nan.yaml --out {w}/r", "lr: expected a finite number"),
    ("yaml-lr-negative", "train --config {w}/lr_negative.yaml --out {w}/r", "--lr must be a finite positive number"),
    ("yaml-img-small", "train --config {w}/img_small.yaml --out {w}/r", "--img must be 16..2048 pixels, got 4"),
    ("yaml-epochs-bool", "train --config {w}/epochs_bool.yaml --out {w}/r", "epochs: expected a whole number"),
    ("yaml-binary", "train --config {w}/binary.yaml --out {w}/r", "binary.yaml"),
    ("yaml-val-fraction", "train --config {w}/val_big.yaml --out {w}/r", "--val-fraction must be between 0 and 1"),
    (
        "yaml-convert-samples-text",
        "convert {run} --config {w}/convert_text.yaml -o {w}/o.tflite",
        "calib_samples: expected a whole number",
    ),
    ("yaml-convert-format", "convert {run} --config {w}/convert_format.yaml -o {w}/o.tflite", "unknown format"),
    # --- datasets that cannot train what is asked
    ("data-one-class", "train --data {w}/one_class --epochs 1 --out {w}/r", "only 1 class with images (a)"),
    ("data-no-images", "train --data {w}/no_images --epochs 1 --out {w}/r", "no readable images"),
    ("data-all-corrupt", "train --data {w}/corrupt_images --epochs 1 --out {w}/r", "no readable images"),
    ("data-coco-to-classifier", "train --data {w}/coco --epochs 1 --out {w}/r", "looks like a COCO detect dataset"),
    ("data-yolo-to-classifier", "train --data {w}/yolo_bad --epochs 1 --out {w}/r", "looks like a YOLO detect"),
    ("data-masks-to-classifier", "train --data {w}/masks_stray --epochs 1 --out {w}/r", "looks like a MASKS"),
    (
        "data-no-valid-box",
        "train --arch ssdlite_mobilenet_v2_035 --img 96 --data {w}/yolo_bad --epochs 1 --out {w}/r",
        "no valid box",
    ),
    (
        "data-stray-mask-value",
        "train --arch unet_mobilenet_v2 --img 32 --data {w}/masks_stray --epochs 1 --out {w}/r",
        "class id 200 is on 1 pixels only, far above the next id 1",
    ),
    ("data-file-not-folder", "train --data {w}/notes.txt --epochs 1 --out {w}/r", "notes.txt"),
    ("data-missing", "train --data {w}/nope --epochs 1 --out {w}/r", "dataset not found"),
    (
        "data-classes-to-detector",
        "train --arch ssdlite_mobilenet_v2_035 --img 96 --data {w}/other_classes --epochs 1 --out {w}/r",
        "other_classes",
    ),
]


def _png(path: Path, value: int = 128, size: int = 32, channels: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    image = rng.integers(0, 256, (size, size, channels), dtype=np.uint8) if channels > 1 else None
    cv2.imwrite(str(path), image if image is not None else np.full((size, size), value, np.uint8))


def _build_world(w: Path, run: Path, clip: Path) -> None:
    """Every file and folder the corpus points at."""
    shutil.copy(clip, w / "clip.mp4")
    shutil.copy(run / "model.keras", w / "model.keras")
    shutil.copy(run / "model.keras", w / "m.tflite.keras")
    shutil.copy(run / "model_int8.tflite", w / "model_int8.mp4")  # a model named like a video
    (w / "folder.tflite").mkdir()
    (w / "empty_folder").mkdir()
    (w / "notes.txt").write_text("not a model\n")
    (w / "notes.h5").write_text("not a model\n")
    (w / "garbage.keras").write_bytes(b"PK\x03\x04garbage" * 10)
    (w / "empty.keras").write_bytes(b"")
    (w / "garbage.tflite").write_bytes(bytes(range(256)) * 8)
    (w / "empty.tflite").write_bytes(b"")
    data = (run / "model_int8.tflite").read_bytes()
    (w / "truncated.tflite").write_bytes(data[: len(data) // 3])
    (w / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    for cls in ("cat", "dog"):
        for i in range(4):
            _png(w / "other_classes" / cls / f"{i}.png", 10 * i + (cls == "dog"), channels=1)
    for i in range(3):
        _png(w / "one_class" / "a" / f"{i}.png", i)
    (w / "no_images" / "a").mkdir(parents=True)
    (w / "no_images" / "b").mkdir(parents=True)
    for cls in ("a", "b"):
        (w / "corrupt_images" / cls).mkdir(parents=True)
        (w / "corrupt_images" / cls / "x.png").write_bytes(b"not a png")
    _png(w / "coco" / "images" / "1.png")
    (w / "coco" / "annotations").mkdir()
    coco = {"images": [{"id": 1, "file_name": "1.png", "width": 32, "height": 32}], "annotations": [],
            "categories": [{"id": 1, "name": "thing"}]}  # fmt: skip
    (w / "coco" / "annotations" / "instances.json").write_text(json.dumps(coco))
    for i in range(4):
        _png(w / "yolo_bad" / "images" / f"{i}.png", i, size=96)
        (w / "yolo_bad" / "labels").mkdir(exist_ok=True)
        (w / "yolo_bad" / "labels" / f"{i}.txt").write_text("7 0.5 0.5 0.2 0.2\n0 1.5 0.5 -3 0.2\n")
    (w / "yolo_bad" / "classes.txt").write_text("thing\n")
    for i in range(4):
        _png(w / "masks_stray" / "images" / f"{i}.png", i)
        mask = np.zeros((32, 32), np.uint8)
        mask[4:20, 4:20] = 1
        mask[0, 0] = 200 if i == 0 else 0  # one stray pixel
        (w / "masks_stray" / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(w / "masks_stray" / "masks" / f"{i}.png"), mask)
    recipes = {
        "epochs_text.yaml": "epochs: ten\n",
        "img_list.yaml": "arch: lenet5\nimg: [32, 32]\n",
        "syntax.yaml": "epochs: 3\n  lr: [\n",
        "python_tag.yaml": "arch: !!python/object/apply:os.system ['echo owned']\n",
        "unknown_key.yaml": "epochs: 3\nbits: 4\n",
        "a_list.yaml": "- epochs\n- 3\n",
        "lr_nan.yaml": "lr: .nan\n",
        "lr_negative.yaml": "lr: -0.5\n",
        "img_small.yaml": "img: 4\n",
        "epochs_bool.yaml": "epochs: yes\n",
        "val_big.yaml": "val_fraction: 3\n",
        "convert_text.yaml": "format: int8\ncalib_samples: many\n",
        "convert_format.yaml": "format: int4\n",
    }
    for name, text in recipes.items():
        (w / name).write_text(text)
    (w / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01" * 20)


def _snapshot(*folders: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folders`` by path: (mode, content hash)."""
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out[str(path)] = (path.stat().st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
            elif path.is_dir():
                out[str(path)] = (path.stat().st_mode, "dir")
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, digits_run: Path, digits_clip: Path) -> Path:
    w = tmp_path_factory.mktemp("hostile")
    _build_world(w, digits_run, digits_clip)
    return w


def test_the_corpus_is_large_and_distinct() -> None:
    names = [name for name, _, _ in CASES]
    assert len(names) >= 100 and len(set(names)) == len(names)


@pytest.mark.parametrize("name,argv,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
    name: str, argv: str, expected: str, world: Path, digits_run: Path, capsys: pytest.CaptureFixture
) -> None:
    before = _snapshot(world, digits_run)
    args = [part.format(w=world, run=digits_run) for part in argv.split()]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out, err)
    assert "Traceback" not in err + out, err
    assert 1 <= len(lines) <= 3, err
    assert expected.format(w=world, run=digits_run) in lines[-1], lines[-1]
    assert lines[-1].startswith("edgecnn "), lines[-1]
    assert _snapshot(world, digits_run) == before  # nothing written, changed or left behind


def test_outputs_get_normal_file_permissions(tmp_path: Path) -> None:
    """Written through a temp file, but readable by others as a plainly created file is (not 0600)."""
    import os

    from edgecnn.core.fileio import write_bytes

    mask = os.umask(0o022)
    try:
        path = write_bytes(tmp_path / "model.tflite", b"x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
