"""``edgecnn explain`` and ``edgecnn visualize`` on the seeded LeNet-5 digits run: the maps point at the
digit (a measured ratio against a uniform map), every method and flag writes what it says, and occlusion
of the int8 .tflite runs without TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_light_cli

from edgecnn.cli import main
from edgecnn.data import load_split
from edgecnn.insight.heatmap import mass_ratio
from edgecnn.insight.occlusion import occlusion_map
from edgecnn.runtime.interpreter import TFLiteModel

STROKE = 64  # digits pixels above this level are the digit's strokes (45% of the image on average)


@pytest.fixture(scope="module")
def val():
    return load_split("digits", "classify", 32, None, 0, 0.2).val


@pytest.fixture(scope="module")
def images(val, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("digit_images")
    paths = []
    for i in range(3):
        path = folder / f"digit{i}_{val.y[i]}.png"
        cv2.imwrite(str(path), val.x[i])
        paths.append(str(path))
    return paths


def test_gradcam_mass_lies_on_the_strokes(digits_run: Path, val) -> None:
    """Done-when: the Grad-CAM heatmap's mass inside the digit's strokes beats a uniform map's (ratio 1)."""
    from edgecnn.insight.gradcam import gradcam
    from edgecnn.trainer.load import load_keras

    model, _ = load_keras(digits_run / "model.keras")
    x = val.x[:100]
    maps, probs = gradcam(model, x, None)
    assert maps.shape == (100, 32, 32) and maps.min() >= 0 and probs.shape == (100, 10)
    ratios = np.array([mass_ratio(m, image[..., 0] > STROKE) for m, image in zip(maps, x, strict=True)])
    assert ratios.mean() > 1.2, ratios.mean()  # measured 1.43 on the zoo LeNet-5 (200 images)
    assert (ratios > 1).mean() > 0.7
    assert mass_ratio(np.ones((32, 32)), x[0, ..., 0] > STROKE) == pytest.approx(1.0)


def test_occlusion_on_int8_tflite_lies_on_the_strokes(digits_run: Path, val) -> None:
    """Done-when, deployed: occlusion of the int8 .tflite also puts its mass on the strokes."""
    runner = TFLiteModel(digits_run / "model_int8.tflite")
    ratios = []
    for image, label in zip(val.x[:20], val.y[:20], strict=True):
        heat = occlusion_map(runner.predict, image, int(label))
        assert heat.shape == (32, 32)
        ratios.append(mass_ratio(heat, image[..., 0] > STROKE))
    assert np.mean(ratios) > 1.5, ratios  # measured 2.16 with the Keras model (50 images)


def explain_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["explain", *args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["gradcam", "saliency", "smoothgrad", "occlusion"])
def test_explain_writes_overlays_and_a_grid(
    method: str, digits_run: Path, images: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = explain_json(capsys, str(digits_run / "model.keras"), *images, "--method", method, "--out", str(tmp_path))
    assert report["method"] == method and len(report["images"]) == 3
    assert report["layer"] == ("c3_act" if method == "gradcam" else None)  # the last conv's block, by default
    for row, path in zip(report["images"], images, strict=True):
        assert row["predicted"] == int(Path(path).stem.split("_")[1])  # these three are classified right
        assert row["explained"] == row["predicted"] and 0.5 < row["probability"] <= 1.0
        assert row["map_shape"] == [32, 32]
        png = cv2.imread(row["png"])
        assert png.shape[1] == 256 and png.shape[0] > 256  # enlarged 8x, with a caption band above
    grid = cv2.imread(report["grid"])
    assert grid.shape[0] > 2 * 256 and grid.shape[1] > 2 * 256  # 2x2 tiles for 3 images
    assert json.loads(Path(report["json"]).read_text()) == report


def test_explain_flags_change_the_map(
    digits_run: Path, images: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(digits_run / "model.keras")
    default = explain_json(capsys, model, images[0], "--out", str(tmp_path / "a"))
    other = (default["images"][0]["predicted"] + 1) % 10
    chosen = explain_json(capsys, model, images[0], "--class", str(other), "--out", str(tmp_path / "b"))
    assert chosen["images"][0]["explained"] == other and chosen["images"][0]["predicted"] != other
    assert chosen["grid"] is None  # one image: no grid
    early = explain_json(capsys, model, images[0], "--layer", "c1_act", "--out", str(tmp_path / "c"))
    assert early["layer"] == "c1_act"
    pngs = [cv2.imread(r["images"][0]["png"]) for r in (default, chosen, early)]
    assert np.abs(pngs[0].astype(int) - pngs[1]).mean() > 1 and np.abs(pngs[0].astype(int) - pngs[2]).mean() > 1


def test_explain_errors(digits_run: Path, images: list[str], tmp_path: Path, capsys) -> None:
    int8 = str(digits_run / "model_int8.tflite")
    assert main(["explain", int8, images[0], "--out", str(tmp_path / "x")]) == 2
    assert "--method gradcam needs gradients" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing half-written
    model = str(digits_run / "model.keras")
    assert main(["explain", model, images[0], "--class", "10", "--out", str(tmp_path / "x")]) == 2
    assert "--class 10 is not a class of this model; use 0..9" in capsys.readouterr().err
    assert main(["explain", model, images[0], "--layer", "c9", "--out", str(tmp_path / "x")]) == 2
    assert "has no layer 'c9'" in capsys.readouterr().err
    assert main(["explain", model, images[0], "--layer", "c5", "--out", str(tmp_path / "x")]) == 2
    assert "not a (batch, H, W, C) map" in capsys.readouterr().err
    assert main(["explain", model, str(tmp_path / "missing.png"), "--out", str(tmp_path / "x")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_occlusion_of_int8_tflite_never_imports_tensorflow(digits_run: Path, images: list[str], tmp_path: Path):
    args = ["explain", str(digits_run / "model_int8.tflite"), *images[:2], "--method", "occlusion"]
    done = run_light_cli(*args, "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LEAKED []" in done.stdout
    report = json.loads((tmp_path / "explain.json").read_text())
    assert [r["explained"] for r in report["images"]] == [r["predicted"] for r in report["images"]]
    assert (tmp_path / "grid_occlusion.png").is_file()


@pytest.mark.tf
def test_gradcam_finds_the_last_conv_of_a_nested_backbone() -> None:
    from edgecnn.core.keras_env import keras
    from edgecnn.insight.gradcam import gradcam
    from edgecnn.insight.layers import gradcam_layer

    keras.utils.set_random_seed(0)
    inner_in = keras.Input((16, 16, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inner_in)
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="last_conv")(y)
    y = keras.layers.ReLU(name="last_relu")(y)
    backbone = keras.Model(inner_in, y, name="backbone")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    assert gradcam_layer(model).name == "last_relu"
    maps, probs = gradcam(model, np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3)), np.array([0, 2]))
    assert maps.shape == (2, 16, 16) and probs.shape == (2, 3) and np.isfinite(maps).all()


def test_visualize_filters_and_maps(
    digits_run: Path, images: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(digits_run / "model.keras")
    assert main(["visualize", model, "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "visualize.json").read_text())["written"]
    assert [(w["kind"], w["layer"], w["kernel"]) for w in first] == [("filters", "c1", [5, 5, 1, 6])]
    assert cv2.imread(first[0]["png"]).shape[:2] == (2 * (45 + 4) + 4, 3 * (45 + 4) + 4)  # 6 tiles of 9x5 px

    capsys.readouterr()
    assert (
        main(
            [
                "visualize",
                model,
                "--filters",
                "c3",
                "--maps",
                "c1_act",
                "--image",
                images[0],
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    assert "feature maps of c1_act (28, 28, 6)" in capsys.readouterr().out
    written = json.loads((tmp_path / "b" / "visualize.json").read_text())["written"]
    filters, maps = written
    assert filters["layer"] == "c3" and filters["kernel"] == [5, 5, 6, 16]
    assert maps["layer"] == "c1_act" and maps["shape"] == [28, 28, 6] and maps["min"] >= 0  # after ReLU
    assert maps["channels_drawn"] == 6 and cv2.imread(maps["png"]) is not None

    assert main(["visualize", model, "--maps", "c1", "--out", str(tmp_path / "c")]) == 2
    assert "--maps needs --image IMG" in capsys.readouterr().err
    assert main(["visualize", model, "--filters", "c5", "--out", str(tmp_path / "c")]) == 2
    assert "is not a convolution" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
