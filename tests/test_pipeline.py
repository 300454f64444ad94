"""The spine end to end on digits: train -> convert -> eval -> benchmark -> demo, through the CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import fake_compiler, run_cli

from edgecnn.core.metadata import read_keras_info, read_tflite_info

BENCH_KEYS = {
    "model",
    "runtime",
    "delegate",
    "threads",
    "runs",
    "init_ms",
    "first_inference_ms",
    "latency_ms",
    "fps",
    "peak_rss_mb",
    "model_bytes",
    "undelegated_ops",
}


def test_run_folder_is_complete(digits_run: Path) -> None:
    for name in ("model.keras", "labels.txt", "config.yaml", "history.csv", "curves.png", "metrics.json"):
        assert (digits_run / name).is_file(), name
    assert (digits_run / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    config = yaml.safe_load((digits_run / "config.yaml").read_text())
    assert config["arch"] == "lenet5" and config["seed"] == 0 and config["epochs"] == 20
    history = (digits_run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss,accuracy") and len(history) == 21
    assert cv2.imread(str(digits_run / "curves.png")) is not None


def test_float_accuracy_and_int8_within_one_point(digits_run: Path) -> None:
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["val_top1"] >= 0.97, metrics["val_top1"]
    result = run_cli("eval", str(digits_run / "model_int8.tflite"), "--json")
    assert result.returncode == 0, result.stderr
    int8 = json.loads(result.stdout)
    assert int8["images"] == metrics["val_images"] == 359
    assert abs(int8["top1"] - metrics["val_top1"]) <= 0.010, (int8["top1"], metrics["val_top1"])
    assert int8["runtime"].startswith("ai_edge_litert")


def test_keras_and_float32_tflite_agree(digits_run: Path) -> None:
    from edgecnn.pipelines.evaluate import evaluate

    keras_result = evaluate(digits_run / "model.keras")
    tflite_result = evaluate(digits_run / "model_float32.tflite")
    assert keras_result["top1"] == tflite_result["top1"]
    assert keras_result["confusion"] == tflite_result["confusion"]


def test_tflite_is_self_describing(digits_run: Path) -> None:
    info = read_tflite_info(digits_run / "model_int8.tflite")
    assert info is not None
    assert (info.task, info.labels, info.input_size, info.channels, info.pixel_format) == (
        "classify",
        [str(d) for d in range(10)],
        [32, 32],
        1,
        "gray",
    )
    assert info.quantization == "int8" and info.extra["io"] == "uint8"
    assert info.data == {"spec": "digits", "seed": 0, "val_fraction": 0.2}
    assert read_keras_info(digits_run / "model.keras").labels == info.labels


def test_int8_model_takes_uint8_pixels_losslessly(digits_run: Path) -> None:
    from edgecnn.runtime import load_model

    model = load_model(digits_run / "model_int8.tflite")
    assert model.input["dtype"] == np.uint8 and model.outputs[0]["dtype"] == np.uint8
    assert model.input["quantization"] == (1.0, 0)  # 0..255 pixels map to themselves


def test_convert_prints_report_with_accuracy(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    result = run_cli(
        "convert", str(digits_run / "model.keras"), "--int8", "--calib", "digits", "-o", str(out), "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["bytes"] == out.stat().st_size
    assert report["inputs"][0]["dtype"] == "uint8" and report["inputs"][0]["shape"] == [1, 32, 32, 1]
    assert report["ops"]["CONV_2D"] == 2 and "DELEGATE" not in report["ops"]
    assert report["calibration"] == "200 images from digits (train split)"
    assert abs(report["accuracy"]["delta_points"]) <= 1.0
    assert report["accuracy"]["top1_agreement"] >= 0.98


@pytest.mark.parametrize(
    "fmt,io,dtype",
    [
        ("float16", None, "float32"),
        ("dynamic", None, "float32"),
        ("int8", "int8", "int8"),
        ("int8", "float32", "float32"),
    ],
)
def test_every_format_converts_and_keeps_accuracy(
    digits_run: Path, tmp_path: Path, fmt: str, io: str | None, dtype: str
) -> None:
    from edgecnn.pipelines.convert import ConvertOptions, convert

    report = convert(digits_run / "model.keras", tmp_path / f"{fmt}.tflite", ConvertOptions(format=fmt, io=io))
    assert report.inputs[0]["dtype"] == dtype
    assert abs(report.accuracy["delta_points"]) <= 1.0
    assert read_tflite_info(tmp_path / f"{fmt}.tflite").quantization == fmt


def test_benchmark_json_two_models(digits_run: Path) -> None:
    models = [str(digits_run / "model_int8.tflite"), str(digits_run / "model_float32.tflite")]
    result = run_cli("benchmark", *models, "--threads", "2", "--runs", "20", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["model"] for r in rows] == models
    for r in rows:
        assert set(r) == BENCH_KEYS
        assert set(r["latency_ms"]) == {"mean", "std", "min", "p50", "p90", "p99", "max"}
        assert r["runs"] == 20 and r["threads"] == 2 and r["delegate"] == "xnnpack"
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["fps"] == pytest.approx(1000 / lat["mean"], rel=0.01)
        assert r["model_bytes"] == Path(r["model"]).stat().st_size and r["peak_rss_mb"] > 10


def test_benchmark_verbose_names_the_ops_outside_xnnpack(digits_run: Path, tmp_path: Path) -> None:
    """LeNet-5 int8: XNNPACK leaves only the uint8<->int8 QUANTIZE at the edges and the final int8 SOFTMAX
    (its average pools are exact depthwise convolutions); with --all-int8 the int8 AVERAGE_POOL_2D too.
    float32 is delegated whole."""
    strict = tmp_path / "strict.tflite"
    converted = run_cli("convert", str(digits_run), "--int8", "--all-int8", "--no-eval", "-o", str(strict))
    assert converted.returncode == 0, converted.stderr
    models = [str(digits_run / "model_int8.tflite"), str(strict), str(digits_run / "model_float32.tflite")]
    rows = [json.loads(line) for line in run_cli("benchmark", *models, "--runs", "5", "--json").stdout.splitlines()]
    assert rows[0]["undelegated_ops"] == ["QUANTIZE", "SOFTMAX", "QUANTIZE"]
    assert rows[1]["undelegated_ops"] == ["QUANTIZE", "AVERAGE_POOL_2D", "AVERAGE_POOL_2D", "SOFTMAX", "QUANTIZE"]
    assert rows[2]["undelegated_ops"] == []
    text = run_cli("benchmark", *models, "--runs", "5", "-v").stdout.splitlines()
    assert "model_int8.tflite: outside xnnpack: QUANTIZE x2, SOFTMAX x1 (plain kernels" in text[-3]
    assert "strict.tflite: outside xnnpack: QUANTIZE x2, AVERAGE_POOL_2D x2, SOFTMAX x1 (plain kernels" in text[-2]
    assert text[-1] == "model_float32.tflite: the xnnpack delegate runs every op"


def test_benchmark_table_and_time_budget(digits_run: Path) -> None:
    result = run_cli("benchmark", str(digits_run / "model_int8.tflite"), "--seconds", "0.5", "--delegate", "none")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "delegate none" in lines[0] and "p50" in lines[1] and "model_int8.tflite" in lines[3]


def test_demo_on_video_saves_annotated_clip(digits_run: Path, digits_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = run_cli(
        "demo",
        "--model",
        str(digits_run / "model_int8.tflite"),
        "--source",
        str(digits_clip),
        "--save",
        str(out),
        "--no-display",
        "--max-frames",
        "24",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == 24 and summary["fps"] > 0
    stages = summary["stages_ms"]  # every stage that ran (no window: no display stage), p50 <= p90
    assert list(stages) == ["capture", "preprocess", "invoke", "postprocess", "draw", "write"]
    assert all(0 < ms["p50"] <= ms["p90"] for ms in stages.values()), stages
    # capture -> written spans each of the frame's later stages, so its percentiles are at least theirs (true
    # frame by frame, hence of the order statistics: no tolerance, and no claim about how fast anything is)
    latency = summary["latency_ms"]
    later = ("preprocess", "invoke", "postprocess", "draw", "write")
    assert all(latency[q] >= stages[s][q] for s in later for q in ("p50", "p90")), (latency, stages)
    assert summary["mean_inference_ms"] > 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (256, 256)
    assert not list(tmp_path.glob(".*tmp*"))


def test_demo_classifies_images_correctly(digits_run: Path, tmp_path: Path) -> None:
    """Overlay results on real frames: each digit image in a folder gets its own label on top."""
    from edgecnn.data import load_split
    from edgecnn.pipelines.demo.loop import LoopOptions, run_demo
    from edgecnn.runtime import load_model
    from edgecnn.video.sources import open_source

    val = load_split("digits", "classify", 32, None, 0, 0.2).val
    for i in range(20):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), cv2.resize(val.x[i], (128, 128)))
    seen: list[str] = []
    interval = sys.getswitchinterval()
    stats = run_demo(
        load_model(digits_run / "model_int8.tflite"),
        open_source(str(tmp_path / "*.png")),
        options=LoopOptions(display=False),
        on_frame=lambda frame, result: seen.append(result[0].label),
    )
    assert stats.frames == 20
    assert sys.getswitchinterval() == interval  # the loop's shorter GIL hand-over ends with it
    correct = sum(label == str(y) for label, y in zip(seen, val.y[:20], strict=True))
    assert correct >= 18, (seen, val.y[:20].tolist())


def test_eval_plots_confusion_matrix(digits_run: Path) -> None:
    result = run_cli("eval", str(digits_run / "model_int8.tflite"), "--plots")
    assert result.returncode == 0, result.stderr
    png = digits_run / "model_int8_confusion.png"
    assert f"confusion matrix: {png}" in result.stdout
    assert cv2.imread(str(png)).shape[0] > 300


@pytest.mark.tf
def test_quickstart_runs_the_whole_path(tmp_path: Path) -> None:
    """The README's first command (shortened to 3 epochs): train, convert, eval, benchmark, demo, summary."""
    out = tmp_path / "qs"
    result = run_cli("quickstart", "--out", str(out), "--epochs", "3")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert "quickstart summary (lenet5 on digits)" in result.stdout
    assert summary["keras_top1"] > 0.8 and abs(summary["int8_top1"] - summary["keras_top1"]) <= 0.01
    assert summary["float32_top1"] == pytest.approx(summary["keras_top1"], abs=0.003)
    assert summary["int8_bytes"] < summary["float32_bytes"] / 3
    assert summary["demo_frames"] == 120 and (out / "demo.mp4").stat().st_size > 0


COMPILER_LOG = """Edge TPU Compiler version 16.0.384591198

Model compiled successfully in 542 ms.

Input model: model_int8.tflite
Output model: model_int8_edgetpu.tflite
On-chip memory used for caching model parameters: 70.00KiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 9
Number of operations that will run on Edge TPU: 9
Number of operations that will run on CPU: 0
"""


def test_convert_edgetpu_without_compiler_checks_and_says_how_to_compile(digits_run: Path, tmp_path: Path) -> None:
    """``--edgetpu`` is a row of the formats table: int8 with uint8 I/O, the op check, and with no compiler
    on PATH the exact command to compile elsewhere."""
    out = tmp_path / "lenet_int8.tflite"
    env = {"PATH": str(tmp_path / "no-compiler"), "EDGETPU_COMPILER": ""}
    result = run_cli("convert", str(digits_run / "model.keras"), "--edgetpu", "-o", str(out), "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "edgetpu" and report["output"] == str(out) and out.is_file()
    assert report["inputs"][0]["dtype"] == "uint8" and report["outputs"][0]["dtype"] == "uint8"
    after = report["after"]
    assert after["model"] == str(out) and after["compiler"] is None and after["compiled"] is None
    assert isinstance(after["check"]["fully_mapped"], bool) and after["check"]["counted"] > 0
    assert f"edgetpu_compiler -s -o {tmp_path} {out}" in after["instructions"]
    text = run_cli("convert", str(digits_run / "model.keras"), "--edgetpu", "-o", str(out), env=env)
    assert text.returncode == 0, text.stderr
    assert "Edge TPU check of" in text.stdout and "sudo apt-get install edgetpu-compiler" in text.stdout


def test_convert_edgetpu_runs_the_compiler(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "lenet_int8.tflite"
    env = {"EDGETPU_COMPILER": str(fake_compiler(tmp_path, COMPILER_LOG))}
    result = run_cli("convert", str(digits_run / "model.keras"), "--edgetpu", "-o", str(out), "--json", env=env)
    assert result.returncode == 0, result.stderr
    after = json.loads(result.stdout)["after"]
    compiled = tmp_path / "lenet_int8_edgetpu.tflite"
    assert after["compiled"] == str(compiled) and compiled.read_bytes() == out.read_bytes()
    assert after["compiler"]["version"] == "16.0.384591198"
    assert (after["result"]["ops_on_edgetpu"], after["result"]["ops_on_cpu"], after["result"]["success"]) == (
        9,
        0,
        True,
    )


def test_convert_reads_a_recipe_and_flags_override_it(digits_run: Path, tmp_path: Path) -> None:
    """The recipes in convert/ are what `--config` reads; a flag given beside one wins."""
    recipe = Path(__file__).resolve().parents[1] / "convert" / "int8_float_io.yaml"
    out = tmp_path / "a.tflite"
    result = run_cli("convert", str(digits_run / "model.keras"), "--config", str(recipe), "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "int8" and report["inputs"][0]["dtype"] == "float32"
    assert report["calibration"] == "200 images from the run's validation images"
    result = run_cli(
        "convert", str(digits_run / "model.keras"), "--config", str(recipe), "--io", "uint8", "--calib-samples", "16",
        "-o", str(out), "--json", "--no-eval",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["inputs"][0]["dtype"] == "uint8" and report["calibration"].startswith("16 images")
    assert report["accuracy"] == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: int8\nbits: 4\n")
    result = run_cli("convert", str(digits_run / "model.keras"), "--config", str(bad), "-o", str(tmp_path / "b.tflite"))
    assert result.returncode == 2 and not (tmp_path / "b.tflite").exists()
    unknown = f"edgecnn convert: error: unknown keys in {bad}: bits; valid keys: all_int8, calib,"
    assert result.stderr.startswith(unknown)


def test_demo_prints_the_stage_table(digits_run: Path, digits_clip: Path) -> None:
    model = str(digits_run / "model_int8.tflite")
    result = run_cli("demo", "--model", model, "--source", str(digits_clip), "--no-display", "--max-frames", "10")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("demo: 10 frames in ") and "invoke" in lines[0]
    assert lines[1].split() == ["stage", "p50", "ms", "p90", "ms"]
    assert [line.split()[0] for line in lines[2:]] == ["capture", "preprocess", "invoke", "postprocess", "draw", "end"]


def test_benchmark_source_runs_the_demo_pipeline(digits_run: Path, digits_clip: Path) -> None:
    """`--source`: the whole camera loop beside the invoke-only numbers, and its ratio to the inference bound."""
    model = str(digits_run / "model_int8.tflite")
    result = run_cli("benchmark", model, "--threads", "1", "--runs", "20", "--source", str(digits_clip), "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert set(row) == BENCH_KEYS | {"pipeline"}
    pipe = row["pipeline"]
    assert pipe["source"] == str(digits_clip) and pipe["frames"] == 20
    assert list(pipe["stages_ms"]) == ["capture", "preprocess", "invoke", "postprocess", "draw"]
    assert pipe["inference_bound_fps"] == pytest.approx(1000 / row["latency_ms"]["p50"], rel=0.01)
    assert pipe["ratio"] == pytest.approx(pipe["fps"] / pipe["inference_bound_fps"], abs=1e-3)
    text = run_cli("benchmark", model, "--runs", "10", "--source", str(digits_clip))
    assert text.returncode == 0, text.stderr
    assert "model_int8.tflite in the demo pipeline on " in text.stdout and "x of the inference-bound" in text.stdout
    missing = run_cli("benchmark", model, "--source", "no-such-clip.mp4")
    assert missing.returncode == 2 and missing.stderr.startswith("edgecnn benchmark: error: source not found")


def test_a_failing_demo_thread_ends_the_run_with_one_line(digits_run: Path, digits_clip: Path, tmp_path: Path) -> None:
    """An exception in the inference or capture thread ends the run (no hang), names the thread, and leaves
    no partial video behind."""
    from edgecnn.core.errors import EdgecnnError
    from edgecnn.pipelines.demo.loop import LoopOptions, run_demo
    from edgecnn.runtime import load_model
    from edgecnn.tasks.classify import ClassifyTask
    from edgecnn.video.sources import Source, open_source

    class Broken(ClassifyTask):
        def read(self, model: object, frame_shape: tuple, top_k: int, threshold: float) -> list:
            raise ValueError("output is not a score vector")

    model = load_model(digits_run / "model_int8.tflite")
    out = tmp_path / "out.mp4"
    with pytest.raises(
        EdgecnnError, match=r"^the demo's postprocess failed: ValueError: output is not a score vector$"
    ):
        run_demo(model, open_source(str(digits_clip)), Broken(), LoopOptions(save=out, display=False))
    assert list(tmp_path.iterdir()) == []

    def invoke() -> None:
        raise RuntimeError("tensor index out of range")

    failing = load_model(digits_run / "model_int8.tflite")
    failing.invoke = invoke  # type: ignore[method-assign]
    with pytest.raises(
        EdgecnnError, match=r"^the demo's inference thread failed: RuntimeError: tensor index out of range$"
    ):
        run_demo(failing, open_source(str(digits_clip)), None, LoopOptions(save=out, display=False))
    assert list(tmp_path.iterdir()) == []

    def frames() -> Iterator[np.ndarray]:
        yield np.zeros((64, 64, 3), np.uint8)
        raise OSError("USB device disconnected")

    with pytest.raises(EdgecnnError, match=r"^the demo's capture thread failed: OSError: USB device disconnected$"):
        run_demo(model, Source("fake", False, 10.0, frames()), None, LoopOptions(display=False))


def test_eval_on_another_folder_measures_all_of_it(digits_run: Path, tmp_path: Path) -> None:
    """A folder that is not the model's training data is a test set: every image counts, not a 20% split."""
    from edgecnn.data import load_split

    val = load_split("digits", "classify", 32, None, 0, 0.2).val
    for i in range(40):
        folder = tmp_path / "test" / str(int(val.y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), val.x[i])
    for d in range(10):  # every class folder exists, as in the model's labels
        (tmp_path / "test" / str(d)).mkdir(exist_ok=True)
    whole = json.loads(
        run_cli("eval", str(digits_run / "model_int8.tflite"), "--data", str(tmp_path / "test"), "--json").stdout
    )
    assert whole["images"] == 40 and whole["split"] == "all" and whole["top1"] >= 0.9
    part = run_cli("eval", str(digits_run / "model_int8.tflite"), "--data", str(tmp_path / "test"), "--split", "val")
    assert part.returncode == 0 and " validation images, " in part.stdout.splitlines()[0], part.stdout + part.stderr
    held_out = int(part.stdout.split(" validation images")[0].rsplit("(", 1)[1])
    assert 6 <= held_out <= 10  # the stratified 20% of 40 images
