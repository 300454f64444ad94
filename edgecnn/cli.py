"""The ``edgecnn`` command: one subcommand per pipeline stage, each a thin call into the library.

Each command's flags come from its option tables (:data:`COMMANDS`): dataclasses whose fields carry
``opt(...)`` metadata (edgecnn.core.config). :func:`add_options` turns every field into its flag, and
:func:`options_from` builds the typed options object by name from the parsed flags (over a ``--config``
recipe). Heavy modules (TensorFlow) are imported inside the commands that need them, so ``benchmark``,
``eval`` of a .tflite and ``demo`` run on a light install. User errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgecnn import __version__
from edgecnn.core.config import (
    Opt,
    Range,
    TrainConfig,
    build_options,
    check_options,
    flag_of,
    load_config,
    load_train_config,
    opt,
    option_of,
    value_types,
)
from edgecnn.core.errors import EdgecnnError
from edgecnn.pipelines.benchmark import BenchmarkOptions
from edgecnn.pipelines.check import CheckOptions
from edgecnn.pipelines.demo import DemoOptions
from edgecnn.pipelines.doctor import DoctorOptions
from edgecnn.pipelines.evaluate import EvalOptions
from edgecnn.pipelines.explain import ExplainOptions
from edgecnn.pipelines.options import (
    TASK,
    ConvertOptions,
    OptimizeConfig,
    ProfileOptions,
    QuantDebugOptions,
    QuickstartOptions,
    VisualizeOptions,
)

Handler = Callable[[argparse.Namespace], int | None]
T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def number_type(kind: type, allowed: Range) -> Callable[[str], Any]:
    """An argparse type: a whole number (``kind`` int) or a finite number within ``allowed``; a bad value is
    one line naming it and what to use: "0 is not allowed; use 1 or more"."""
    whole = kind is int
    use = f"use {allowed.allowed(whole)}"

    def parse(value: str) -> Any:
        try:
            number = int(value) if whole else float(value)
        except ValueError:
            what = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}; {use}") from None
        if number not in allowed:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; {use}")
        return number

    return parse


def text_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError: its message becomes the flag's error line."""

    def typed(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return typed


def print_json(obj: Any) -> None:
    print(json.dumps(obj, sort_keys=False))


# ------------------------------------------------------------------------------ the CLI's own options
# What a command reads besides its pipeline's options: its positional paths, --json, --config. Declared
# as the pipelines' tables are, so they become flags by the same loop.
def _json(help: str = "print the report as JSON") -> Any:
    return field(default=False, metadata=opt(help))


@dataclass(frozen=True)
class ProgramArgs:
    """The flags of ``edgecnn`` itself, before the command."""

    version: str = field(default=f"edgecnn {__version__}", metadata=opt("show the version and exit", version=True))


@dataclass(frozen=True)
class CommonArgs:
    verbose: bool = field(default=False, metadata=opt("say which runtime and settings are used", aliases=("-v",)))


@dataclass(frozen=True)
class TrainArgs:
    config: str | None = field(
        default=None, metadata=opt("YAML recipe (e.g. training/lenet5_digits.yaml); flags override it")
    )
    task: str | None = field(default=None, metadata=TASK)
    resume: str | None = field(
        default=None, metadata=opt("continue a killed run from its last checkpoint (no other flags)", metavar="RUN")
    )


@dataclass(frozen=True)
class ConvertArgs:
    model: str = field(metadata=opt("model.keras or a run folder", positional=True))
    config: str | None = field(
        default=None, metadata=opt("YAML conversion recipe (e.g. convert/int8.yaml); flags override it")
    )
    debug: bool = field(
        default=False,
        metadata=opt("int8: also write the per-layer quantization report (edgecnn quant-debug) beside the .tflite"),
    )
    output: str | None = field(
        default=None,
        metadata=opt("output .tflite (.onnx with --onnx) path (default: beside the model)", aliases=("-o",)),
    )
    json: bool = _json()


@dataclass(frozen=True)
class OptimizeArgs:
    model: str = field(
        metadata=opt("a run folder or model.keras (its dataset is used for fine-tuning)", positional=True)
    )
    task: str | None = field(default=None, metadata=TASK)


@dataclass(frozen=True)
class ModelArgs:
    """One model path and --json: eval."""

    model: str = field(metadata=opt("a .keras, .tflite or .onnx model, or a run folder", positional=True))
    json: bool = _json()


@dataclass(frozen=True)
class BenchmarkArgs:
    models: tuple[str, ...] = field(default=(), metadata=opt(".tflite and .onnx models", positional=True, nargs="+"))
    json: bool = _json("one JSON object per model")


@dataclass(frozen=True)
class DemoArgs:
    json: bool = _json("print the summary as JSON")


@dataclass(frozen=True)
class CheckArgs:
    model: str = field(
        metadata=opt("a .tflite model, a .keras model or run folder, or an architecture name", positional=True)
    )
    json: bool = _json()


@dataclass(frozen=True)
class ArchsArgs:
    json: bool = _json("print the table as JSON")
    no_cache: bool = field(default=False, metadata=opt("re-measure every architecture"))


@dataclass(frozen=True)
class ProfileArgs:
    target: str = field(
        metadata=opt("an architecture name (edgecnn archs) or a .keras model / run folder", positional=True)
    )
    json: bool = _json("print the profile as JSON")


@dataclass(frozen=True)
class ExplainArgs:
    model: str = field(
        metadata=opt("model.keras / run folder, or a .tflite (with --method occlusion)", positional=True)
    )
    images: tuple[str, ...] = field(
        default=(), metadata=opt("image files to explain", positional=True, nargs="+", metavar="IMAGE")
    )
    json: bool = _json("print the summary as JSON")


@dataclass(frozen=True)
class KerasModelArgs:
    """One Keras model path and --json: quant-debug."""

    model: str = field(metadata=opt("model.keras or a run folder", positional=True))
    json: bool = _json()


@dataclass(frozen=True)
class VisualizeArgs:
    model: str = field(metadata=opt("model.keras or a run folder", positional=True))


def options_from(args: argparse.Namespace, cls: type[T], base: T | None = None) -> T:
    """The options object ``cls``, built by name from the flags given (over ``base``, e.g. a recipe) and
    checked against its table: a recipe's value out of range is the same one line as a flag's."""
    options = build_options(cls, vars(args), base)
    check_options(options)
    return options


# Each command builds its typed options object from the flags and hands it to its pipeline. It
# imports that pipeline when it runs, so the light commands (eval of a .tflite,
# benchmark, demo, check of a .tflite, doctor) never import TensorFlow.
# -------------------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    run = options_from(args, TrainArgs)
    if run.resume:  # the run continues exactly as its config.yaml records it
        given = [flag_of(f) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name, None) is not None]
        if given or run.config:
            name = (given or ["--config"])[0]
            raise EdgecnnError(f"--resume continues {run.resume} as its config.yaml records it; drop {name}")
        recorded = Path(run.resume) / "config.yaml"
        if not recorded.is_file():
            raise EdgecnnError(f"--resume {run.resume}: not a run folder (no config.yaml); give a run's --out folder")
        config = dataclasses.replace(load_train_config(recorded), out=run.resume)
    else:  # a flag given on the command line overrides the recipe
        config = options_from(args, TrainConfig, load_train_config(run.config) if run.config else None)
    from edgecnn.tasks import check_task, task_of_arch  # lazy: see above

    task = task_of_arch(config.arch)  # fail on a bad name before data loading
    check_task(run.task, task.name, f"architecture {config.arch}")
    from edgecnn.pipelines.train import train  # lazy: see above

    result = train(config, resume=bool(run.resume))
    m = result.metrics
    print(
        f"trained {config.arch} on {config.data}: val {task.summary({task.metric: m['val_metric']})} "
        f"({m['val_images']} images), {m['params']:,} params, {m['train_seconds']:.0f} s"
    )
    print(
        f"run folder: {result.run_dir}  (model.keras, labels.txt, config.yaml, history.csv, curves.png, metrics.json)"
    )
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    run = options_from(args, ConvertArgs)
    options = options_from(args, ConvertOptions, load_config(run.config, ConvertOptions) if run.config else None)
    if options.onnx and args.format is None and not run.config:  # float32 unless --int8 (or the recipe) says
        options = dataclasses.replace(options, format="float32")
    elif not options.onnx and options.opset is not None:
        raise EdgecnnError(f"--opset {options.opset} sets the ONNX opset; add --onnx")
    if run.debug:
        from edgecnn.pipelines.quant_debug import check_debuggable  # lazy: see above

        check_debuggable(options.format, options.onnx)  # before the conversion
    from edgecnn.pipelines.convert import convert, format_report  # lazy: see above

    report = convert(run.model, run.output, options)
    print_json(report.as_dict()) if run.json else print(format_report(report))
    if run.debug:  # the per-layer report of the model just written, beside it
        from edgecnn.pipelines.quant_debug import format_quant_debug, quant_debug  # lazy: see above

        debug = QuantDebugOptions(
            float_layers=options.float_layers,
            calib=options.calib,
            calib_samples=options.calib_samples,
            data=options.data,
            out=str(Path(report.output).with_suffix("")) + "_quant_debug",
        )
        result = quant_debug(run.model, debug)
        print_json(result.as_dict()) if run.json else print(format_quant_debug(result))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.evaluate import evaluate, format_eval  # lazy: see above

    run, options = options_from(args, ModelArgs), options_from(args, EvalOptions)
    if options.attack is None and (options.eps is not None or options.steps is not None):
        raise EdgecnnError("--eps and --steps set an adversarial attack; add --attack fgsm or --attack pgd")
    result = evaluate(run.model, options)
    print_json(result) if run.json else print(format_eval(result))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from edgecnn.benchmarks.latency import format_table, format_undelegated  # lazy: see above
    from edgecnn.pipelines.benchmark import benchmark  # lazy: see above
    from edgecnn.pipelines.demo.loop import format_stages  # lazy: see above

    run, common = options_from(args, BenchmarkArgs), options_from(args, CommonArgs)
    results = benchmark(list(run.models), options_from(args, BenchmarkOptions))
    if run.json:
        for result in results:
            print_json(result.as_dict())
    else:
        print(format_table(results))
        if common.verbose:
            for result in results:
                print(format_undelegated(result))
        for result in results:
            if result.pipeline:
                p = result.pipeline
                print(
                    f"\n{Path(result.model).name} in the demo pipeline on {p['source']}: {p['frames']} frames, "
                    f"{p['fps']:.1f} FPS = {p['ratio']:.2f}x of the inference-bound {p['inference_bound_fps']:.1f} FPS"
                )
                print(format_stages(p))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.demo import demo  # lazy: see above
    from edgecnn.pipelines.demo.loop import format_stages  # lazy: see above

    summary = demo(options_from(args, DemoOptions))
    if options_from(args, DemoArgs).json:
        print_json(summary)
        return 0
    print(
        f"demo: {summary['frames']} frames in {summary['seconds']:.2f} s = {summary['fps']:.1f} FPS, "
        f"invoke {summary['mean_inference_ms']:.2f} ms/frame"
        + (f"; saved {summary['saved']}" if "saved" in summary else "")
    )
    print(format_stages(summary))
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    run, config = options_from(args, OptimizeArgs), options_from(args, OptimizeConfig)
    config.steps()  # "nothing to do" before TensorFlow starts
    from edgecnn.core.keras_io import check_keras_path  # lazy: see above

    check_keras_path(run.model)  # missing or wrong files fail before any work
    if config.distill_from:
        check_keras_path(config.distill_from)
    if run.task:
        from edgecnn.core.metadata import read_keras_info  # lazy: see above
        from edgecnn.tasks import check_task  # lazy: see above

        info = read_keras_info(check_keras_path(run.model))
        check_task(run.task, info.task if info else "classify", str(run.model))
    from edgecnn.optimize.report import markdown  # lazy: see above
    from edgecnn.pipelines.optimize import optimize  # lazy: see above

    print(markdown(optimize(run.model, config)))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.explain import explain, format_explain  # lazy: see above

    run = options_from(args, ExplainArgs)
    report = explain(run.model, list(run.images), options_from(args, ExplainOptions))
    print_json(report.as_dict()) if run.json else print(format_explain(report))
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.visualize import format_visualize, visualize  # lazy: see above

    run = options_from(args, VisualizeArgs)
    print(format_visualize(visualize(run.model, options_from(args, VisualizeOptions))))
    return 0


def cmd_quant_debug(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.quant_debug import format_quant_debug, quant_debug  # lazy: see above

    run = options_from(args, KerasModelArgs)
    report = quant_debug(run.model, options_from(args, QuantDebugOptions))
    print_json(report.as_dict()) if run.json else print(format_quant_debug(report))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from edgecnn.edgetpu.check import format_check  # lazy: see above
    from edgecnn.pipelines.check import check_model  # lazy: see above

    run = options_from(args, CheckArgs)
    report = check_model(run.model, options_from(args, CheckOptions))
    print_json(report.as_dict()) if run.json else print(format_check(report))
    return 0 if report.fully_mapped else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.doctor import run_doctor  # lazy: see above

    return run_doctor(options_from(args, DoctorOptions))


def cmd_archs(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.archs import all_stats, format_table  # lazy: see above

    run = options_from(args, ArchsArgs)
    rows = all_stats(use_cache=not run.no_cache)
    print_json([dataclasses.asdict(r) for r in rows]) if run.json else print(format_table(rows))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from edgecnn.insight.profile import format_profile  # lazy: see above
    from edgecnn.pipelines.archs import profile_target  # lazy: see above

    run = options_from(args, ProfileArgs)
    profile = profile_target(run.target, options_from(args, ProfileOptions))
    print_json(profile.as_dict()) if run.json else print(format_profile(profile))
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.quickstart import quickstart  # lazy: see above

    options = options_from(args, QuickstartOptions)
    quickstart(options.out, epochs=options.epochs, arch=options.arch)
    return 0


# ---------------------------------------------------------------------------------------- parser
@dataclass(frozen=True)
class Command:
    """A subcommand: its handler, its one-line help and its option tables (the CLI's own, then the
    pipeline's); every field of every table becomes a flag (or a positional argument)."""

    name: str
    run: Handler
    help: str
    tables: tuple[type, ...]


COMMANDS = (
    Command(
        "quickstart",
        cmd_quickstart,
        "train, convert, evaluate, benchmark and demo on bundled digits",
        (QuickstartOptions,),
    ),
    Command("train", cmd_train, "train an architecture on a dataset and write a run folder", (TrainArgs, TrainConfig)),
    Command(
        "convert",
        cmd_convert,
        "convert a Keras model to .tflite with metadata and an accuracy report",
        (ConvertArgs, ConvertOptions),
    ),
    Command(
        "optimize",
        cmd_optimize,
        "prune, cluster, quantization-aware training, distillation; compared",
        (OptimizeArgs, OptimizeConfig),
    ),
    Command(
        "eval",
        cmd_eval,
        "accuracy of a .keras, .tflite or .onnx model on a dataset's validation split",
        (ModelArgs, EvalOptions),
    ),
    Command(
        "benchmark",
        cmd_benchmark,
        "latency, FPS and memory of .tflite and .onnx models (one table)",
        (BenchmarkArgs, BenchmarkOptions),
    ),
    Command("demo", cmd_demo, "camera/video/image demo with overlays; runs on a Raspberry Pi", (DemoArgs, DemoOptions)),
    Command(
        "check",
        cmd_check,
        "will it run on the Edge TPU? per op/layer, before you train or compile",
        (CheckArgs, CheckOptions),
    ),
    Command(
        "doctor",
        cmd_doctor,
        "check this machine: Python, numpy, interpreter, Edge TPU, compiler, cameras",
        (DoctorOptions,),
    ),
    Command(
        "archs", cmd_archs, "the registered architectures: family, params, MACs, input size, Edge TPU", (ArchsArgs,)
    ),
    Command(
        "profile",
        cmd_profile,
        "per-layer shapes, params, MACs, receptive field and activation memory",
        (ProfileArgs, ProfileOptions),
    ),
    Command(
        "explain",
        cmd_explain,
        "why a classifier predicts what it does: heatmap overlays as PNG",
        (ExplainArgs, ExplainOptions),
    ),
    Command(
        "visualize",
        cmd_visualize,
        "a convolution's filters and a layer's feature maps, as PNG grids",
        (VisualizeArgs, VisualizeOptions),
    ),
    Command(
        "quant-debug",
        cmd_quant_debug,
        "which Keras layers int8 hurts: per-layer error, ranked, with an action each",
        (KerasModelArgs, QuantDebugOptions),
    ),
)


def _help(f: dataclasses.Field, declared: Opt, kind: type) -> str:  # type: ignore[type-arg]
    """The declared help, then the range and the default where they say something: "(1 or more; default: 10)"."""
    default = f.default
    silent = any(default is nothing for nothing in (dataclasses.MISSING, None, False, True)) or default == ()
    notes = [declared.range.allowed(kind is int)] if declared.range is not None else []
    notes += [] if silent or declared.required else [f"default: {default}"]
    return f"{declared.help} ({'; '.join(notes)})" if notes else declared.help


def _argument(f: dataclasses.Field, declared: Opt, kind: type) -> dict[str, Any]:  # type: ignore[type-arg]
    """add_argument's keywords for field ``f``: a bool is a switch to the other value, a number is checked
    against its range, a repeated flag appends; no default, so a flag not given leaves the recipe's value."""
    spec: dict[str, Any] = {"help": _help(f, declared, kind)}
    if declared.version:
        return {"help": declared.help, "action": "version", "version": f.default}
    if kind is bool:
        return spec | {"dest": f.name, "action": "store_const", "const": f.default is not True, "default": None}
    if declared.parse is not None:
        spec["type"] = text_type(declared.parse)
    elif declared.range is not None:
        spec["type"] = number_type(kind, declared.range)
    elif kind in (int, float):
        spec["type"] = kind
    if declared.repeat:
        spec["action"] = "append"
    metavar = declared.metavar
    if metavar is None and declared.flag and declared.choices is None:  # --eps EPS, not ADVERSARIAL_EPS
        metavar = declared.flag.lstrip("-").replace("-", "_").upper()
    optional = {"choices": declared.choices, "nargs": declared.nargs, "metavar": metavar}
    spec |= {key: value for key, value in optional.items() if value is not None}
    if declared.positional:
        return spec
    return spec | {"dest": f.name, "default": None, "required": declared.required}


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag (or positional argument) per option field of the dataclass ``cls``, from its ``opt``
    metadata. A field with ``choice_flags`` becomes one switch per choice (convert's --int8, --float16, ...)."""
    kinds = value_types(cls)
    for f in dataclasses.fields(cls):
        declared = option_of(f)
        if declared is None or not declared.cli:
            continue
        if declared.choice_flags is not None:
            group = parser.add_mutually_exclusive_group()
            for name, help in declared.choice_flags().items():
                group.add_argument(f"--{name}", dest=f.name, action="store_const", const=name, help=help)
            continue
        names = [f.name] if declared.positional else [*declared.aliases, flag_of(f)]
        parser.add_argument(*names, **_argument(f, declared, kinds[f.name]))


def build_parser() -> Parser:
    parser = Parser(prog="edgecnn", description=__doc__.splitlines()[0])
    add_options(parser, ProgramArgs)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        p.set_defaults(func=command.run)
        for table in (CommonArgs, *command.tables):
            add_options(p, table)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", 0) is None:
        args.threads = os.cpu_count() or 1
    try:
        return args.func(args) or 0
    except EdgecnnError as exc:
        print(f"edgecnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgecnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
