"""Coral Edge TPU: will a model map, and compile it where the compiler exists. No TensorFlow import.

* :func:`check_tflite` / :func:`check_keras`: per op (or layer), can the Edge TPU run it and why not,
  where the first CPU fallback is, parameter memory against the ~8 MB on-chip cache
  (rules: :mod:`edgecnn.edgetpu.ops`, Coral's supported-operations table as data).
* :func:`convert_for_edgetpu`: check, write the int8 model, compile it with ``edgetpu_compiler`` if
  installed and parse its log, else give the exact commands to compile it elsewhere.
"""

from edgecnn.edgetpu.check import CheckReport, OpCheck, check_keras, check_tflite, format_check
from edgecnn.edgetpu.compiler import (
    CompileResult,
    CompilerInfo,
    EdgeTpuConvertReport,
    compile_instructions,
    convert_for_edgetpu,
    find_compiler,
    format_convert_report,
    parse_compiler_log,
    run_compiler,
)

__all__ = [
    "CheckReport",
    "CompileResult",
    "CompilerInfo",
    "EdgeTpuConvertReport",
    "OpCheck",
    "check_keras",
    "check_tflite",
    "compile_instructions",
    "convert_for_edgetpu",
    "find_compiler",
    "format_check",
    "format_convert_report",
    "parse_compiler_log",
    "run_compiler",
]
