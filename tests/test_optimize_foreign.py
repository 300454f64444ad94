"""``edgecnn optimize MODEL.keras --data DIR`` for a Keras model edgecnn did not train: a classifier on a
nested functional backbone (the shape of a keras.applications model), saved as a bare .keras file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecnn.cli import main

pytestmark = pytest.mark.tf  # builds and optimizes Keras models: not in the fast lane


def foreign_model(path: Path, classes: int = 2) -> Path:
    """A keras.applications-style classifier, scaled down: in-graph rescaling, a nested Functional backbone
    (conv-BN-ReLU6 twice), pooling and a softmax head; no edgecnn record, no run folder."""
    from edgecnn.core.keras_env import keras

    keras.utils.set_random_seed(0)
    inner = keras.Input((32, 32, 3))
    y = inner
    for i, filters in enumerate((8, 16)):
        y = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"conv{i}")(y)
        y = keras.layers.BatchNormalization(name=f"bn{i}")(y)
        y = keras.layers.ReLU(6.0, name=f"relu{i}")(y)
    backbone = keras.Model(inner, y, name="tiny_backbone")
    inputs = keras.Input((32, 32, 3), name="image")
    x = backbone(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="head")(x), name="foreign")
    model.save(path)
    return path


def test_optimize_a_foreign_keras_model_on_a_folder(image_folder: Path, tmp_path: Path, capsys) -> None:
    model = foreign_model(tmp_path / "foreign.keras")
    out = tmp_path / "optimized"
    args = ["optimize", str(model), "--prune", "0.5", "--cluster", "4", "--qat", "--epochs", "1"]
    assert main([*args, "--data", str(image_folder), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "flatten: nested model" in text  # the QAT plan inlines the backbone
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "%" in line]
    assert rows == ["float32", "ptq_int8", "prune", "prune+cluster", "prune+cluster+qat"]
    from edgecnn.core.metadata import read_keras_info, read_tflite_info
    from edgecnn.optimize.common import sparsity
    from edgecnn.trainer.load import load_keras

    final = out / "3_prune+cluster+qat"
    info = read_keras_info(final / "model.keras")  # the optimized model now carries a record
    assert info.labels == ["astronaut", "coffee"] and info.data["spec"] == str(image_folder)
    assert info.input_size == [32, 32] and info.channels == 3
    assert read_tflite_info(final / "model_int8.tflite").labels == ["astronaut", "coffee"]
    pruned, _ = load_keras(out / "1_prune" / "model.keras")
    assert sparsity(pruned) >= 0.45  # --prune 0.5 reached, on the backbone's kernels too
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["metric"] == "top1" and 0.0 <= metrics["tflite_score"] <= 1.0


def test_optimize_foreign_model_errors(image_folder: Path, tmp_path: Path, capsys) -> None:
    model = foreign_model(tmp_path / "foreign.keras")
    assert main(["optimize", str(model), "--qat", "--out", str(tmp_path / "o")]) == 2
    assert "does not record its dataset; optimize fine-tunes on it: pass --data" in capsys.readouterr().err
    three = foreign_model(tmp_path / "three.keras", classes=3)
    assert main(["optimize", str(three), "--qat", "--data", str(image_folder), "--out", str(tmp_path / "o")]) == 2
    assert "has 2 classes but the model outputs 3" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
