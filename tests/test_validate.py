"""The model validator (edgecnn.runtime.validate) rule by rule, each with its exact one-line error, and what
a load does around it: --threads bounds, a missing Edge TPU delegate, the line a native crash leaves.

Mutants are made from the two shipped doctor models with LiteRT's generated schema (no TensorFlow): one
field changed, packed again, so the file is a valid flatbuffer whose contents contradict each other.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flatbuffers
import pytest
from ai_edge_litert import schema_py_generated as schema

from edgecnn.cli import main
from edgecnn.core.errors import EdgecnnError
from edgecnn.runtime import interpreter
from edgecnn.runtime.interpreter import TFLiteModel, find_backend
from edgecnn.runtime.validate import validate_tflite

DATA = Path(__file__).resolve().parents[1] / "edgecnn" / "edgetpu" / "data"
INT8, FLOAT = "doctor_int8", "doctor_float"  # int8: conv, conv; float: 3 x DEQUANTIZE (float16 weights), conv, conv


def unpack(seed: str) -> Any:
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray((DATA / f"{seed}.tflite").read_bytes()), 0))


def pack(model: Any) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def mutant(tmp_path: Path, seed: str, change: Callable[[Any], Any], name: str = "m") -> Path:
    model = unpack(seed)
    change(model)
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(pack(model))
    return path


def graph(model: Any) -> Any:
    return model.subgraphs[0]


def with_record(raw: bytes) -> Callable[[Any], None]:
    """A change that adds an edgecnn metadata entry holding ``raw``."""

    def change(model: Any) -> None:
        buffer = schema.BufferT()
        buffer.data = list(raw)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = "edgecnn", len(model.buffers) - 1
        model.metadata = [*model.metadata, entry]

    return change


def setter(obj: Callable[[Any], Any], field: str, value: Any) -> Callable[[Any], None]:
    return lambda model: setattr(obj(model), field, value)


PIXELS, RELU, OUT = "serving_default_pixels:0", "doctor/conv0/Relu;doctor/conv0/Conv2D", "StatefulPartitionedCall:0"
CONV1 = "doctor/conv1/Conv2D"

# (id, seed model, change, what the error says between the parentheses)
RULES: list[tuple[str, str, Callable[[Any], None], str]] = [
    # reading: every index in range
    ("op input past the end", INT8, setter(lambda m: graph(m).operators[0], "inputs", [0, 4, 7]),
     "operator 0 input 2 is tensor 7, but the subgraph has 7 tensors"),
    ("op output -1", INT8, setter(lambda m: graph(m).operators[0], "outputs", [-1]),
     "operator 0 output 0 is tensor -1, but the subgraph has 7 tensors"),
    ("graph input past the end", INT8, setter(graph, "inputs", [9]),
     "the model's input 0 is tensor 9, but the subgraph has 7 tensors"),
    ("opcode index", INT8, setter(lambda m: graph(m).operators[1], "opcodeIndex", 3),
     "operator 1 uses opcode 3, but the model has 1"),
    ("buffer index", INT8, setter(lambda m: graph(m).tensors[1], "buffer", 10),
     "tensor 1 uses buffer 10, but the model has 10"),
    ("signature tensor", INT8, setter(lambda m: m.signatureDefs[0].inputs[0], "tensorIndex", 7),
     "a signature's tensor is tensor 7, but the subgraph has 7 tensors"),
    ("name not UTF-8", INT8, setter(lambda m: graph(m).tensors[3], "name", b"caf\xe9"),
     "tensor 3 has a name that is not UTF-8"),
    # check_operators
    ("required input -1", INT8, setter(lambda m: graph(m).operators[1], "inputs", [5, -1, 3]),
     "operator 1 (CONV_2D) input 1 is missing (-1), but that input is required"),
    ("too few inputs", INT8, setter(lambda m: graph(m).operators[1], "inputs", [5]),
     "operator 1 (CONV_2D) has 1 input; it needs at least 2"),
    # check_dataflow
    ("constant as input", INT8, setter(graph, "inputs", [1]),
     f"the model's input 0 is tensor 1 ({CONV1}), a constant"),
    ("read before written", INT8, setter(lambda m: graph(m).operators[0], "inputs", [6, 4, 2]),
     f"operator 0 (CONV_2D) reads tensor 6 ({OUT}) before anything writes it"),
    ("writes a constant", INT8, setter(lambda m: graph(m).operators[1], "outputs", [1]),
     f"operator 1 (CONV_2D) writes tensor 1 ({CONV1}), a constant"),
    ("written twice", INT8, setter(lambda m: graph(m).operators[1], "outputs", [5]),
     f"tensor 5 ({RELU}) is written by operators 0 and 1"),
    ("writes the input", INT8, setter(lambda m: graph(m).operators[0], "outputs", [0]),
     f"operator 0 (CONV_2D) writes tensor 0 ({PIXELS}), an input of the model"),
    ("output nothing writes", FLOAT, lambda m: graph(m).operators.pop(),
     f"the model's output 0 is tensor 8 ({OUT}), which nothing writes"),
    # check_tensors
    ("unknown type", INT8, setter(lambda m: graph(m).tensors[5], "type", 95), f"tensor 5 ({RELU}) has unknown type 95"),
    ("negative dimension", INT8, setter(lambda m: graph(m).tensors[5], "shape", [1, -16, 16, 32]),
     f"tensor 5 ({RELU}) has shape [1, -16, 16, 32]; a dimension cannot be negative"),
    ("signature disagrees", INT8, setter(lambda m: graph(m).tensors[5], "shapeSignature", [-1, 16, 8, 32]),
     f"tensor 5 ({RELU}) has shape [1, 16, 16, 32] but shape_signature [-1, 16, 8, 32]"),
    ("huge shape", INT8, setter(lambda m: graph(m).tensors[5], "shape", [1, 16384, 16384, 32]),
     f"tensor 5 ({RELU}) has shape [1, 16384, 16384, 32]: 8,589,934,592 elements, more than the 67,108,864 allowed"),
    ("constant too short", INT8, lambda m: setattr(m.buffers[2], "data", list(m.buffers[2].data[:100])),
     f"tensor 1 ({CONV1}) holds 100 bytes, but its shape [32, 3, 3, 32] of INT8 needs 9216"),
    ("scale 0", INT8, setter(lambda m: graph(m).tensors[0].quantization, "scale", [0.0]),
     f"tensor 0 ({PIXELS}) has quantization scale 0.0; a scale must be a positive number"),
    ("scale nan", INT8, setter(lambda m: graph(m).tensors[6].quantization, "scale", [float("nan")]),
     f"tensor 6 ({OUT}) has quantization scale nan; a scale must be a positive number"),
    ("zero point count", INT8, setter(lambda m: graph(m).tensors[1].quantization, "zeroPoint", [0]),
     f"tensor 1 ({CONV1}) has 32 quantization scales but 1 zero point"),
    ("per-channel dimension", INT8, setter(lambda m: graph(m).tensors[1].quantization, "quantizedDimension", 1),
     f"tensor 1 ({CONV1}) has 32 per-channel scales along dimension 1 of its shape [32, 3, 3, 32]"),
    ("zero point range", INT8, setter(lambda m: graph(m).tensors[0].quantization, "zeroPoint", [-129]),
     f"tensor 0 ({PIXELS}) has zero point -129, outside the -128..127 of INT8"),
    # check_elementwise
    ("dequantize reshapes", FLOAT, setter(lambda m: graph(m).tensors[6], "shape", [32, 3, 4, 32]),
     "operator 2 (DEQUANTIZE) turns shape [32, 3, 3, 32] into [32, 3, 4, 32]"),
    # check_runtime
    ("float16 input", FLOAT, setter(lambda m: graph(m).tensors[0], "type", 1),
     f"its input tensor 0 ({PIXELS}) is FLOAT16; edgecnn feeds uint8, int8 or float32 inputs"),
    ("input not an image", INT8, setter(lambda m: graph(m).tensors[0], "shape", [16, 16, 32]),
     f"its input tensor 0 ({PIXELS}) has shape [16, 16, 32]; edgecnn feeds one image (1, height, width, channels)"),
    ("no output", INT8, setter(graph, "outputs", []), "the model has 1 input and 0 outputs"),
    ("string output", INT8, setter(lambda m: graph(m).tensors[6], "type", 5),
     f"its output tensor 6 ({OUT}) is STRING, not numbers"),
]  # fmt: skip


@pytest.mark.parametrize(("seed", "change", "what"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_names_the_model_and_the_cause(
    seed: str, change: Callable[[Any], None], what: str, tmp_path: Path
) -> None:
    path = mutant(tmp_path, seed, change)
    with pytest.raises(EdgecnnError) as caught:
        validate_tflite(path.read_bytes(), path)
    assert str(caught.value) == f"corrupt .tflite model: {path} ({what}); convert it again"


@pytest.mark.parametrize("seed", [INT8, FLOAT])
def test_valid_models_pass_unchanged(seed: str, tmp_path: Path) -> None:
    """The rules reject none of the shipped models, repacked or not (the mutants differ by one field only)."""
    for path in (DATA / f"{seed}.tflite", mutant(tmp_path, seed, lambda m: None)):
        model = validate_tflite(path.read_bytes(), path)
        assert len(model.subgraphs[0].operators) == {INT8: 2, FLOAT: 5}[seed]
        assert TFLiteModel(path, threads=1).input_shape == (1, 16, 16, 32)


def test_damaged_bytes_are_the_same_one_line_error(tmp_path: Path) -> None:
    """Offsets outside the file: a truncated file, a vtable before the file's start."""
    data = (DATA / f"{INT8}.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[:20000])
    with pytest.raises(EdgecnnError) as caught:
        validate_tflite(cut.read_bytes(), cut)
    what = "offset 21644 + 4 bytes lies outside the 20000-byte flatbuffer"
    assert str(caught.value) == f"corrupt .tflite model: {cut} ({what}); convert it again"
    root = int.from_bytes(data[:4], "little")
    bad = bytearray(data)
    bad[root : root + 4] = (root + 1000).to_bytes(4, "little", signed=True)  # the root table's vtable offset
    vtable = tmp_path / "vtable.tflite"
    vtable.write_bytes(bytes(bad))
    with pytest.raises(EdgecnnError) as caught:
        validate_tflite(vtable.read_bytes(), vtable)
    what = f"table at {root} has its vtable before the start of the file"
    assert str(caught.value) == f"corrupt .tflite model: {vtable} ({what}); convert it again"


# ------------------------------------------------------------------------------- the edgecnn record
RECORDS = [
    ("not JSON", b"{not json",
     "its edgecnn metadata is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
     "(char 1)"),
    ("not an object", b"[1, 2]", "its edgecnn metadata is a JSON list, not an object"),
    ("labels of the wrong type", b'{"labels": 5}', "edgecnn metadata field 'labels' is 5, not a list of strings"),
    ("size of the wrong type", b'{"input_size": "big"}',
     "edgecnn metadata field 'input_size' is \"big\", not [height, width] in pixels"),
    ("seed of the wrong type", b'{"data": {"seed": "x"}}',
     'edgecnn metadata field data.seed is "x", not a whole number'),
    ("pixel format", b'{"pixel_format": ["rgb"]}',
     "edgecnn metadata field 'pixel_format' is [\"rgb\"], not 'rgb' or 'gray'"),
    ("size disagrees", b'{"input_size": [32, 32], "channels": 3}',
     "its edgecnn metadata says 32x32x3 images, but its input has shape [1, 16, 16, 32]"),
    ("labels disagree", b'{"input_size": [16, 16], "channels": 32, "labels": ["a", "b"]}',
     "its edgecnn metadata lists 2 labels, but its output 0 has shape [1, 16, 16, 32]"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "what"), [r[1:] for r in RECORDS], ids=[r[0] for r in RECORDS])
def test_a_damaged_or_contradicting_record_is_one_line(raw: bytes, what: str, tmp_path: Path) -> None:
    path = mutant(tmp_path, INT8, with_record(raw))
    with pytest.raises(EdgecnnError) as caught:
        TFLiteModel(path, threads=1)
    assert str(caught.value) == f"corrupt .tflite model: {path} ({what}); convert it again"


def test_a_record_in_a_missing_buffer_is_one_line(tmp_path: Path) -> None:
    def change(model: Any) -> None:
        with_record(b"{}")(model)
        model.metadata[-1].buffer = 99

    path = mutant(tmp_path, INT8, change)
    with pytest.raises(EdgecnnError) as caught:
        TFLiteModel(path, threads=1)
    assert str(caught.value) == (
        f"corrupt .tflite model: {path} (metadata 'edgecnn' names buffer 99, but the model has 11); convert it again"
    )


def test_a_consistent_record_is_read(tmp_path: Path) -> None:
    raw = b'{"input_size": [16, 16], "channels": 32, "task": "segment", "labels": ["a", "b"], "arch": "x"}'
    model = TFLiteModel(mutant(tmp_path, INT8, with_record(raw)), threads=1)
    assert model.info is not None and (model.info.task, model.info.labels, model.info.arch) == (
        "segment",
        ["a", "b"],
        "x",
    )


# --------------------------------------------------------------------------------------- the CLI
def run_main(*argv: str) -> tuple[int, str]:
    """(exit code, stderr) of the CLI run in this process."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code
    return rc, err.getvalue()


def test_cli_prints_the_corrupt_model_line_and_exits_2(tmp_path: Path) -> None:
    path = mutant(tmp_path, INT8, setter(lambda m: graph(m).operators[1], "inputs", [5, -1, 3]))
    what = "operator 1 (CONV_2D) input 1 is missing (-1), but that input is required"
    for command in (["benchmark", str(path), "--runs", "1"], ["eval", str(path), "--data", str(tmp_path)]):
        assert run_main(*command) == (
            2,
            f"edgecnn {command[0]}: error: corrupt .tflite model: {path} ({what}); convert it again\n",
        )


def test_threads_are_bounded_by_the_cores() -> None:
    cores = os.cpu_count() or 1
    limit = 4 * cores
    for threads in (0, limit + 1, 100000):
        with pytest.raises(EdgecnnError) as caught:
            TFLiteModel(DATA / f"{INT8}.tflite", threads=threads)
        assert (
            str(caught.value)
            == f"--threads {threads} is out of range; use 1 to {limit} (4 per core, {cores} cores here)"
        )
    assert TFLiteModel(DATA / f"{INT8}.tflite", threads=limit).threads == limit
    rc, err = run_main("benchmark", str(DATA / f"{INT8}.tflite"), "--threads", "100000")  # the CLI checks it first
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("edgecnn benchmark: error: ") and "100000" in err


@pytest.mark.parametrize("library", ["libedgetpu-missing.so.1", "libc.so.6"])
def test_a_delegate_that_does_not_load_leaves_one_line(library: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteRT's Delegate raises from __init__; its half-built object's __del__ used to print a traceback
    (AttributeError: no _library) after our line. libc loads but is no delegate (no plugin symbols)."""
    if library == "libc.so.6" and not sys.platform.startswith("linux"):
        pytest.skip("glibc's name")
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(interpreter, "EDGETPU_LIBRARY", dict.fromkeys(("Linux", "Darwin", "Windows"), library))
    rc, err = run_main("benchmark", str(DATA / f"{INT8}.tflite"), "--delegate", "edgetpu")
    gc.collect()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"edgecnn benchmark: error: cannot load the Edge TPU delegate {library} (")
    assert err.endswith(
        "); install the Edge TPU runtime (Debian package libedgetpu1-std) and plug in the accelerator\n"
    )
    assert ("tflite_plugin_create_delegate" in err) == (library == "libc.so.6")
    assert unraisable == []


# ------------------------------------------------------------------------- crashes, in subprocesses
# What the raw interpreter (LiteRT 2.3, XNNPACK) segfaulted on, each checked before the validator existed.
CRASHED: list[tuple[str, str, Callable[[Any], None], str]] = [
    ("float16 constant as input", FLOAT, setter(graph, "inputs", [1]),
     "the model's input 0 is tensor 1 (doctor/conv0/Conv2D), a constant"),
    ("op output -1", FLOAT, setter(lambda m: graph(m).operators[1], "outputs", [-1]),
     "operator 1 output 0 is tensor -1, but the subgraph has 9 tensors"),
    ("activation given a constant's buffer", INT8, setter(lambda m: graph(m).tensors[5], "buffer", 2),
     f"operator 0 (CONV_2D) writes tensor 5 ({RELU}), a constant"),
    ("dequantize input -1", FLOAT, setter(lambda m: graph(m).operators[0], "inputs", [-1]),
     "operator 0 (DEQUANTIZE) input 0 is missing (-1), but that input is required"),
    ("dequantize output larger", FLOAT, setter(lambda m: graph(m).tensors[6], "shape", [32, 3, 64, 32]),
     "operator 2 (DEQUANTIZE) turns shape [32, 3, 3, 32] into [32, 3, 64, 32]"),
    ("int8 constant as input", INT8, setter(graph, "inputs", [1]),
     f"the model's input 0 is tensor 1 ({CONV1}), a constant"),
]  # fmt: skip

RUN_ALL = """
import sys
from edgecnn.cli import main
for path in sys.argv[1:]:
    print(path, main(["benchmark", path, "--runs", "1", "--threads", "1"]), file=sys.stderr, flush=True)
"""


def test_models_that_segfaulted_the_interpreter_are_one_line_errors(tmp_path: Path) -> None:
    """One child process runs them all: a regression is its death by a signal, not the test run's."""
    paths = [mutant(tmp_path, seed, change, f"crash{i}") for i, (_, seed, change, _) in enumerate(CRASHED)]
    done = subprocess.run(
        [sys.executable, "-c", RUN_ALL, *map(str, paths)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = []
    for path, (_, _, _, what) in zip(paths, CRASHED, strict=True):
        expected += [f"edgecnn benchmark: error: corrupt .tflite model: {path} ({what}); convert it again", f"{path} 2"]
    assert done.stderr.splitlines() == expected


CRASH_IN_LOAD = """
import ctypes, sys
from edgecnn.cli import main
from edgecnn.runtime import interpreter

class Crashing:
    def __init__(self, **kwargs):
        print("native noise", file=sys.stderr, flush=True)  # silenced, as LiteRT's INFO lines are
        ctypes.string_at(0)

interpreter._reporting = lambda cls: Crashing
sys.exit(main(["benchmark", sys.argv[1]]))
"""


def test_a_crash_while_loading_still_says_which_model(tmp_path: Path) -> None:
    """Native stderr is silenced during the load; a segfault there prints one line naming the model and
    keeps its signal exit (139 in a shell)."""
    path = DATA / f"{INT8}.tflite"
    done = subprocess.run([sys.executable, "-c", CRASH_IN_LOAD, str(path)], capture_output=True, text=True, timeout=120)
    backend = find_backend()
    assert done.returncode == -11
    assert done.stderr.splitlines() == [
        f"edgecnn: error: the TFLite interpreter crashed (SIGSEGV) loading {path}: the model is damaged or not "
        f"supported by {backend.name} {backend.version}; convert it again"
    ]


SILENCED = """
import ctypes, faulthandler, sys
from edgecnn.core.quiet import native_stderr_silenced
LINE = "edgecnn: error: the TFLite interpreter crashed (SIGNAL) loading m.tflite"
if sys.argv[1] == "inside":
    with native_stderr_silenced(LINE):
        print("native noise", file=sys.stderr, flush=True)
        ctypes.string_at(0)
faulthandler.enable()  # a handler already there (pytest's, say) is given back intact after a block
with native_stderr_silenced(LINE):
    pass
ctypes.string_at(0)
"""


def test_a_silenced_load_leaves_a_line_and_restores_the_handler_before_it() -> None:
    inside = subprocess.run([sys.executable, "-c", SILENCED, "inside"], capture_output=True, text=True, timeout=60)
    assert inside.returncode == -11
    assert inside.stderr.splitlines() == ["edgecnn: error: the TFLite interpreter crashed (SIGSEGV) loading m.tflite"]
    after = subprocess.run([sys.executable, "-c", SILENCED, "after"], capture_output=True, text=True, timeout=60)
    assert after.returncode == -11
    assert after.stderr.startswith("Fatal Python error: Segmentation fault")  # faulthandler's, not ours
