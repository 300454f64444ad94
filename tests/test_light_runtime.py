"""The Pi path stays light: benchmark, eval of a .tflite and demo never import TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_light_cli


@pytest.mark.parametrize("model_file", ["model_int8.tflite", "model_float32.onnx"])
@pytest.mark.parametrize("command", ["benchmark", "demo", "eval"])
def test_command_never_imports_tensorflow(
    command: str, model_file: str, digits_run: Path, digits_clip: Path, tmp_path: Path
) -> None:
    if model_file.endswith(".onnx"):  # through ONNX Runtime, the onnx extra
        pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'edgecnn[onnx]'")
        from test_onnx_runtime import onnx_of

        onnx_of(digits_run)
    model = str(digits_run / model_file)
    args = {
        "benchmark": ["benchmark", model, "--runs", "5"],
        "demo": [
            "demo",
            "--model",
            model,
            "--source",
            str(digits_clip),
            "--no-display",
            "--max-frames",
            "5",
            "--save",
            str(tmp_path / "o.mp4"),
        ],
        "eval": ["eval", model],
    }[command]
    result = run_light_cli(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LEAKED []" in result.stdout
    # onnxruntime is imported for .onnx models only: a .tflite command stays as light as before
    assert f"ONNXRUNTIME {model_file.endswith('.onnx')}" in result.stdout


def test_light_modules_import_without_tensorflow() -> None:
    code = (
        "import sys, edgecnn.runtime, edgecnn.benchmarks.latency, edgecnn.pipelines.demo.loop, edgecnn.cli;"
        "print(sorted(m for m in sys.modules if m.startswith('tensorflow')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
