"""The Edge TPU compiler (``edgetpu_compiler``): find it, run it, read its log; or say how to get it.

The compiler is a closed-source x86_64 Linux binary from Coral's apt repository (package
``edgetpu-compiler``; 16.0 is the last public release). Where it is missing, nothing here fails:
:func:`convert_for_edgetpu` still checks and writes the int8 model and returns the exact commands to
compile it on a machine that has the compiler (:func:`compile_instructions`).

Its output, as documented by Coral (https://coral.ai/docs/edgetpu/compiler/) and seen in its logs::

    Edge TPU Compiler version 16.0.384591198
    Model compiled successfully in 542 ms.
    Input model: model.tflite
    Output model: model_edgetpu.tflite
    On-chip memory used for caching model parameters: 604.50KiB
    On-chip memory remaining for caching model parameters: 511.50KiB
    Off-chip memory used for streaming uncached model parameters: 3.45MiB
    Number of Edge TPU subgraphs: 1
    Total number of operations: 50
    Number of operations that will run on Edge TPU: 49
    Number of operations that will run on CPU: 1
    Operator                       Count      Status
    CONV_2D                        10         Mapped to Edge TPU
    QUANTIZE                       1          Operation is otherwise supported, but not mapped due to ...

The per-op table is printed with ``-s`` (``--show_operations``) and always written to ``*_edgetpu.log``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import check_output_path, ensure_dir, write_bytes
from edgecnn.edgetpu.check import BAD_TYPE, CheckReport, check_tflite, format_check

COMPILER = "edgetpu_compiler"
COMPILER_ENV = "EDGETPU_COMPILER"  # path to a compiler binary, overriding the PATH lookup
LAST_PUBLIC_VERSION = (16, 0)
VERSION_TIMEOUT_S = 10
COMPILE_TIMEOUT_S = 300  # the compiler stops itself after 180 s
APT_REPO = "https://packages.cloud.google.com/apt coral-edgetpu-stable main"
APT_KEY = "https://packages.cloud.google.com/apt/doc/apt-key.gpg"

_VERSION = re.compile(r"Edge TPU Compiler version (\d+)\.(\d+)(?:\.(\d+))?")
_SIZE = re.compile(r"([\d.]+)\s*(B|KiB|MiB|GiB)")
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
# log line prefix -> CompileResult field; sizes are turned into bytes
_FIELDS: dict[str, str] = {
    "Input model": "input_model",
    "Output model": "output_model",
    "On-chip memory used for caching model parameters": "on_chip_bytes",
    "On-chip memory remaining for caching model parameters": "on_chip_remaining_bytes",
    "Off-chip memory used for streaming uncached model parameters": "off_chip_bytes",
    "Number of Edge TPU subgraphs": "subgraphs",
    "Total number of operations": "total_ops",
    "Number of operations that will run on Edge TPU": "ops_on_edgetpu",
    "Number of operations that will run on CPU": "ops_on_cpu",
}
_ROW = re.compile(r"^(?P<op>\S+)\s+(?P<count>\d+)\s+(?P<status>\S.*?)\s*$")
_ERRORS = ("ERROR:", "Invalid model", "Internal compiler error", "Compilation failed", "Model not quantized")
MAPPED = "Mapped to Edge TPU"


@dataclass(frozen=True)
class CompilerInfo:
    path: str
    version: str | None  # "16.0.384591198"; None when ``--version`` could not be read

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split(".")) if self.version else ()


@dataclass
class CompileRow:
    """One line of the compiler's per-op table."""

    op: str
    count: int
    status: str


@dataclass
class CompileResult:
    """What the compiler said, parsed; sizes in bytes."""

    compiler_version: str | None = None
    success: bool = False
    input_model: str | None = None
    output_model: str | None = None
    on_chip_bytes: int | None = None
    on_chip_remaining_bytes: int | None = None
    off_chip_bytes: int | None = None
    subgraphs: int | None = None
    total_ops: int | None = None
    ops_on_edgetpu: int | None = None
    ops_on_cpu: int | None = None
    rows: list[CompileRow] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    compiled_path: str | None = None  # the *_edgetpu.tflite written, after run_compiler
    log_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------- parsing
def parse_size(text: str) -> int | None:
    """'604.50KiB' -> 619008 bytes; None when it is not a size."""
    match = _SIZE.search(text)
    return round(float(match.group(1)) * _UNITS[match.group(2)]) if match else None


def parse_version(text: str) -> str | None:
    """'Edge TPU Compiler version 16.0.384591198' -> '16.0.384591198'."""
    match = _VERSION.search(text)
    return ".".join(g for g in match.groups() if g is not None) if match else None


def parse_compiler_log(text: str) -> CompileResult:
    """Parse the compiler's stdout or its ``*_edgetpu.log`` into a :class:`CompileResult`."""
    result = CompileResult(compiler_version=parse_version(text))
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("Operator") and "Count" in line and "Status" in line:
            in_table = True
            continue
        key, sep, value = line.partition(":")
        if sep and key in _FIELDS:
            _set_field(result, _FIELDS[key], value.strip())
            in_table = False
            continue
        row = _ROW.match(line) if in_table else None
        if row:
            result.rows.append(CompileRow(row["op"], int(row["count"]), row["status"]))
        elif result.error is None and line.startswith(_ERRORS):
            result.error = line
    result.success = result.error is None and ("compiled successfully" in text or "Compilation succeeded" in text)
    _fill_counts(result, text)
    return result


def _set_field(result: CompileResult, name: str, value: str) -> None:
    if name.endswith("_bytes"):
        setattr(result, name, parse_size(value))
    elif name in ("input_model", "output_model"):
        setattr(result, name, value)
    else:
        setattr(result, name, int(value) if value.isdigit() else None)


def _fill_counts(result: CompileResult, text: str) -> None:
    """Op counts from the table when the summary lines are absent (a fully mapped model prints none)."""
    if result.ops_on_edgetpu is not None and result.ops_on_cpu is not None:
        return
    if result.rows:
        result.ops_on_edgetpu = sum(r.count for r in result.rows if r.status == MAPPED)
        result.ops_on_cpu = sum(r.count for r in result.rows if r.status != MAPPED)
    elif result.success and result.total_ops is not None and "not all operations are supported" not in text:
        result.ops_on_edgetpu, result.ops_on_cpu = result.total_ops, 0


# -------------------------------------------------------------------------------- invoking
def find_compiler() -> CompilerInfo | None:
    """The compiler on PATH (or at ``$EDGETPU_COMPILER``) and its version; None when absent."""
    path = os.environ.get(COMPILER_ENV) or shutil.which(COMPILER)
    if not path or not Path(path).is_file():
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
        version = parse_version(done.stdout + done.stderr)
    except (OSError, subprocess.TimeoutExpired):
        version = None
    return CompilerInfo(path=path, version=version)


def run_compiler(
    tflite_path: str | os.PathLike, out_dir: str | os.PathLike, compiler: CompilerInfo | None = None
) -> CompileResult:
    """Compile ``tflite_path`` into ``out_dir`` (``NAME_edgetpu.tflite`` and ``NAME_edgetpu.log``)."""
    compiler = compiler or find_compiler()
    if compiler is None:
        raise EdgecnnError(f"{COMPILER} not found; {_one_line_install()}")
    tflite_path, out_dir = Path(tflite_path), ensure_dir(out_dir, "compiler output")
    if not tflite_path.is_file():
        raise EdgecnnError(f"model file not found: {tflite_path}; check the path")
    command = [compiler.path, "-s", "-o", str(out_dir), str(tflite_path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise EdgecnnError(f"{COMPILER} did not finish in {COMPILE_TIMEOUT_S} s on {tflite_path}") from exc
    except OSError as exc:
        raise EdgecnnError(f"cannot run {compiler.path}: {exc.strerror or exc}") from exc
    text = done.stdout + "\n" + done.stderr
    log = out_dir / f"{tflite_path.stem}_edgetpu.log"
    result = parse_compiler_log(text)
    if not result.rows and log.is_file():
        result.rows = parse_compiler_log(log.read_text(errors="replace")).rows
        _fill_counts(result, text)
    result.compiler_version = result.compiler_version or compiler.version
    result.warnings.extend(_version_warnings(compiler))
    compiled = out_dir / f"{tflite_path.stem}_edgetpu.tflite"
    result.compiled_path = str(compiled) if compiled.is_file() else None
    result.log_path = str(log) if log.is_file() else None
    if done.returncode != 0 and result.error is None:
        tail = (text.strip().splitlines() or ["no output"])[-1]
        result.error = f"{COMPILER} exited with code {done.returncode}: {tail}"
    result.success = result.success and done.returncode == 0 and result.compiled_path is not None
    return result


def _version_warnings(compiler: CompilerInfo) -> list[str]:
    if not compiler.version_tuple:
        return [f"could not read the version of {compiler.path} ({COMPILER} --version)"]
    if compiler.version_tuple[:2] < LAST_PUBLIC_VERSION:
        return [
            f"{COMPILER} {compiler.version} is older than 16.0, the last public release; it may reject op "
            "versions of current converters; run: sudo apt-get install --only-upgrade edgetpu-compiler"
        ]
    return []


def _one_line_install() -> str:
    return "install it on Debian/Ubuntu x86_64: sudo apt-get install edgetpu-compiler (from Coral's apt repository)"


def compile_instructions(tflite_path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> str:
    """The exact commands to compile ``tflite_path`` on a Debian/Ubuntu x86_64 machine."""
    tflite_path = Path(tflite_path)
    out_dir = Path(out_dir) if out_dir is not None else tflite_path.parent
    compiled = out_dir / f"{tflite_path.stem}_edgetpu.tflite"
    return "\n".join(
        [
            f"{COMPILER} was not found. It runs on Debian/Ubuntu x86_64 (64-bit); install it from Coral's apt "
            "repository (package edgetpu-compiler):",
            f"  curl -fsSL {APT_KEY} | sudo gpg --dearmor -o /usr/share/keyrings/coral-edgetpu.gpg",
            f'  echo "deb [signed-by=/usr/share/keyrings/coral-edgetpu.gpg] {APT_REPO}" '
            "| sudo tee /etc/apt/sources.list.d/coral-edgetpu.list",
            "  sudo apt-get update && sudo apt-get install edgetpu-compiler",
            "then compile there:",
            f"  {COMPILER} -s -o {out_dir} {tflite_path}",
            f"which writes {compiled} and {compiled.with_suffix('.log')} (the per-op table).",
            "On other machines use Coral's Colab notebook: https://colab.research.google.com/github/google-coral/"
            "tutorials/blob/master/compile_for_edgetpu.ipynb",
        ]
    )


# --------------------------------------------------------------------------- convert + compile
@dataclass
class EdgeTpuConvertReport:
    model: str  # the int8 .tflite that was written
    check: CheckReport
    compiler: CompilerInfo | None
    result: CompileResult | None = None  # None when no compiler was found
    instructions: str | None = None  # how to compile elsewhere, when no compiler was found

    @property
    def compiled(self) -> str | None:
        return self.result.compiled_path if self.result else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "check": self.check.as_dict(),
            "compiler": dataclasses.asdict(self.compiler) if self.compiler else None,
            "compiled": self.compiled,
            "result": self.result.as_dict() if self.result else None,
            "instructions": self.instructions,
        }


def convert_for_edgetpu(source: bytes | str | os.PathLike, out_path: str | os.PathLike) -> EdgeTpuConvertReport:
    """Check an int8 .tflite (bytes or path), write it to ``out_path`` and compile it if a compiler exists."""
    out_path = check_output_path(out_path, "output")
    blob = source if isinstance(source, bytes | bytearray) else Path(source).read_bytes()
    check = check_tflite(bytes(blob))
    check.source = str(out_path)
    if not _is_full_integer(check):
        raise EdgecnnError(f"{out_path.name} is not a full-integer model; convert it with: edgecnn convert --int8")
    if not (isinstance(source, str | os.PathLike) and Path(source).resolve() == out_path.resolve()):
        write_bytes(out_path, bytes(blob))
    compiler = find_compiler()
    if compiler is None:
        return EdgeTpuConvertReport(str(out_path), check, None, instructions=compile_instructions(out_path))
    return EdgeTpuConvertReport(str(out_path), check, compiler, run_compiler(out_path, out_path.parent, compiler))


def _is_full_integer(check: CheckReport) -> bool:
    """Not a float or dynamic-range model: some op (besides I/O conversions) has 8-bit tensors."""
    inner = [op for op in check.ops if not op.boundary]
    return bool(inner) and not all(op.status == BAD_TYPE for op in inner)


def format_compile_result(result: CompileResult) -> str:
    lines = [
        f"{COMPILER} {result.compiler_version or '?'}: "
        + ("compiled" if result.success else f"FAILED: {result.error or 'see the log'}")
    ]
    if result.compiled_path:
        lines.append(f"  wrote {result.compiled_path}")
    if result.ops_on_edgetpu is not None:
        lines.append(
            f"  ops on Edge TPU {result.ops_on_edgetpu}, on CPU {result.ops_on_cpu or 0}, "
            f"Edge TPU subgraphs {result.subgraphs if result.subgraphs is not None else '?'}"
        )
    if result.on_chip_bytes is not None:
        lines.append(
            f"  parameters: on-chip {result.on_chip_bytes / 2**20:.2f} MiB, "
            f"off-chip (streamed) {(result.off_chip_bytes or 0) / 2**20:.2f} MiB"
        )
    lines.extend(f"  {r.op:<24s} {r.count:>4d}  {r.status}" for r in result.rows if r.status != MAPPED)
    lines.extend(f"  warning: {w}" for w in result.warnings)
    return "\n".join(lines)


def format_convert_report(report: EdgeTpuConvertReport) -> str:
    parts = [format_check(report.check)]
    parts.append(format_compile_result(report.result) if report.result else report.instructions or "")
    return "\n".join(parts)
