""".onnx models behind the .tflite adapters: OnnxModel's interface, eval / benchmark / demo with --provider
(same result objects and JSON keys, runtime naming onnxruntime), provider errors as one line, the
provider chain and its silent-fallback check (fakes), doctor's onnxruntime / CUDA / TensorRT findings.
CUDA, TensorRT and OpenVINO run only where their provider is available, else they skip saying so."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'edgecnn[onnx]'")

from edgecnn.cli import main  # noqa: E402
from edgecnn.core.errors import EdgecnnError  # noqa: E402
from edgecnn.pipelines import doctor as dr  # noqa: E402
from edgecnn.pipelines.doctor import OK, WARN, Finding  # noqa: E402
from edgecnn.runtime.onnx import PROVIDERS, OnnxModel, provider_chain  # noqa: E402

AVAILABLE = ort.get_available_providers()


def onnx_of(run: Path, fmt: str = "float32") -> Path:
    """The run's model as .onnx (converted once per session and worker, without the accuracy report)."""
    from edgecnn.pipelines.convert import ConvertOptions, convert

    path = run / f"model_{fmt}.onnx"
    if not path.exists():
        convert(run / "model.keras", path, ConvertOptions(format=fmt, onnx=True, evaluate=False))
    return path


@pytest.fixture(scope="module")
def digits_onnx(digits_run: Path) -> Path:
    return onnx_of(digits_run)


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_onnx_model_reads_like_a_tflite_model(digits_run: Path, digits_onnx: Path) -> None:
    from edgecnn.data import load_split
    from edgecnn.runtime import TFLiteModel

    model = OnnxModel(digits_onnx, threads=1)
    assert model.input_shape == (1, 32, 32, 1) and model.input_hw == (32, 32) and model.channels == 1
    assert model.pixel_format == "gray" and model.labels == [str(i) for i in range(10)]
    assert model.info is not None and model.info.task == "classify" and model.info.quantization == "float32"
    assert model.info.extra["io"] == "float32" and model.info.data["spec"] == "digits"
    assert (model.backend.name, model.backend.version) == ("onnxruntime", ort.__version__)
    assert model.delegate == "cpu" and model.undelegated_ops() == []
    images = load_split("digits", "classify", 32, None, 0, 0.2).val.x[:24]
    probs = model.predict(images)
    assert probs.shape == (24, 10) and probs.dtype == np.float32
    # the same float model in LiteRT: the two runtimes agree to float rounding
    np.testing.assert_allclose(probs, TFLiteModel(digits_run / "model_float32.tflite").predict(images), atol=1e-5)
    model.set_input(images[3])
    model.invoke()
    frame = model.snapshot()
    model.set_input(images[4])
    model.invoke()  # the snapshot keeps the earlier run
    np.testing.assert_array_equal(frame.output(0)[0], probs[3])
    assert frame.labels == model.labels


def test_eval_json_matches_the_tflite_keys(digits_run: Path, digits_onnx: Path, capsys) -> None:
    rc, out, _ = cli(capsys, "eval", str(digits_onnx), "--provider", "cpu", "--threads", "1", "--json")
    onnx_result = json.loads(out)
    assert rc == 0 and onnx_result["runtime"] == f"onnxruntime {ort.__version__}"
    rc, out, _ = cli(capsys, "eval", str(digits_run / "model_float32.tflite"), "--threads", "1", "--json")
    tflite_result = json.loads(out)
    assert set(onnx_result) == set(tflite_result)
    assert onnx_result["top1"] == tflite_result["top1"] and onnx_result["images"] == 359


def test_benchmark_runs_tflite_and_onnx_in_one_table(digits_run: Path, digits_onnx: Path, capsys) -> None:
    tflite = str(digits_run / "model_float32.tflite")
    rc, out, _ = cli(capsys, "benchmark", tflite, str(digits_onnx), "--runs", "5", "--provider", "cpu", "--json")
    first, second = (json.loads(line) for line in out.splitlines())
    assert rc == 0 and set(first) == set(second)
    assert first["runtime"].startswith("ai_edge_litert") and first["delegate"] == "xnnpack"
    assert second["runtime"] == f"onnxruntime {ort.__version__}" and second["delegate"] == "cpu"
    assert second["runs"] == 5 and second["undelegated_ops"] == [] and second["latency_ms"]["p50"] > 0
    rc, out, _ = cli(capsys, "benchmark", tflite, str(digits_onnx), "--runs", "3")
    assert f"onnxruntime {ort.__version__}, provider cpu" in out.splitlines()[0]
    assert "onnxruntime cpu" in out and "ai_edge_litert xnnpack" in out  # the runtime column of a mixed table


def test_demo_runs_an_onnx_model(digits_onnx: Path, digits_clip: Path, tmp_path: Path, capsys) -> None:
    save = tmp_path / "o.mp4"
    args = ["demo", "--model", str(digits_onnx), "--source", str(digits_clip), "--no-display", "--max-frames", "6"]
    rc, out, err = cli(capsys, *args, "--save", str(save), "--provider", "cpu", "-v", "--json")
    assert rc == 0 and json.loads(out)["frames"] == 6 and save.stat().st_size > 0
    assert f"runtime: onnxruntime {ort.__version__}, provider cpu" in err


def test_provider_errors_are_one_line(digits_run: Path, digits_onnx: Path, capsys) -> None:
    missing = next(name for name, p in PROVIDERS.items() if p.ep not in AVAILABLE)
    rc, out, err = cli(capsys, "eval", str(digits_onnx), "--provider", missing)
    have = ", ".join(n for n, p in PROVIDERS.items() if p.ep in AVAILABLE)
    assert rc == 2 and err == (
        f"edgecnn eval: error: --provider {missing} is not available in onnxruntime {ort.__version__} here "
        f"(available: {have}); {PROVIDERS[missing].needs}\n"
    )
    rc, _, err = cli(capsys, "benchmark", str(digits_run / "model_int8.tflite"), "--provider", "cpu")
    assert rc == 2 and "--provider cpu applies to .onnx models and every model given is a .tflite" in err
    rc, _, err = cli(capsys, "demo", "--model", str(digits_onnx), "--delegate", "none", "--no-display")
    assert rc == 2 and "--delegate none applies to .tflite models and every model given is an .onnx" in err
    with pytest.raises(SystemExit):  # argparse: not one of cpu, cuda, tensorrt, openvino
        main(["eval", str(digits_onnx), "--provider", "gpu"])
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_a_damaged_onnx_is_one_line(digits_onnx: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(digits_onnx.read_bytes()[:500])
    rc, _, err = cli(capsys, "benchmark", str(bad))
    assert rc == 2 and err.startswith(f"edgecnn benchmark: error: cannot load model {bad}: ") and err.count("\n") == 1
    import onnx

    from edgecnn.core.metadata import METADATA_NAME

    proto = onnx.load(str(digits_onnx))
    next(p for p in proto.metadata_props if p.key == METADATA_NAME).value = '{"labels": 7}'
    onnx.save(proto, str(tmp_path / "record.onnx"))
    with pytest.raises(EdgecnnError, match=r"corrupt \.onnx model: .*record\.onnx \(edgecnn metadata field 'labels'"):
        OnnxModel(tmp_path / "record.onnx")


def fake_ort(*available: str, session_providers: list[str] | None = None) -> SimpleNamespace:
    """An onnxruntime stand-in: its providers, and sessions that report ``session_providers``."""
    return SimpleNamespace(
        __version__="9.9.9",
        get_available_providers=lambda: list(available),
        SessionOptions=lambda: SimpleNamespace(),
        InferenceSession=lambda path, options, providers: SimpleNamespace(
            get_providers=lambda: session_providers or [p if isinstance(p, str) else p[0] for p in providers]
        ),
        capi=SimpleNamespace(onnxruntime_pybind11_state=SimpleNamespace()),
    )


def test_provider_chain_and_silent_fallback(tmp_path: Path) -> None:
    gpu = fake_ort("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    model = tmp_path / "m.onnx"
    chain = provider_chain("tensorrt", gpu, model)
    assert [p if isinstance(p, str) else p[0] for p in chain] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    options = chain[0][1]  # fp16 engines, cached beside the model
    assert options["trt_fp16_enable"] and options["trt_engine_cache_enable"] and not options["trt_int8_enable"]
    assert provider_chain("tensorrt", gpu, model, int8=True)[0][1]["trt_int8_enable"]  # an int8 QDQ model
    assert options["trt_engine_cache_path"] == str(tmp_path / "m_trt_cache")
    assert provider_chain("cuda", gpu, model) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(EdgecnnError, match=r"^--provider openvino is not available in onnxruntime 9\.9\.9 here \("):
        provider_chain("openvino", gpu, model)
    model.write_bytes(b"stand-in")
    fell_back = fake_ort("CUDAExecutionProvider", "CPUExecutionProvider", session_providers=["CPUExecutionProvider"])
    with pytest.raises(EdgecnnError, match=r"--provider cuda did not start for .*m\.onnx \(onnxruntime ran "):
        OnnxModel(model, provider="cuda", ort=fell_back)


def _needs(provider: str) -> None:
    if PROVIDERS[provider].ep not in AVAILABLE:
        pytest.skip(
            f"--provider {provider} cannot run here: onnxruntime {ort.__version__} has {', '.join(AVAILABLE)} "
            f"({PROVIDERS[provider].needs})"
        )


@pytest.mark.parametrize("provider", ["cuda", "tensorrt", "openvino"])
def test_accelerated_providers_where_present(provider: str, digits_run: Path, digits_onnx: Path, capsys) -> None:
    _needs(provider)
    rc, out, _ = cli(capsys, "eval", str(digits_onnx), "--provider", provider, "--json")
    assert rc == 0 and json.loads(out)["runtime"] == f"onnxruntime {ort.__version__}"
    cpu = json.loads(cli(capsys, "eval", str(digits_onnx), "--json")[1])
    assert abs(json.loads(out)["top1"] - cpu["top1"]) <= 0.01  # fp16 engines may flip an image or two
    if provider == "tensorrt":
        assert any((digits_run / "model_float32_trt_cache").iterdir())  # the engine, cached beside the model


def test_doctor_reports_onnxruntime_cuda_and_tensorrt() -> None:
    cpu_only = lambda: ("1.32.0", ["CPUExecutionProvider"])  # noqa: E731
    gpu = lambda: ("1.32.0", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])  # noqa: E731
    assert dr.check_onnxruntime(cpu_only) == Finding(
        "onnxruntime", OK, "onnxruntime 1.32.0: --provider cpu (CPUExecutionProvider)"
    )
    assert dr.check_onnxruntime(lambda: None).detail.startswith("not installed; only .onnx models need it")
    assert dr.check_onnxruntime(gpu).detail.startswith("onnxruntime 1.32.0: --provider cpu, cuda, tensorrt (")
    h200 = lambda: ("12.8", ["NVIDIA H200"])  # noqa: E731
    assert dr.check_cuda(h200, gpu) == Finding("cuda", OK, "CUDA driver 12.8, 1 GPU: NVIDIA H200")
    assert dr.check_cuda(h200, cpu_only).status == WARN  # a GPU, but onnxruntime without the CUDA provider
    assert dr.check_cuda(lambda: None, gpu).status == WARN  # onnxruntime-gpu, but no driver
    assert dr.check_cuda(lambda: None, cpu_only).status == OK
    assert dr.check_tensorrt(lambda: "10.3.0", gpu) == Finding("tensorrt", OK, "TensorRT 10.3.0")
    assert dr.check_tensorrt(lambda: None, gpu).fix == "pip install tensorrt (or NVIDIA's TensorRT packages)"
    assert dr.check_tensorrt(lambda: None, cpu_only) == Finding(
        "tensorrt", OK, "not installed; only --provider tensorrt needs it"
    )
    for code, text in ((100300, "10.3.0"), (8601, "8.6.1")):  # TensorRT 10 and 8 encode their versions apart
        library = SimpleNamespace(getInferLibVersion=lambda code=code: code)
        assert dr.tensorrt_version(lambda name: "libnvinfer.so.x", lambda name, lib=library: lib) == text


@pytest.mark.parametrize("command", ["eval", "benchmark", "demo"])
def test_provider_choices_are_the_table(command: str) -> None:
    import argparse

    from edgecnn.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    provider = next(a for a in sub._actions if "--provider" in a.option_strings)
    assert tuple(provider.choices) == tuple(PROVIDERS) == ("cpu", "cuda", "tensorrt", "openvino")
