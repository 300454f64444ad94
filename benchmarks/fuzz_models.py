"""Fuzz the model loaders: damaged .tflite files through ``edgecnn benchmark``, ``eval`` and ``check``.

Two fuzzers make mutants of small valid models, seeded and reproducible (mutant ``i`` of seed ``s`` is
drawn from ``numpy.random.default_rng([s, i])``):

* structure-aware: the flatbuffer is unpacked with LiteRT's generated schema
  (``ai_edge_litert.schema_py_generated``, no TensorFlow), one field is changed (an operator's tensor index,
  a shape, a type, a buffer index, an opcode, quantization, builtin options, the edgecnn metadata, ...) and
  it is packed again: a valid flatbuffer that LiteRT's verifier accepts, holding an inconsistent model;
* byte-level: random byte flips, a truncation, a chunk of the file copied over or into another place.

All runs happen in ONE child process that calls ``edgecnn.cli.main`` in a loop (milliseconds a run instead
of a one-second process start each); the parent feeds it jobs, restarts it after a signal death (recording
the mutant that killed it and the child's last stderr line) and kills it when a run exceeds the timeout
(a hang). Outcomes per run: ``clean error`` (exit 2 and one line ``edgecnn CMD: error: ...``), ``ran ok``
(exit 0, or 1 for a check that found ops for the CPU), ``traceback`` (an exception escaped ``main`` or
Python printed one), ``unclean`` (any other exit or stderr), ``signal``, ``hang``.

    .venv/bin/python benchmarks/fuzz_models.py [--mutants 1000] [--seed 0] [--timeout 30]

Records the table (mutant kind x command -> outcome counts) in ``results/fuzz_models.md`` and ``.json``;
``tests/test_fuzz.py`` runs a smaller set of the same mutants in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "edgecnn" / "edgetpu" / "data"
COMMANDS = ("benchmark", "eval", "check")
OUTCOMES = ("clean error", "ran ok", "traceback", "unclean", "signal", "hang")
INT32_MAX = 2**31 - 1
CHILD_MEMORY = 6 * 2**30  # address-space limit of the child: a mutant that asks for more fails, never swaps


# ------------------------------------------------------------------------------------ structure-aware
Mutator = Callable[[Any, np.random.Generator], str]  # changes a schema.ModelT in place; returns what it did


def _graph(model: Any) -> Any:
    return model.subgraphs[0]


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _bad_index(rng: np.random.Generator, count: int) -> int:
    """A tensor/buffer/opcode index that is wrong for a vector of ``count``: -1, another valid one, past the end."""
    return int(_pick(rng, [-1, -2, int(rng.integers(count)), count, count + int(rng.integers(1, 1000)), INT32_MAX]))


def mutate_op_tensor(model: Any, rng: np.random.Generator) -> str:
    """An operator's input or output points at another tensor, at -1 or past the end."""
    graph = _graph(model)
    i = int(rng.integers(len(graph.operators)))
    op = graph.operators[i]
    side = _pick(rng, ["inputs", "outputs"])
    indices = [int(t) for t in getattr(op, side)]
    j = int(rng.integers(len(indices)))
    old, indices[j] = indices[j], _bad_index(rng, len(graph.tensors))
    setattr(op, side, indices)
    return f"op {i} {side}[{j}] {old} -> {indices[j]}"


def mutate_graph_io(model: Any, rng: np.random.Generator) -> str:
    """A subgraph input or output points elsewhere, or the list is emptied."""
    graph = _graph(model)
    side = _pick(rng, ["inputs", "outputs"])
    indices = [int(t) for t in getattr(graph, side)]
    if rng.random() < 0.15 or not indices:
        setattr(graph, side, [])
        return f"subgraph {side} emptied"
    j = int(rng.integers(len(indices)))
    old, indices[j] = indices[j], _bad_index(rng, len(graph.tensors))
    setattr(graph, side, indices)
    return f"subgraph {side}[{j}] {old} -> {indices[j]}"


def mutate_shape(model: Any, rng: np.random.Generator) -> str:
    """A tensor's shape or shape signature gets a zero, negative or huge dimension, or one more or less."""
    graph = _graph(model)
    i = int(rng.integers(len(graph.tensors)))
    tensor = graph.tensors[i]
    which = "shapeSignature" if rng.random() < 0.2 else "shape"
    dims = [int(d) for d in (getattr(tensor, which) if getattr(tensor, which) is not None else tensor.shape)]
    action = _pick(rng, ["set", "set", "set", "add", "drop"])
    if action == "add" or not dims:
        dims.insert(int(rng.integers(len(dims) + 1)), int(_pick(rng, [1, 2, 7, 1000])))
    elif action == "drop":
        dims.pop(int(rng.integers(len(dims))))
    else:
        j = int(rng.integers(len(dims)))
        dims[j] = int(_pick(rng, [0, -1, -7, 2, int(rng.integers(1, 64)), 2**16, 2**20, 2**30, INT32_MAX]))
    setattr(tensor, which, dims)
    return f"tensor {i} {which} -> {dims}"


def mutate_type(model: Any, rng: np.random.Generator) -> str:
    """A tensor's element type becomes another one of the schema's (or an unknown code)."""
    graph = _graph(model)
    i = int(rng.integers(len(graph.tensors)))
    old = graph.tensors[i].type
    graph.tensors[i].type = int(rng.integers(0, 19)) if rng.random() < 0.85 else int(rng.integers(19, 128))
    return f"tensor {i} type {old} -> {graph.tensors[i].type}"


def mutate_buffer_index(model: Any, rng: np.random.Generator) -> str:
    """A tensor's buffer index points at another buffer, at the empty buffer 0 or past the end."""
    graph = _graph(model)
    i = int(rng.integers(len(graph.tensors)))
    old = graph.tensors[i].buffer
    count = len(model.buffers)
    graph.tensors[i].buffer = int(_pick(rng, [0, int(rng.integers(count)), count, count + 5, 2**32 - 1]))
    return f"tensor {i} buffer {old} -> {graph.tensors[i].buffer}"


def mutate_opcode(model: Any, rng: np.random.Generator) -> str:
    """An operator's opcode index, or an opcode's builtin code or version, changes."""
    graph = _graph(model)
    action = _pick(rng, ["index", "code", "code", "version"])
    if action == "index":
        i = int(rng.integers(len(graph.operators)))
        count = len(model.operatorCodes)
        old = graph.operators[i].opcodeIndex
        graph.operators[i].opcodeIndex = int(_pick(rng, [int(rng.integers(count)), count, count + 3, 2**32 - 1]))
        return f"op {i} opcode index {old} -> {graph.operators[i].opcodeIndex}"
    j = int(rng.integers(len(model.operatorCodes)))
    code = model.operatorCodes[j]
    if action == "version":
        code.version = int(_pick(rng, [0, -1, int(rng.integers(1, 10)), 1000]))
        return f"opcode {j} version -> {code.version}"
    new = int(rng.integers(0, 210)) if rng.random() < 0.9 else int(_pick(rng, [210, 255, 1000, -5]))
    code.builtinCode = new
    code.deprecatedBuiltinCode = min(new, 127) if new >= 0 else new
    return f"opcode {j} builtin code -> {new}"


def mutate_buffer_data(model: Any, rng: np.random.Generator) -> str:
    """A constant buffer is cut, grown or emptied, or claims an (offset, size) outside the file."""
    filled = [i for i, b in enumerate(model.buffers) if b.data is not None and len(b.data)]
    filled = filled or [0]
    i = int(_pick(rng, filled))
    buffer = model.buffers[i]
    data = list(buffer.data) if buffer.data is not None else []
    action = _pick(rng, ["cut", "cut", "grow", "empty", "offset"])
    if action == "cut" and data:
        buffer.data = data[: int(rng.integers(len(data)))]
    elif action == "grow":
        buffer.data = data + [0] * int(_pick(rng, [1, 3, 4, 64, 4096]))
    elif action == "offset":
        buffer.data, buffer.offset = None, int(_pick(rng, [1, 2**20, 2**40]))
        buffer.size = int(_pick(rng, [1, 2**16, 2**33]))
        return f"buffer {i} offset {buffer.offset} size {buffer.size}"
    else:
        buffer.data = []
    return f"buffer {i} {action}: {len(data)} -> {len(buffer.data or [])} bytes"


def mutate_quantization(model: Any, rng: np.random.Generator) -> str:
    """A tensor's scales, zero points or quantized dimension become inconsistent or absurd."""
    graph = _graph(model)
    quantized = [t for t in graph.tensors if t.quantization is not None and t.quantization.scale is not None]
    tensor = _pick(rng, quantized or graph.tensors)
    if tensor.quantization is None:
        tensor.quantization = schema.QuantizationParametersT()
    q = tensor.quantization
    scales = [float(s) for s in (q.scale if q.scale is not None else [1.0])]
    points = [int(z) for z in (q.zeroPoint if q.zeroPoint is not None else [0])]
    action = _pick(rng, ["scale_len", "scale_value", "zero_len", "zero_value", "dimension"])
    if action == "scale_len":
        q.scale = scales * int(_pick(rng, [0, 2, 3])) + [0.5] * int(rng.integers(0, 3))
    elif action == "scale_value":
        scales[int(rng.integers(len(scales)))] = float(_pick(rng, [0.0, -1.0, float("nan"), float("inf"), 1e30]))
        q.scale = scales
    elif action == "zero_len":
        q.zeroPoint = points * int(_pick(rng, [0, 2])) + [0] * int(rng.integers(0, 3))
    elif action == "zero_value":
        points[int(rng.integers(len(points)))] = int(_pick(rng, [-129, 128, 256, 2**40, -(2**40)]))
        q.zeroPoint = points
    else:
        q.quantizedDimension = int(_pick(rng, [-1, 1, 3, 4, 7, INT32_MAX]))
    return f"tensor quantization {action}"


def mutate_options(model: Any, rng: np.random.Generator) -> str:
    """A numeric builtin option (stride, padding, activation, axis, ...) gets an odd value, or the options
    become those of another op type."""
    graph = _graph(model)
    with_options = [op for op in graph.operators if op.builtinOptions is not None] or graph.operators
    op = _pick(rng, with_options)
    if op.builtinOptions is None or rng.random() < 0.2:
        op.builtinOptionsType = int(rng.integers(1, 127))
        op.builtinOptions = None
        return f"options type -> {op.builtinOptionsType} (no table)"
    fields = [k for k, v in vars(op.builtinOptions).items() if isinstance(v, int | float | bool)]
    if not fields:
        return "options: nothing to change"
    name = _pick(rng, fields)
    value = _pick(rng, [0, -1, 2, 5, 127, 255, INT32_MAX, -(2**31)])
    if isinstance(getattr(op.builtinOptions, name), float):
        value = float(_pick(rng, [0.0, -1.0, float("nan"), 1e30]))
    elif isinstance(getattr(op.builtinOptions, name), bool):
        value = not getattr(op.builtinOptions, name)
    elif name in ("padding", "fusedActivationFunction", "weightsFormat", "quantizedBiasType"):
        value = int(_pick(rng, [2, 5, 7, 127, -1, -128]))  # enums stored as a signed byte
    setattr(op.builtinOptions, name, value)
    return f"options {type(op.builtinOptions).__name__}.{name} -> {value}"


BAD_METADATA = (
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b"42",
    b'{"labels": 5}',
    b'{"labels": [1, {"a": 2}]}',
    b'{"input_size": "big", "channels": "three"}',
    b'{"input_size": [0, -3], "channels": 0}',
    b'{"input_size": [99999999, 99999999]}',
    b'{"task": 7}',
    b'{"task": "dance"}',
    b'{"pixel_format": ["rgb"]}',
    b'{"data": "digits"}',
    b'{"extra": [], "data": {"seed": "x", "val_fraction": "y"}}',
    b'{"task": "detect", "extra": {"anchors": "none"}}',
    b'{"labels": ["a", "b"], "input_size": [32, 32], "channels": 5}',
)


def mutate_metadata(model: Any, rng: np.random.Generator) -> str:
    """The edgecnn metadata entry: corrupt JSON, not UTF-8, wrong field types, or a buffer index past the end."""
    entries = [m for m in (model.metadata or []) if m.name in (b"edgecnn", "edgecnn")]
    if not entries:
        meta = schema.MetadataT()
        meta.name, meta.buffer = "edgecnn", len(model.buffers)
        model.metadata = [*(model.metadata or []), meta]
        model.buffers.append(schema.BufferT())
        entries = [meta]
    entry = entries[0]
    if rng.random() < 0.15:
        entry.buffer = int(_pick(rng, [len(model.buffers), 2**32 - 1]))
        return f"metadata buffer -> {entry.buffer}"
    raw = bytes(model.buffers[entry.buffer].data if model.buffers[entry.buffer].data is not None else b"")
    if raw and rng.random() < 0.3:  # the real record, damaged in place
        cut = raw[: int(rng.integers(len(raw)))]
        model.buffers[entry.buffer].data = list(cut)
        return f"metadata JSON cut to {len(cut)} bytes"
    bad = _pick(rng, list(BAD_METADATA))
    model.buffers[entry.buffer].data = list(bad)
    return f"metadata -> {bad[:30]!r}"


def mutate_signature(model: Any, rng: np.random.Generator) -> str:
    """A signature's tensor index or subgraph index points past the end."""
    if not model.signatureDefs:
        return mutate_graph_io(model, rng)
    signature = model.signatureDefs[0]
    if rng.random() < 0.3:
        signature.subgraphIndex = int(_pick(rng, [1, 5, 2**32 - 1]))
        return f"signature subgraph -> {signature.subgraphIndex}"
    maps = [*(signature.inputs or []), *(signature.outputs or [])]
    target = _pick(rng, maps)
    target.tensorIndex = int(_pick(rng, [len(_graph(model).tensors), 2**32 - 1, 0]))
    return f"signature tensor -> {target.tensorIndex}"


def mutate_several(model: Any, rng: np.random.Generator) -> str:
    """Two to four of the changes above at once (metadata aside): damage rarely comes alone."""
    kinds = [k for k in STRUCTURE if k not in ("several fields", "metadata")]
    notes = []
    for _ in range(int(rng.integers(2, 5))):
        kind = _pick(rng, kinds)
        try:
            notes.append(f"{kind}: {STRUCTURE[kind](model, rng)}")
        except (ValueError, IndexError):  # an earlier change left nothing of the kind to change
            notes.append(f"{kind}: nothing left to change")
    return "; ".join(notes)


STRUCTURE: dict[str, Mutator] = {
    "op tensor index": mutate_op_tensor,
    "graph input/output": mutate_graph_io,
    "shape": mutate_shape,
    "tensor type": mutate_type,
    "buffer index": mutate_buffer_index,
    "opcode": mutate_opcode,
    "buffer size": mutate_buffer_data,
    "quantization": mutate_quantization,
    "builtin options": mutate_options,
    "metadata": mutate_metadata,
    "signature": mutate_signature,
    "several fields": mutate_several,
}


def unpack(data: bytes) -> Any:
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(data), 0))


def pack(model: Any) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ------------------------------------------------------------------------------------------ byte-level
def flip_bytes(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    out = bytearray(data)
    count = int(_pick(rng, [1, 1, 2, 4, 16]))
    for pos in rng.integers(0, len(out), count):
        out[int(pos)] = int(rng.integers(0, 256))
    return bytes(out), f"{count} random bytes"


def truncate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    cut = int(rng.integers(0, len(data)))
    return data[:cut], f"cut at {cut} of {len(data)}"


def duplicate_chunk(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    size = int(_pick(rng, [4, 16, 64, 512, 4096]))
    start = int(rng.integers(0, max(1, len(data) - size)))
    chunk = data[start : start + size]
    at = int(rng.integers(0, len(data)))
    if rng.random() < 0.5:
        return data[:at] + chunk + data[at:], f"{len(chunk)} bytes from {start} inserted at {at}"
    return data[:at] + chunk + data[at + len(chunk) :], f"{len(chunk)} bytes from {start} copied over {at}"


BYTES: dict[str, Callable[[bytes, np.random.Generator], tuple[bytes, str]]] = {
    "byte flips": flip_bytes,
    "truncation": truncate,
    "chunk duplication": duplicate_chunk,
}
KINDS = (*STRUCTURE, *BYTES)


@dataclass
class Mutant:
    index: int
    kind: str
    seed_model: str
    note: str
    path: str


def make_mutants(seeds: dict[str, Path], count: int, out: Path, seed: int = 0) -> list[Mutant]:
    """``count`` mutants, kinds in turn (structure-aware and byte-level alike), seed models drawn at random."""
    out.mkdir(parents=True, exist_ok=True)
    originals = {name: Path(path).read_bytes() for name, path in seeds.items()}
    unpacked = {name: unpack(data) for name, data in originals.items()}
    mutants = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        kind = KINDS[i % len(KINDS)]
        name = _pick(rng, sorted(originals))
        if kind in STRUCTURE:
            model = copy.deepcopy(unpacked[name])
            note = STRUCTURE[kind](model, rng)
            data = pack(model)
        else:
            data, note = BYTES[kind](originals[name], rng)
        path = out / f"{i:04d}_{kind.replace(' ', '_').replace('/', '_')}_{name}.tflite"
        path.write_bytes(data)
        mutants.append(Mutant(i, kind, name, note, str(path)))
    return mutants


# ------------------------------------------------------------------------------------- seeds and data
def build_seed_models(out: Path) -> dict[str, Path]:
    """The shipped doctor models plus a LeNet-5 (3 channels, labels a/b, random weights) as int8 and float16,
    converted once with TensorFlow into ``out`` (its metadata makes eval run it on :func:`image_folder`)."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = {"doctor_int8": SHIPPED / "doctor_int8.tflite", "doctor_float": SHIPPED / "doctor_float.tflite"}
    wanted = {"lenet_int8": out / "lenet_int8.tflite", "lenet_float16": out / "lenet_float16.tflite"}
    if not all(p.exists() for p in wanted.values()):
        from edgecnn.archs import create
        from edgecnn.core.keras_env import keras
        from edgecnn.core.keras_io import save_keras
        from edgecnn.core.metadata import ModelInfo
        from edgecnn.pipelines.convert import ConvertOptions, convert

        keras.utils.set_random_seed(0)
        info = ModelInfo(labels=["a", "b"], input_size=[32, 32], channels=3, arch="lenet5")
        keras_path = save_keras(create("lenet5", 2, 32, 3), out / "lenet.keras", info)
        for name, path in wanted.items():
            fmt = name.split("_")[1]
            convert(keras_path, path, ConvertOptions(format=fmt, calib="random", evaluate=False))
    return {**seeds, **wanted}


def image_folder(out: Path) -> Path:
    """Two classes (a, b) of five 32x32 noise images each: enough for eval to reach the interpreter."""
    import cv2

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (out / label).mkdir(parents=True, exist_ok=True)
        for i in range(5):
            cv2.imwrite(str(out / label / f"{i}.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return out


def command_argv(command: str, model: str, data: Path) -> list[str]:
    """The CLI arguments for one run: a short benchmark, eval on the folder, the Edge TPU op check."""
    return {
        "benchmark": ["benchmark", model, "--runs", "2", "--warmup", "0", "--threads", "1"],
        "eval": ["eval", model, "--data", str(data), "--threads", "1"],
        "check": ["check", model, "--edgetpu"],
    }[command]


# --------------------------------------------------------------------------------------------- child
SELF_TEST = "fuzz-self-test"  # argv[0] of the jobs that check the harness itself: segfault, hang, raise, del


class _FailingDel:
    def __del__(self) -> None:
        raise RuntimeError("from __del__")


def _self_test(what: str) -> int:
    """Misbehave as a broken command would, so that a test can see the harness notice it."""
    if what == "segfault":
        import ctypes

        ctypes.string_at(0)
    elif what == "hang":
        time.sleep(3600)
    elif what == "raise":
        raise RuntimeError("escaped")
    elif what == "del":
        _FailingDel()  # Python prints "Exception ignored in ..." and a traceback to stderr
    return 0


def run_in_process(argv: list[str]) -> dict[str, Any]:
    """``edgecnn.cli.main(argv)`` with its stdout and stderr captured; an escaped exception is recorded."""
    from edgecnn.cli import main

    out, err = io.StringIO(), io.StringIO()
    escaped = None
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = _self_test(argv[1]) if argv[0] == SELF_TEST else main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 (exactly what the fuzzer is looking for)
            rc, escaped = -1, traceback.format_exc()
    return {"rc": rc, "stderr": err.getvalue(), "escaped": escaped, "seconds": time.perf_counter() - start}


def child() -> None:
    """Read jobs (JSON lines) on stdin, run each in this process, answer one JSON line each."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # native prints to stdout must not mix with the answers
    for line in sys.stdin:
        job = json.loads(line)
        print(f"job {job['id']}", file=sys.__stderr__, flush=True)
        answers.write(json.dumps({"id": job["id"], **run_in_process(job["argv"])}) + "\n")


# -------------------------------------------------------------------------------------------- parent
@dataclass
class Job:
    id: int
    kind: str
    command: str
    argv: list[str]
    mutant: str = ""


@dataclass
class Result:
    job: Job
    outcome: str
    rc: int | None
    message: str  # the first line of stderr, the traceback's last line, or the child's last stderr line
    seconds: float
    detail: str = field(default="", repr=False)  # the escaped traceback
    restarted: bool = False  # the child died or hung on this run and was started again


def classify(command: str, answer: dict[str, Any]) -> tuple[str, str]:
    """(outcome, message) of one in-process run."""
    stderr = answer["stderr"]
    if answer["escaped"] or "Traceback (most recent call last)" in stderr or "Exception ignored" in stderr:
        text = answer["escaped"] or stderr
        return "traceback", text.strip().splitlines()[-1]
    lines = stderr.strip().splitlines()
    if answer["rc"] == 2 and len(lines) == 1 and lines[0].startswith(f"edgecnn {command}: error: "):
        return "clean error", lines[0]
    if answer["rc"] == 0 or (command == "check" and answer["rc"] == 1):
        return "ran ok", lines[0] if lines else ""
    return "unclean", f"exit {answer['rc']}: " + " | ".join(lines[:3])


class Runner:
    """The parent side: one child at a time, restarted after a death or a hang."""

    def __init__(self, log: Path, timeout: float) -> None:
        self.log = log
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONFAULTHANDLER": ""}
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=str(ROOT),
                env=env,
                text=True,
            )

    def _last_words(self) -> str:
        lines = [x for x in self.log.read_text(errors="replace").splitlines() if x.strip()]
        return lines[-1] if lines and not lines[-1].startswith("job ") else ""

    def run(self, job: Job) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        start = time.perf_counter()
        self.proc.stdin.write(json.dumps({"id": job.id, "argv": job.argv}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else None
        seconds = time.perf_counter() - start
        if line:
            answer = json.loads(line)
            outcome, message = classify(job.command, answer)
            return Result(job, outcome, answer["rc"], message, answer["seconds"], answer["escaped"] or "")
        if line is None:  # no answer in time: a hang
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            return Result(job, "hang", None, f"no answer in {self.timeout:.0f} s", seconds, restarted=True)
        rc = self.proc.wait()
        self.proc = None
        outcome = "signal" if rc < 0 else "unclean"
        return Result(job, outcome, rc, self._last_words() or f"child exited {rc}", seconds, restarted=True)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def jobs_for(mutants: Iterable[Mutant], data: Path, commands: tuple[str, ...] = COMMANDS) -> list[Job]:
    jobs = []
    for mutant in mutants:
        for command in commands:
            argv = command_argv(command, mutant.path, data)
            jobs.append(Job(len(jobs), mutant.kind, command, argv, mutant.path))
    return jobs


def run_jobs(jobs: list[Job], log: Path, timeout: float = 30.0, progress: bool = False) -> list[Result]:
    runner = Runner(log, timeout)
    results = []
    try:
        for n, job in enumerate(jobs, 1):
            results.append(runner.run(job))
            if progress and (n % 100 == 0 or n == len(jobs)):
                print(f"{n}/{len(jobs)} runs", file=sys.stderr, flush=True)
    finally:
        runner.close()
    return results


def tally(results: list[Result]) -> dict[str, dict[str, dict[str, int]]]:
    """kind -> command -> outcome -> count."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    for r in results:
        cell = table.setdefault(r.job.kind, {}).setdefault(r.job.command, dict.fromkeys(OUTCOMES, 0))
        cell[r.outcome] += 1
    return table


def failures(results: list[Result]) -> list[Result]:
    return [r for r in results if r.outcome not in ("clean error", "ran ok")]


def markdown(table: dict[str, dict[str, dict[str, int]]], commands: tuple[str, ...] = COMMANDS) -> str:
    """One row per mutant kind, one column per command: clean error / ran ok / traceback / unclean / signal / hang."""
    head = "| mutant kind | " + " | ".join(commands) + " |"
    lines = [head, "|---|" + "---|" * len(commands)]
    totals = {c: dict.fromkeys(OUTCOMES, 0) for c in commands}
    for kind in KINDS:
        if kind not in table:
            continue
        cells = []
        for c in commands:
            counts = table[kind].get(c, dict.fromkeys(OUTCOMES, 0))
            for o in OUTCOMES:
                totals[c][o] += counts[o]
            cells.append(" / ".join(str(counts[o]) for o in OUTCOMES))
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| **all** | " + " | ".join(" / ".join(str(totals[c][o]) for o in OUTCOMES) for c in commands) + " |")
    return "\n".join(lines)


ERROR_SOURCES = (  # what a clean error's message starts with (after "edgecnn CMD: error: ") -> its source
    ("corrupt .tflite model", "edgecnn's reader and validator"),
    ("not a valid .tflite model", "no TFL3 identifier"),
    ("cannot load model", "LiteRT refused the model"),
    ("running model", "LiteRT failed while running"),
)


def error_sources(results: list[Result]) -> dict[str, int]:
    """Clean errors by who raised them: the validator, LiteRT at load or run time, or the command (labels,
    channels, data) after a successful load."""
    counts = dict.fromkeys([source for _, source in ERROR_SOURCES] + ["the command, after loading"], 0)
    for r in results:
        if r.outcome == "clean error":
            text = r.message.split(": error: ", 1)[-1]
            source = next((s for prefix, s in ERROR_SOURCES if text.startswith(prefix)), "the command, after loading")
            counts[source] += 1
    return counts


def validation_cost(paths: dict[str, Path], repeats: int = 50) -> list[dict[str, Any]]:
    """Milliseconds (best of ``repeats``) that the checks add to a load, beside the load itself: reading
    the file, :func:`validate_tflite` and the metadata, and ``TFLiteModel`` in all (best of 5)."""
    from edgecnn.core.metadata import tflite_info
    from edgecnn.runtime.interpreter import TFLiteModel
    from edgecnn.runtime.validate import validate_tflite

    def best(n: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn(*args, **kwargs)
            times.append((time.perf_counter() - start) * 1e3)
        return min(times)

    rows = []
    for name, path in paths.items():
        data = path.read_bytes()
        model = validate_tflite(data, path)
        rows.append(
            {
                "model": name,
                "mib": round(len(data) / 2**20, 1),
                "tensors": sum(len(g.tensors) for g in model.subgraphs),
                "operators": sum(len(g.operators) for g in model.subgraphs),
                "read_ms": round(best(repeats, path.read_bytes), 2),
                "validate_ms": round(best(repeats, validate_tflite, data, path), 2),
                "metadata_ms": round(best(repeats, tflite_info, data, path), 2),
                "load_ms": round(best(5, TFLiteModel, path, threads=2), 1),
            }
        )
    return rows


def cost_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | MiB | tensors | ops | validate ms | metadata ms | file read ms | whole load ms (TFLiteModel) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['mib']} | {r['tensors']} | {r['operators']} | {r['validate_ms']} | {r['metadata_ms']} "
        f"| {r['read_ms']} | {r['load_ms']} |"
        for r in rows
    ]
    return "\n".join(lines)


def cost_models() -> dict[str, Path]:
    """MobileNetV2 224 float32 (the 14 MB model) and int8, built once by benchmarks/common.py, and the seeds."""
    from common import mobilenet_v2_224

    models = mobilenet_v2_224(("float32", "int8"))
    return {f"mobilenet_v2_224_{fmt}": path for fmt, path in models.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mutants", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a run counts as a hang")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmarks" / "fuzz")
    parser.add_argument("--no-cost", action="store_true", help="skip timing the validator on MobileNetV2")
    args = parser.parse_args()
    if args.child:
        child()
        return
    seeds = build_seed_models(args.work / "seeds")
    shutil.rmtree(args.work / "mutants", ignore_errors=True)
    mutants = make_mutants(seeds, args.mutants, args.work / "mutants", args.seed)
    log = args.work / "child_stderr.log"
    log.write_text("")
    start = time.perf_counter()
    results = run_jobs(jobs_for(mutants, image_folder(args.work / "images")), log, args.timeout, progress=True)
    seconds = time.perf_counter() - start
    cost = [] if args.no_cost else validation_cost({**cost_models(), **seeds})
    write_records(args, seeds, mutants, results, seconds, cost)


def write_records(
    args: argparse.Namespace,
    seeds: dict[str, Path],
    mutants: list[Mutant],
    results: list[Result],
    seconds: float,
    cost: list[dict[str, Any]],
) -> None:
    """results/fuzz_models.md (the table, failures, where the errors came from, the validation cost) and .json."""
    table, bad = tally(results), failures(results)
    notes = {m.path: m.note for m in mutants}
    totals = {o: sum(r.outcome == o for r in results) for o in OUTCOMES}
    sources = error_sources(results)
    command = f"benchmarks/fuzz_models.py --mutants {args.mutants} --seed {args.seed} --timeout {args.timeout:g}"
    slowest = max(r.seconds for r in results)
    md = [
        f"<!-- {time.strftime('%Y-%m-%d')}: {command} -->",
        "",
        f"{len(mutants)} mutants of {', '.join(sorted(seeds))} (seed {args.seed}), each through "
        f"{', '.join(COMMANDS)}: {len(results)} runs in {seconds:.0f} s in one child process "
        f"({seconds / len(results) * 1e3:.0f} ms a run, the slowest {slowest:.2f} s; a hang is {args.timeout:g} s).",
        "",
        "Cells: " + " / ".join(OUTCOMES) + ".",
        "",
        markdown(table),
        "",
        "Totals: " + ", ".join(f"{o} {n}" for o, n in totals.items()) + f"; the child was restarted "
        f"{sum(r.restarted for r in results)} times.",
        "",
        "Clean errors by source: " + ", ".join(f"{source} {n}" for source, n in sources.items()) + ".",
    ]
    if bad:
        md += ["", "Failures:", ""] + [
            f"- {Path(r.job.mutant).name} ({notes[r.job.mutant]}), {r.job.command}: {r.outcome}: {r.message}"
            for r in bad
        ]
    if cost:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        md += [
            "",
            f"What validation adds to a load (best of 50; the whole load, validation included, best of 5, 2 threads, "
            f"XNNPACK; {os.cpu_count()} cores, load average {load}):",
            "",
        ]
        md += [cost_table(cost)]
    record = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "mutants": len(mutants),
        "runs": len(results),
        "seconds": round(seconds, 1),
        "child_restarts": sum(r.restarted for r in results),
        "totals": totals,
        "error_sources": sources,
        "table": table,
        "failures": [
            {
                **asdict(r.job),
                "outcome": r.outcome,
                "message": r.message,
                "note": notes[r.job.mutant],
                "detail": r.detail,
            }
            for r in bad
        ],
        "validation_cost_ms": cost,
    }
    out = ROOT / "benchmarks" / "results"
    (out / "fuzz_models.md").write_text("\n".join(md) + "\n")
    (out / "fuzz_models.json").write_text(json.dumps(record, indent=1) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
