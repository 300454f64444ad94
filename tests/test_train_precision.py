"""--precision mixed_float16 on CPU: LeNet-5 trains under loss scaling, saves a float32 model.keras, and its
exports hold no float16 tensor; its int8 .tflite is within 1 point of the float32-policy run's (the
``digits_run`` fixture: the same recipe, seed and epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecnn.cli import main
from edgecnn.core.keras_env import flatbuffer_utils, tflite_schema

pytestmark = pytest.mark.tf  # builds Keras models at import: not in the fast lane


def float16_tensors(path: Path) -> list[str]:
    model = flatbuffer_utils.read_model(str(path))
    return [
        t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        for graph in model.subgraphs
        for t in graph.tensors
        if t.type == tflite_schema.TensorType.FLOAT16
    ]


def test_mixed_float16_run_exports_float32_clean_and_matches_float32(
    digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from edgecnn.pipelines.convert import ConvertOptions, convert
    from edgecnn.pipelines.evaluate import evaluate
    from edgecnn.trainer.load import load_keras

    run = tmp_path / "fp16"
    argv = ["train", "--arch", "lenet5", "--data", "digits", "--epochs", "20", "--seed", "0", "--out", str(run)]
    assert main([*argv, "--precision", "mixed_float16"]) == 0
    assert "training with mixed_float16 precision" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["precision"] == "mixed_float16"

    model, _ = load_keras(run)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert {w.dtype.name for w in model.weights} == {"float32"}
    reports = {fmt: convert(run / "model.keras", None, ConvertOptions(format=fmt)) for fmt in ("float32", "int8")}
    for report in reports.values():
        assert float16_tensors(report.output) == []

    mixed = evaluate(reports["int8"].output)["top1"]
    reference = evaluate(digits_run / "model_int8.tflite")["top1"]
    print(f"int8 top-1: mixed_float16 run {mixed:.4f}, float32 run {reference:.4f}")
    assert abs(mixed - reference) <= 0.01, (mixed, reference)
    assert mixed > 0.9
