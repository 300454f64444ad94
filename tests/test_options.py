"""One option table per command: every flag, check, --config key and options object comes from the
dataclass fields that declare it (edgecnn.core.config.opt). No TensorFlow and no trained run: parsing only."""

from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path

import pytest

from edgecnn import cli
from edgecnn.convert.formats import FORMATS, Format
from edgecnn.core.config import TrainConfig, flag_of, load_config, option_of, to_yaml
from edgecnn.pipelines.options import ConvertOptions

COMMANDS = {command.name: command for command in cli.COMMANDS}
# the least each command needs on its command line: its positional paths and required flags
MINIMAL = {
    "convert": ["m.keras"],
    "optimize": ["run"],
    "eval": ["m.tflite"],
    "benchmark": ["m.tflite"],
    "demo": ["--model", "m.tflite"],
    "check": ["m.tflite"],
    "profile": ["lenet5"],
    "explain": ["m.keras", "a.png", "--out", "o"],
    "visualize": ["m.keras", "--out", "o"],
    "quant-debug": ["m.keras"],
}


def subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def flag_fields(command: cli.Command) -> list[dataclasses.Field]:
    """The fields of a command's tables that are flags (or positional arguments)."""
    fields = [f for table in (cli.CommonArgs, *command.tables) for f in dataclasses.fields(table)]
    return [f for f in fields if option_of(f) is not None and option_of(f).cli]


def test_every_command_is_a_row_of_the_table() -> None:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)
    assert all(sub.choices[name].get_default("func") is command.run for name, command in COMMANDS.items())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_flag_comes_from_a_declared_field_with_help(name: str) -> None:
    """Each declared field is exactly one argument (a flag per choice for convert's formats), with help; and
    the command has no argument that no field declares."""
    parser = subparser(name)
    actions = [a for a in parser._actions if a.dest != "help"]
    fields = flag_fields(COMMANDS[name])
    assert {a.dest for a in actions} == {f.name for f in fields}
    for f in fields:
        declared = option_of(f)
        assert declared.help.strip(), f"{name}: {f.name} has no help"
        mine = [a for a in actions if a.dest == f.name]
        if declared.choice_flags is not None:
            assert {a.const for a in mine} == set(declared.choice_flags())
        elif declared.positional:
            assert [a.option_strings for a in mine] == [[]]
        else:
            assert len(mine) == 1 and flag_of(f) in mine[0].option_strings and mine[0].help.startswith(declared.help)


def test_help_shows_the_declared_range_and_default() -> None:
    def help_of(command: str, flag: str) -> str:
        return next(a.help for a in subparser(command)._actions if flag in a.option_strings)

    assert help_of("train", "--lr") == "peak learning rate (a finite positive number; default: 0.001)"
    assert help_of("train", "--img") == "input height and width in pixels (16..2048; default: 32)"
    assert help_of("train", "--out") == "run folder (default: runs/train)"
    assert help_of("train", "--seed").endswith("(default: 0)")
    assert help_of("train", "--weights").endswith("run folder")  # None: nothing to show
    assert help_of("demo", "--delegate").endswith("(default: xnnpack)")


def test_a_new_format_row_is_a_new_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """convert's format switches are read from FORMATS when the parser is built: a row is a flag."""
    row = Format("int4test", ".tflite", "a test row", False, ("float32",), lambda *a: None)
    monkeypatch.setitem(FORMATS, "int4test", row)
    assert "--int4test" in subparser("convert").format_help()
    assert cli.options_from(parse("convert", "m.keras", "--int4test"), ConvertOptions).format == "int4test"


# -- checks ----------------------------------------------------------------------------------------
def test_flag_out_of_range_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--epochs", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "edgecnn train: error: argument --epochs: 0 is not allowed; use 1 or more; see 'edgecnn train --help'\n"
    )
    with pytest.raises(SystemExit):
        cli.main(["eval", "m.tflite", "--eps", "1.5"])
    assert capsys.readouterr().err == (
        "edgecnn eval: error: argument --eps: 1.5 is not allowed; use a number in (0, 1]; see 'edgecnn eval --help'\n"
    )


def test_recipe_value_out_of_range_is_the_same_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("val_fraction: 3\n")
    assert cli.main(["train", "--config", str(recipe)]) == 2
    assert (
        capsys.readouterr().err == "edgecnn train: error: --val-fraction must be between 0 and 1 (exclusive), got 3\n"
    )
    recipe.write_text("calib_samples: 0\n")
    assert cli.main(["convert", "m.keras", "--config", str(recipe)]) == 2
    assert capsys.readouterr().err == "edgecnn convert: error: --calib-samples must be 1 or more, got 0\n"
    with pytest.raises(Exception, match=r"^warmup_epochs must be 0 or more, got -1.0$"):  # a key without a flag
        TrainConfig(warmup_epochs=-1.0).validate()


def test_unknown_recipe_key_suggests_the_close_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epoch: 3\n")
    assert cli.main(["train", "--config", str(recipe)]) == 2
    keys = ", ".join(sorted(f.name for f in dataclasses.fields(TrainConfig)))
    assert capsys.readouterr().err == (
        f"edgecnn train: error: unknown keys in {recipe}: epoch (did you mean epochs?); valid keys: {keys}\n"
    )


# -- precedence and round trips --------------------------------------------------------------------
def test_a_flag_beats_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 3\nlr: 0.01\naugment: false\narch_options: {alpha: 0.5, depth: 2}\n")
    args = parse("train", "--config", str(recipe), "--epochs", "5", "--option", "alpha=0.25")
    config = cli.options_from(args, TrainConfig, load_config(recipe, TrainConfig))
    assert (config.epochs, config.lr, config.augment) == (5, 0.01, False)  # flag, recipe, recipe
    assert config.arch_options == {"alpha": 0.25, "depth": 2}  # --option merges into the recipe's
    recipe.write_text("format: int8\nio: float32\nfloat_layers: [conv1]\n")
    args = parse("convert", "m.keras", "--config", str(recipe), "--float16")
    options = cli.options_from(args, ConvertOptions, load_config(recipe, ConvertOptions))
    assert (options.format, options.io, options.float_layers) == ("float16", "float32", ("conv1",))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_no_flag_given_is_the_declared_defaults(name: str) -> None:
    """Parsed with no option, every table's object equals its dataclass built by name from the defaults."""
    args = parse(name, *MINIMAL.get(name, []))
    for table in COMMANDS[name].tables:
        given = [
            f for f in dataclasses.fields(table) if option_of(f) and (option_of(f).positional or option_of(f).required)
        ]
        values = {f.name: getattr(args, f.name) for f in given}
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
        assert cli.options_from(args, table) == table(**values)


def test_recipe_round_trip(tmp_path: Path) -> None:
    """A run's config.yaml (to_yaml) reads back to the same TrainConfig."""
    config = TrainConfig(arch="mobilenet_v2", epochs=3, arch_options={"alpha": 0.35}, fine_tune_at="block_5")
    recipe = tmp_path / "config.yaml"
    recipe.write_text(to_yaml(config))
    assert load_config(recipe, TrainConfig) == config
    recipe.write_text(to_yaml(TrainConfig()))
    assert load_config(recipe, TrainConfig) == TrainConfig()


def test_cli_builds_options_by_name_and_adds_flags_in_one_loop() -> None:
    """No options object built positionally in cli.py, and add_argument only in add_options."""
    tree = ast.parse(Path(cli.__file__).read_text())
    tables = {t.__name__ for command in cli.COMMANDS for t in command.tables}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in tables:
            assert not node.args, f"line {node.lineno}: {node.func.id} built positionally"
    loop = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "add_options")
    inside = {id(n) for n in ast.walk(loop)}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "add_argument"]
    assert calls and all(id(n) in inside for n in calls)
