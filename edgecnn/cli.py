"""The ``edgecnn`` command: one subcommand per pipeline stage, each a thin call into the library.

Heavy modules (TensorFlow) are imported inside the commands that need them, so ``benchmark``,
``eval`` of a .tflite and ``demo`` run on a light install. User errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn import __version__
from edgecnn.config import LR_SCALING_RULES, MAX_IMG, MIN_IMG, PRECISIONS, SPLITS
from edgecnn.edgetpu.ops import DEFAULT_RUNTIME
from edgecnn.errors import EdgecnnError
from edgecnn.runtime.interpreter import DELEGATES
from edgecnn.runtime.onnx import PROVIDERS
from edgecnn.tasks import TASKS

Handler = Callable[[argparse.Namespace], int | None]


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (and at most ``maximum``)."""
    allowed = f"use {minimum}..{maximum}" if maximum is not None else f"use {minimum} or more"

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number; {allowed}") from None
        if number < minimum or (maximum is not None and number > maximum):
            raise argparse.ArgumentTypeError(f"{value} is not allowed; {allowed}")
        return number

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)
image_size = whole_number(MIN_IMG, MAX_IMG)
# More interpreter threads than this only adds contention; far more crashed the interpreter (100000: SIGSEGV).
thread_count = whole_number(1, 4 * (os.cpu_count() or 1))


def number_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number within [low, high] (either end open when asked)."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    allowed = f"use a number in {left}{low:g}, {high:g}{right}"

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number; {allowed}") from None
        below = number <= low if low_open else number < low
        above = number >= high if high_open else number > high
        if not math.isfinite(number) or below or above:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; {allowed}")
        return number

    return parse


def positive_float(value: str) -> float:
    """A finite number above 0 (learning rates, temperatures, durations: nan and inf are refused)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number; use a finite positive number") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; use a finite positive number")
    return number


fraction = number_in(0.0, 1.0)  # score thresholds, loss weights
open_fraction = number_in(0.0, 1.0, low_open=True, high_open=True)  # sparsity, validation share


def parse_option(text: str) -> tuple[str, Any]:
    """KEY=VALUE with the value read as YAML (numbers, booleans, strings): never eval."""
    import yaml  # lazy: only this flag parses YAML

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. alpha=0.5)")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, sort_keys=False))


# Each command builds its typed options object from the flags and hands it to its pipeline. It
# imports that pipeline when it runs, so the light commands (eval of a .tflite,
# benchmark, demo, check of a .tflite, doctor) never import TensorFlow.
# -------------------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from edgecnn.config import TrainConfig, load_train_config  # lazy: see above

    config = load_train_config(args.config) if args.config else TrainConfig()
    flags = {
        "arch": args.arch,
        "data": args.data,
        "img": args.img,
        "channels": args.channels,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "val_fraction": args.val_fraction,
        "out": args.out,
        "weights": args.weights,
        "fine_tune_at": args.fine_tune_at,
        "fine_tune_epochs": args.fine_tune_epochs,
        "cache": args.cache,
        "precision": args.precision,
        "clip_norm": args.clip_norm,
        "accumulate": args.accumulate,
        "devices": args.devices,
        "lr_scaling": args.lr_scaling,
        "adversarial": args.adversarial,
        "adversarial_eps": args.eps,
    }
    if args.resume:  # the run continues exactly as its config.yaml records it
        given = [k for k, v in flags.items() if v is not None] + ["config"] * bool(args.config)
        given += ["option"] * bool(args.option) + ["no-augment"] * args.no_augment
        if given or args.freeze_backbone:
            name = (given or ["freeze-backbone"])[0].replace("_", "-")
            raise EdgecnnError(f"--resume continues {args.resume} as its config.yaml records it; drop --{name}")
        recorded = Path(args.resume) / "config.yaml"
        if not recorded.is_file():
            raise EdgecnnError(f"--resume {args.resume}: not a run folder (no config.yaml); give a run's --out folder")
        config = load_train_config(recorded)
        flags = {"out": args.resume}
    for key, value in flags.items():  # a flag given on the command line overrides the recipe
        if value is not None:
            setattr(config, key, value)
    if args.no_augment:
        config.augment = False
    if args.freeze_backbone:
        config.freeze_backbone = True
    config.arch_options.update(dict(args.option or []))
    from edgecnn.tasks import check_task, task_of_arch  # lazy: see above

    task = task_of_arch(config.arch)  # fail on a bad name before data loading
    check_task(args.task, task.name, f"architecture {config.arch}")
    from edgecnn.pipelines.train import train  # lazy: see above

    result = train(config, resume=bool(args.resume))
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
    from edgecnn.config import load_config  # lazy: see above
    from edgecnn.pipelines.convert import ConvertOptions, convert, format_report  # lazy: see above

    options = load_config(args.config, ConvertOptions) if args.config else ConvertOptions()
    flags = {
        "format": args.format,
        "io": args.io,
        "calib": args.calib,
        "calib_samples": args.calib_samples,
        "data": args.data,
        "task": args.task,
    }
    options = dataclasses.replace(options, **{k: v for k, v in flags.items() if v is not None})
    if args.no_eval:
        options = dataclasses.replace(options, evaluate=False)
    if args.all_int8:
        options = dataclasses.replace(options, all_int8=True)
    if args.onnx:  # an .onnx instead of a .tflite: float32 unless --int8 (or the recipe) names the format
        fmt = args.format or (options.format if args.config else "float32")
        options = dataclasses.replace(options, onnx=True, format=fmt, opset=args.opset)
    elif args.opset is not None:
        raise EdgecnnError(f"--opset {args.opset} sets the ONNX opset; add --onnx")
    if args.float_layers:
        options = dataclasses.replace(options, float_layers=tuple(args.float_layers))
    if args.debug:
        from edgecnn.pipelines.quant_debug import check_debuggable  # lazy: see above

        check_debuggable(options.format, options.onnx)  # before the conversion
    report = convert(args.model, args.output, options)
    print_json(report.as_dict()) if args.json else print(format_report(report))
    if args.debug:  # the per-layer report of the model just written, beside it
        from edgecnn.pipelines.quant_debug import QuantDebugOptions, format_quant_debug, quant_debug  # lazy: see above

        debug = QuantDebugOptions(
            float_layers=options.float_layers,
            calib=options.calib,
            calib_samples=options.calib_samples,
            data=options.data,
            out=str(Path(report.output).with_suffix("")) + "_quant_debug",
        )
        result = quant_debug(args.model, debug)
        print_json(result.as_dict()) if args.json else print(format_quant_debug(result))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.evaluate import EvalOptions, evaluate, format_eval  # lazy: see above

    options = EvalOptions(
        args.data, args.split, args.plots, args.task, args.threads, args.delegate, args.device, provider=args.provider
    )
    if args.attack:
        options = dataclasses.replace(options, attack=args.attack, eps=args.eps, steps=args.steps)
    elif args.eps is not None or args.steps is not None:
        raise EdgecnnError("--eps and --steps set an adversarial attack; add --attack fgsm or --attack pgd")
    result = evaluate(args.model, options)
    print_json(result) if args.json else print(format_eval(result))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from edgecnn.benchmarks.latency import format_table, format_undelegated  # lazy: see above
    from edgecnn.demo.pipeline import format_stages  # lazy: see above
    from edgecnn.pipelines.benchmark import BenchmarkOptions, benchmark  # lazy: see above

    options = BenchmarkOptions(
        args.warmup,
        args.runs,
        args.seconds,
        args.task,
        args.threads,
        args.delegate,
        args.device,
        args.source,
        provider=args.provider,
    )
    results = benchmark(args.models, options)
    if args.json:
        for result in results:
            print_json(result.as_dict())
    else:
        print(format_table(results))
        if args.verbose:
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
    from edgecnn.demo.pipeline import format_stages  # lazy: see above
    from edgecnn.pipelines.demo import DemoOptions, demo  # lazy: see above

    options = DemoOptions(
        model=args.model,
        source=args.source,
        loop=args.loop,
        max_retries=args.max_retries,
        save=args.save,
        no_display=args.no_display,
        max_frames=args.max_frames,
        top_k=args.top_k,
        threshold=args.threshold,
        task=args.task,
        threads=args.threads,
        delegate=args.delegate,
        device=args.device,
        provider=args.provider,
        serve=args.serve,
        verbose=args.verbose,
    )
    summary = demo(options)
    if args.json:
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
    from edgecnn.pipelines.optimize import OptimizeConfig  # lazy: see above

    config = OptimizeConfig(
        prune=args.prune,
        prune_schedule=args.prune_schedule,
        structured=args.structured,
        prune_block=args.prune_block,
        cluster=args.cluster,
        qat=args.qat,
        distill_from=args.distill_from,
        temperature=args.temperature,
        alpha=args.alpha,
        epochs=args.epochs,
        distill_epochs=args.distill_epochs,
        lr=args.lr,
        seed=args.seed,
        out=args.out,
        data=args.data,
    )
    config.steps()  # "nothing to do" before TensorFlow starts
    from edgecnn.training.keras_io import check_keras_path  # lazy: see above

    check_keras_path(args.model)  # missing or wrong files fail before any work
    if args.distill_from:
        check_keras_path(args.distill_from)
    if args.task:
        from edgecnn.metadata import read_keras_info  # lazy: see above
        from edgecnn.tasks import check_task  # lazy: see above

        info = read_keras_info(check_keras_path(args.model))
        check_task(args.task, info.task if info else "classify", str(args.model))
    from edgecnn.optimize.report import markdown  # lazy: see above
    from edgecnn.pipelines.optimize import optimize  # lazy: see above

    print(markdown(optimize(args.model, config)))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.explain import ExplainOptions, explain, format_explain  # lazy: see above

    options = ExplainOptions(method=args.method, layer=args.layer, target=args.target_class, out=args.out)
    report = explain(args.model, args.images, options)
    print_json(report.as_dict()) if args.json else print(format_explain(report))
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.visualize import VisualizeOptions, format_visualize, visualize  # lazy: see above

    options = VisualizeOptions(filters=args.filters, maps=args.maps, image=args.image, out=args.out)
    print(format_visualize(visualize(args.model, options)))
    return 0


def cmd_quant_debug(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.quant_debug import QuantDebugOptions, format_quant_debug, quant_debug  # lazy: see above

    options = QuantDebugOptions(
        float_layers=tuple(args.float_layers or ()),
        top=args.top,
        samples=args.samples,
        calib=args.calib,
        data=args.data,
        out=args.out,
    )
    report = quant_debug(args.model, options)
    print_json(report.as_dict()) if args.json else print(format_quant_debug(report))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from edgecnn.edgetpu.check import format_check  # lazy: see above
    from edgecnn.pipelines.check import CheckOptions, check_model  # lazy: see above

    options = CheckOptions(args.edgetpu, args.runtime, args.img, args.channels, args.classes)
    report = check_model(args.model, options)
    print_json(report.as_dict()) if args.json else print(format_check(report))
    return 0 if report.fully_mapped else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from edgecnn.doctor import DoctorOptions, run_doctor  # lazy: see above

    return run_doctor(DoctorOptions(no_cameras=args.no_cameras, json=args.json))


def cmd_archs(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.archs import all_stats, format_table  # lazy: see above

    rows = all_stats(use_cache=not args.no_cache)
    print_json([dataclasses.asdict(r) for r in rows]) if args.json else print(format_table(rows))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.archs import ProfileOptions, profile_target  # lazy: see above
    from edgecnn.profile import format_profile  # lazy: see above

    profile = profile_target(args.target, ProfileOptions(args.img, args.channels, args.classes, args.int8))
    print_json(profile.as_dict()) if args.json else print(format_profile(profile))
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from edgecnn.pipelines.quickstart import quickstart  # lazy: see above

    quickstart(args.out, epochs=args.epochs, arch=args.arch)
    return 0


# ---------------------------------------------------------------------------------------- parser
def _task_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        choices=tuple(TASKS),
        help="optional: taken from the architecture or the model's metadata; when given it must agree",
    )


def _runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads", type=thread_count, default=None, help="interpreter threads (default: all cores; at most 4x cores)"
    )
    p.add_argument(
        "--delegate",
        choices=DELEGATES,
        default="xnnpack",
        help="none: plain kernels; xnnpack: LiteRT's CPU delegate (default); edgetpu: Coral",
    )
    p.add_argument("--device", default=None, help="Edge TPU device, e.g. usb:0 or pci:0 (with --delegate edgetpu)")
    p.add_argument(
        "--provider",
        choices=tuple(PROVIDERS),
        default=None,
        help=".onnx models: the ONNX Runtime execution provider (default cpu); tensorrt caches its engine beside "
        "the model",
    )


def _quant_debug_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--float-layers",
        nargs="+",
        dest="float_layers",
        metavar="NAME",
        help="int8: keep these Keras layers in float (mixed int8/float); see edgecnn quant-debug",
    )


def build_parser() -> Parser:
    from edgecnn.convert.formats import FORMATS, IO_TYPES  # lazy: see above
    from edgecnn.convert.onnx import DEFAULT_OPSET, OPSETS  # lazy: see above
    from edgecnn.pipelines.explain import METHODS  # lazy: see above
    from edgecnn.pipelines.robustness import ATTACK_NAMES  # lazy: see above

    parser = Parser(prog="edgecnn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edgecnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("-v", "--verbose", action="store_true", help="say which runtime and settings are used")
        p.set_defaults(func=handler)
        return p

    p = command("quickstart", cmd_quickstart, "train, convert, evaluate, benchmark and demo on bundled digits")
    p.add_argument("--out", default="runs/quickstart", help="folder for everything it writes")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the recipe's)")
    p.add_argument("--arch", default=None, help="architecture (default: lenet5)")

    p = command("train", cmd_train, "train an architecture on a dataset and write a run folder")
    p.add_argument("--config", help="YAML recipe (e.g. training/lenet5_digits.yaml); flags override it")
    p.add_argument("--arch", help="architecture name (edgecnn archs); its task picks the data format and loss")
    p.add_argument(
        "--data",
        help="classify: 'digits' or a folder of class subfolders; detect: 'shapes' or a COCO/YOLO folder; "
        "segment: 'shapes-seg' or a folder with images/ and masks/ (default: the task's built-in)",
    )
    _task_option(p)
    p.add_argument("--img", type=image_size, help=f"input height and width in pixels ({MIN_IMG}..{MAX_IMG})")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 (gray) or 3 (RGB); default: the data's")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--seed", type=int)
    p.add_argument("--val-fraction", type=open_fraction, dest="val_fraction", help="share held out, in (0, 1)")
    p.add_argument("--no-augment", action="store_true", help="no random shifts and zooms")
    p.add_argument(
        "--cache",
        metavar="memory|PREFIX",
        help="keep a streamed dataset's decoded images after the first epoch: in RAM ('memory', for sets that "
        "fit) or in files PREFIX-* (reused by later runs on the same files); default: decode every epoch",
    )
    p.add_argument(
        "--option",
        action="append",
        type=parse_option,
        metavar="KEY=VALUE",
        help="architecture option, e.g. alpha=0.5 (repeatable)",
    )
    p.add_argument("--weights", help="initial weights: 'imagenet' (keras.applications) or a .keras/.h5/run folder")
    p.add_argument(
        "--freeze-backbone", action="store_true", dest="freeze_backbone", help="train only the head (with --weights)"
    )
    p.add_argument(
        "--fine-tune-at",
        dest="fine_tune_at",
        metavar="LAYER",
        help="after the head phase, unfreeze from this layer index or name and train on at a lower lr",
    )
    p.add_argument("--fine-tune-epochs", type=positive_int, dest="fine_tune_epochs")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="mixed_float16 (GPUs with tensor cores) or mixed_bfloat16: faster training there (emulated and slower "
        "on most CPUs); model.keras and every export stay float32",
    )
    p.add_argument("--clip-norm", type=positive_float, dest="clip_norm", help="clip the gradient to this global norm")
    p.add_argument(
        "--accumulate",
        type=positive_int,
        metavar="N",
        help="sum the gradients of N micro-batches of --batch, then update once (a batch of N x --batch in the "
        "memory of one; BatchNorm still sees micro-batches)",
    )
    p.add_argument(
        "--devices",
        metavar="N|all",
        help="MirroredStrategy over the first N visible GPUs (default: all); with TF_CONFIG set, one worker of a "
        "multi-worker run. --batch is per device: global batch = batch x devices x accumulate",
    )
    p.add_argument(
        "--lr-scaling",
        choices=LR_SCALING_RULES,
        dest="lr_scaling",
        help="scale --lr with the global batch: linear or sqrt in devices x accumulate (default none)",
    )
    p.add_argument(
        "--adversarial",
        metavar="fgsm|pgd",
        help="adversarial training: the first half of every batch replaced by attacked images (the other half "
        "clean), crafted against the current weights",
    )
    p.add_argument(
        "--eps",
        type=number_in(0.0, 1.0, low_open=True),
        help="--adversarial budget, a fraction of the 0-1 pixel range (default 0.1)",
    )
    p.add_argument("--resume", metavar="RUN", help="continue a killed run from its last checkpoint (no other flags)")
    p.add_argument("--out", help="run folder (default: runs/train)")

    p = command("convert", cmd_convert, "convert a Keras model to .tflite with metadata and an accuracy report")
    p.add_argument("model", help="model.keras or a run folder")
    group = p.add_mutually_exclusive_group()
    for name, fmt in FORMATS.items():
        group.add_argument(f"--{name}", dest="format", action="store_const", const=name, help=fmt.help)
    p.add_argument("--config", help="YAML conversion recipe (e.g. convert/int8.yaml); flags override it")
    p.add_argument("--io", choices=IO_TYPES, help="int8 input/output type (default uint8)")
    p.add_argument(
        "--all-int8",
        action="store_true",
        dest="all_int8",
        help="--int8: quantize every op, also those XNNPACK runs only in float (for NPUs and microcontrollers)",
    )
    p.add_argument("--calib", help="calibration images: 'digits', a folder, or 'random' (default: run's val data)")
    p.add_argument("--calib-samples", type=positive_int, dest="calib_samples", help="default 200")
    p.add_argument("--data", help="evaluation data for the report (default: the model's own dataset)")
    p.add_argument("--no-eval", action="store_true", help="skip the accuracy check")
    p.add_argument(
        "--debug",
        action="store_true",
        help="int8: also write the per-layer quantization report (edgecnn quant-debug) beside the .tflite",
    )
    _quant_debug_options(p)
    p.add_argument(
        "--onnx",
        action="store_true",
        help="write an .onnx for ONNX Runtime (tf2onnx) instead of a .tflite: float32, or int8 QDQ with --int8",
    )
    p.add_argument(
        "--opset",
        type=whole_number(*OPSETS),
        help=f"--onnx: the ONNX opset, {OPSETS[0]}..{OPSETS[1]} (default {DEFAULT_OPSET})",
    )
    p.add_argument("-o", "--output", help="output .tflite (.onnx with --onnx) path (default: beside the model)")
    _task_option(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = command("optimize", cmd_optimize, "prune, cluster, quantization-aware training, distillation; compared")
    p.add_argument("model", help="a run folder or model.keras (its dataset is used for fine-tuning)")
    p.add_argument(
        "--prune", type=open_fraction, metavar="SPARSITY", help="magnitude pruning to this sparsity in (0, 1), e.g. 0.8"
    )
    p.add_argument("--prune-schedule", choices=("polynomial", "constant"), default="polynomial", dest="prune_schedule")
    p.add_argument("--structured", choices=("2:4",), help="N:M structured sparsity (with --prune)")
    p.add_argument(
        "--prune-block",
        type=positive_int,
        default=1,
        dest="prune_block",
        help="prune Dense kernels in blocks of N input weights (compresses better; e.g. 4)",
    )
    p.add_argument("--cluster", type=whole_number(2), metavar="N", help="weight clustering to N clusters, e.g. 16")
    p.add_argument("--qat", action="store_true", help="quantization-aware training (keeps sparsity/clusters)")
    p.add_argument("--distill-from", dest="distill_from", metavar="TEACHER", help="teacher .keras or run folder")
    p.add_argument("--temperature", type=positive_float, default=4.0)
    p.add_argument("--alpha", type=fraction, default=0.1, help="weight of the hard-label loss in distillation (0..1)")
    p.add_argument("--epochs", type=positive_int, default=4, help="fine-tuning epochs per step")
    p.add_argument("--distill-epochs", type=positive_int, dest="distill_epochs", help="default: the run's epochs")
    p.add_argument("--lr", type=positive_float, default=1e-4, help="fine-tuning learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: RUN/optimized)")
    p.add_argument(
        "--data",
        help="fine-tuning data ('digits' or a folder of class subfolders): needed for a Keras model edgecnn did "
        "not train; default: the run's own dataset",
    )
    _task_option(p)

    p = command("eval", cmd_eval, "accuracy of a .keras, .tflite or .onnx model on a dataset's validation split")
    p.add_argument("model")
    p.add_argument("--data", help="dataset (default: the one the model was trained on)")
    p.add_argument(
        "--split",
        choices=SPLITS,
        help="which images: val or train (the model's seeded split) or all; default: val of the model's own "
        "dataset, all of any other (a test set)",
    )
    p.add_argument("--plots", action="store_true", help="write a confusion-matrix PNG beside the model")
    p.add_argument(
        "--attack",
        choices=ATTACK_NAMES,
        help="also measure top-1 on adversarial images crafted on the Keras model (for a .tflite: on its source "
        "model.keras, then transferred)",
    )
    p.add_argument("--eps", type=number_in(0.0, 1.0, low_open=True), help="attack budget, a fraction of 0-255 (0.1)")
    p.add_argument("--steps", type=positive_int, help="PGD steps (default 10)")
    _task_option(p)
    p.add_argument("--json", action="store_true")
    _runtime_options(p)

    p = command("benchmark", cmd_benchmark, "latency, FPS and memory of .tflite and .onnx models (one table)")
    p.add_argument("models", nargs="+")
    p.add_argument("--warmup", type=non_negative_int, default=10)
    p.add_argument("--runs", type=positive_int, default=100)
    p.add_argument("--seconds", type=positive_float, default=None, help="time budget instead of --runs")
    p.add_argument(
        "--source",
        help="also run the whole demo pipeline (headless) on this video, camera or image folder for --runs "
        "frames: per-stage times beside the invoke-only numbers",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    _task_option(p)
    _runtime_options(p)

    p = command("demo", cmd_demo, "camera/video/image demo with overlays; runs on a Raspberry Pi")
    p.add_argument("--model", required=True)
    p.add_argument(
        "--source",
        default="0",
        help="camera index, picam or picam:WxH (Raspberry Pi camera), a GStreamer pipeline, video file, image, "
        "folder or glob (default 0)",
    )
    p.add_argument("--loop", action="store_true", help="replay a video or image folder forever (kiosk, soak test)")
    p.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=5,
        dest="max_retries",
        help="reconnect tries with backoff when a camera is lost (default 5)",
    )
    p.add_argument("--save", help="write the annotated video here (.mp4)")
    p.add_argument("--no-display", action="store_true", help="no window (headless boards)")
    p.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help="live view over HTTP: MJPEG stream, a page and stats (127.0.0.1 unless HOST is given; 0 picks a port)",
    )
    p.add_argument("--max-frames", type=positive_int, dest="max_frames")
    p.add_argument("--top-k", type=positive_int, default=3, dest="top_k")
    p.add_argument("--threshold", type=fraction, default=0.4, help="detect: the lowest score drawn (default 0.4)")
    _task_option(p)
    p.add_argument("--json", action="store_true")
    _runtime_options(p)

    p = command("check", cmd_check, "will it run on the Edge TPU? per op/layer, before you train or compile")
    p.add_argument("model", help="a .tflite model, a .keras model or run folder, or an architecture name")
    p.add_argument("--edgetpu", action="store_true", help="check that every op maps to the Coral Edge TPU")
    p.add_argument(
        "--runtime",
        type=positive_int,
        default=DEFAULT_RUNTIME,
        help=f"Edge TPU runtime version to check for (default {DEFAULT_RUNTIME}, the last public release)",
    )
    p.add_argument(
        "--img", type=image_size, help=f"input size when MODEL is an architecture name ({MIN_IMG}..{MAX_IMG})"
    )
    p.add_argument("--channels", type=int, choices=(1, 3), default=3, help="for an architecture name")
    p.add_argument("--classes", type=positive_int, default=1000, help="for an architecture name")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = command("doctor", cmd_doctor, "check this machine: Python, numpy, interpreter, Edge TPU, compiler, cameras")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--no-cameras", action="store_true", dest="no_cameras", help="skip probing cameras 0-3")

    p = command("archs", cmd_archs, "the registered architectures: family, params, MACs, input size, Edge TPU")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-cache", action="store_true", dest="no_cache", help="re-measure every architecture")

    p = command("profile", cmd_profile, "per-layer shapes, params, MACs, receptive field and activation memory")
    p.add_argument("target", help="an architecture name (edgecnn archs) or a .keras model / run folder")
    p.add_argument("--img", type=image_size, help=f"input size for an architecture ({MIN_IMG}..{MAX_IMG})")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3)
    p.add_argument("--classes", type=positive_int, default=1000)
    p.add_argument("--int8", action="store_true", help="activation memory at 1 byte per element (default 4)")
    p.add_argument("--json", action="store_true")

    p = command("explain", cmd_explain, "why a classifier predicts what it does: heatmap overlays as PNG")
    p.add_argument("model", help="model.keras / run folder, or a .tflite (with --method occlusion)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files to explain")
    p.add_argument(
        "--method",
        choices=tuple(METHODS),
        default="gradcam",
        help="gradcam (default), saliency, smoothgrad: gradients of a Keras model; occlusion: any model, "
        "int8 .tflite included, without TensorFlow",
    )
    p.add_argument("--layer", metavar="NAME", help="Grad-CAM's layer (default: the last convolution, nested too)")
    p.add_argument(
        "--class", type=non_negative_int, dest="target_class", metavar="K", help="explain class K (default: predicted)"
    )
    p.add_argument("--out", required=True, help="folder for the overlay PNGs, the grid and explain.json")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = command("visualize", cmd_visualize, "a convolution's filters and a layer's feature maps, as PNG grids")
    p.add_argument("model", help="model.keras or a run folder")
    p.add_argument("--filters", metavar="LAYER", help="draw this convolution's kernels (default: the first conv)")
    p.add_argument("--maps", metavar="LAYER", help="draw this layer's output channels for --image")
    p.add_argument("--image", metavar="IMG", help="the input image for --maps")
    p.add_argument("--out", required=True, help="folder for the PNGs and visualize.json")

    p = command(
        "quant-debug", cmd_quant_debug, "which Keras layers int8 hurts: per-layer error, ranked, with an action each"
    )
    p.add_argument("model", help="model.keras or a run folder")
    _quant_debug_options(p)
    p.add_argument(
        "--top",
        type=positive_int,
        default=3,
        help="how many of the worst layers to suggest in float, each with the layers reading its output (default 3)",
    )
    p.add_argument(
        "--samples", type=positive_int, default=200, help="training images the ranking is measured on (default 200)"
    )
    p.add_argument("--calib", help="calibration images: 'digits', a folder, or 'random' (default: run's val data)")
    p.add_argument(
        "--data", help="dataset to rank and measure on (default: the run's; needed for a model edgecnn did not train)"
    )
    p.add_argument("--out", help="report folder (default: beside the model, MODEL_quant_debug/)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
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
