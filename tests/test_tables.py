"""One table per concept, read everywhere: the CLI's choices come from the tables, and every name that
refers to a task (architectures, datasets) is a row of the task table."""

from __future__ import annotations

import argparse

import pytest

from edgecnn.cli import build_parser
from edgecnn.convert.formats import FORMATS, resolve_format
from edgecnn.data.registry import BUILTINS, LAYOUTS, builtins, default_data
from edgecnn.runtime.interpreter import DELEGATES
from edgecnn.tasks import TASKS


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def test_convert_flags_are_the_formats_table() -> None:
    flags = {a.const for a in _subparser("convert")._actions if a.dest == "format"}
    tflite_rows = {name for name, fmt in FORMATS.items() if fmt.backend == "tflite"}
    assert flags == tflite_rows and {"edgetpu", "int16x8"} <= tflite_rows
    # the .onnx rows have one spelling: --onnx with a precision flag
    assert {resolve_format(fmt.quantization, onnx=True) for fmt in FORMATS.values() if fmt.backend == "onnx"} == {
        name for name, fmt in FORMATS.items() if fmt.backend == "onnx"
    }


@pytest.mark.parametrize("command", ["eval", "benchmark", "demo"])
def test_runtime_choices_are_the_tables(command: str) -> None:
    parser = _subparser(command)
    assert tuple(_option(parser, "--delegate").choices) == DELEGATES
    assert tuple(_option(parser, "--task").choices) == tuple(TASKS)


@pytest.mark.tf
def test_every_architecture_and_dataset_names_a_task() -> None:
    from edgecnn.archs import get_arch, list_archs

    assert {get_arch(name).task for name in list_archs()} == set(TASKS)
    assert {b.task for b in BUILTINS.values()} == set(TASKS)
    assert {layout.task for layout in LAYOUTS} == set(TASKS)
    assert {task: default_data(task) for task in TASKS} == {
        "classify": "digits",
        "detect": "shapes",
        "segment": "shapes-seg",
    }
    assert builtins("detect") == ["shapes"]
