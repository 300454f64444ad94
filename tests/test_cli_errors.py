"""Bad input: one line naming the value and the fix, exit code 2, no traceback, no partial output."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli


def assert_one_line_error(result, expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0], errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.tf
def test_unknown_architecture_suggests_close_names(tmp_path: Path) -> None:
    result = run_cli("train", "--arch", "mobilenet_v22", "--out", str(tmp_path / "r"))
    assert_one_line_error(result, "unknown architecture 'mobilenet_v22'; did you mean mobilenet_v2")
    assert not (tmp_path / "r").exists()


@pytest.mark.tf
def test_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.keras"
    assert_one_line_error(run_cli("convert", str(missing), "--int8"), f"model file not found: {missing}")
    assert_one_line_error(run_cli("benchmark", str(tmp_path / "x.tflite")), "model file not found")


@pytest.mark.tf
def test_corrupt_tflite_and_keras(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    assert_one_line_error(run_cli("benchmark", str(bad)), f"not a valid .tflite model: {bad}")
    bad_keras = tmp_path / "bad.keras"
    bad_keras.write_bytes(b"garbage")
    assert_one_line_error(
        run_cli("convert", str(bad_keras), "--int8"), f"corrupt Keras model: {bad_keras} is not a .keras archive"
    )


def test_tflite_where_keras_needed_and_reverse(digits_run: Path) -> None:
    tflite = digits_run / "model_int8.tflite"
    assert_one_line_error(
        run_cli("convert", str(tflite), "--int8"),
        f"{tflite} is a .tflite model; this command needs the Keras model (.keras)",
    )
    keras_model = digits_run / "model.keras"
    assert_one_line_error(
        run_cli("benchmark", str(keras_model)),
        f"{keras_model} is a Keras model; this command runs .tflite models: edgecnn convert",
    )
    assert_one_line_error(run_cli("demo", "--model", str(keras_model), "--no-display"), "is a Keras model")


@pytest.mark.tf
def test_empty_and_unreadable_data_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(
        run_cli("train", "--data", str(empty), "--out", str(tmp_path / "r")), f"no class subfolders in {empty}"
    )
    (tmp_path / "junk" / "cat").mkdir(parents=True)
    (tmp_path / "junk" / "cat" / "a.jpg").write_bytes(b"broken")
    result = run_cli("train", "--data", str(tmp_path / "junk"), "--out", str(tmp_path / "r2"))
    assert_one_line_error(
        result, f"no readable images in {tmp_path / 'junk'} (1 unreadable, e.g. {tmp_path / 'junk' / 'cat' / 'a.jpg'})"
    )


def test_calibration_folder_without_images(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = run_cli("convert", str(digits_run / "model.keras"), "--int8", "--calib", str(tmp_path), "-o", str(out))
    assert_one_line_error(result, f"no readable images in calibration folder {tmp_path}")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_output_in_missing_or_read_only_folder(digits_run: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "m.tflite"
    assert_one_line_error(
        run_cli("convert", str(digits_run / "model.keras"), "--int8", "-o", str(missing)),
        f"output folder does not exist: {missing.parent}",
    )
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the missing-folder case above still ran")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert_one_line_error(
            run_cli("convert", str(digits_run / "model.keras"), "-o", str(ro / "m.tflite")),
            f"output folder is not writable: {ro}",
        )
    finally:
        ro.chmod(0o700)


def test_camera_that_does_not_open(digits_run: Path) -> None:
    result = run_cli("demo", "--model", str(digits_run / "model_int8.tflite"), "--source", "97", "--no-display")
    assert_one_line_error(result, "camera 97 does not open")


def test_threads_zero() -> None:
    assert_one_line_error(
        run_cli("benchmark", "m.tflite", "--threads", "0"), "argument --threads: 0 is not allowed; use 1.."
    )


def test_random_calibration_needs_asking_and_warns(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.tflite"
    result = run_cli(
        "convert", str(digits_run / "model.keras"), "--int8", "--calib", "random", "-o", str(out), "--no-eval"
    )
    assert result.returncode == 0, result.stderr
    assert "warning: calibrating on random noise (--calib random)" in result.stderr
    assert out.is_file()


def test_no_partial_output_when_conversion_fails(digits_run: Path, tmp_path: Path, monkeypatch) -> None:
    from edgecnn.convert import export as export_path
    from edgecnn.core.errors import EdgecnnError
    from edgecnn.pipelines import convert as conv

    def boom(*args, **kwargs):
        raise EdgecnnError("simulated failure")

    monkeypatch.setattr(export_path, "embed_tflite_info", boom)  # fails after the converter, before the write
    with pytest.raises(EdgecnnError, match="simulated failure"):
        conv.convert(digits_run / "model.keras", tmp_path / "x.tflite", conv.ConvertOptions(format="float32"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.tf
def test_unwritable_run_folder_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("train", "--epochs", "1", "--out", str(blocker / "run"))
    assert_one_line_error(result, f"cannot create run folder {blocker / 'run'}")
    shutil.rmtree(tmp_path)
