"""``edgecnn eval``: accuracy of a .keras or .tflite model on the validation split it was trained against.

A .tflite is run with the light runtime (no TensorFlow); a .keras model needs the train extra.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgecnn.benchmarks.accuracy import confusion_png
from edgecnn.core.config import SPLIT_WORDS, SPLITS, Range, opt
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import ModelInfo
from edgecnn.data.registry import model_data
from edgecnn.pipelines.options import DELEGATE, DEVICE, PROVIDER, TASK, THREADS
from edgecnn.pipelines.robustness import ATTACK_NAMES, attack_options, find_source_keras, format_robustness, robustness
from edgecnn.runtime.open import check_runtime_flags, open_model
from edgecnn.tasks import check_task, get_task


@dataclass(frozen=True)
class EvalOptions:
    data: str | None = field(default=None, metadata=opt("dataset (default: the one the model was trained on)"))
    split: str | None = field(  # None: val of the model's own data, all of any other
        default=None,
        metadata=opt(
            "which images: val or train (the model's seeded split) or all; default: val of the model's own "
            "dataset, all of any other (a test set)",
            choices=SPLITS,
        ),
    )
    plots: bool = field(default=False, metadata=opt("write a confusion-matrix PNG beside the model"))
    task: str | None = field(default=None, metadata=TASK)  # must agree with the model's record
    threads: int | None = field(default=None, metadata=THREADS)
    delegate: str = field(default="xnnpack", metadata=DELEGATE)
    device: str | None = field(default=None, metadata=DEVICE)
    provider: str | None = field(default=None, metadata=PROVIDER)  # an .onnx model's (None: cpu)
    attack: str | None = field(  # also top-1 on adversarial images (edgecnn.pipelines.robustness)
        default=None,
        metadata=opt(
            "also measure top-1 on adversarial images crafted on the Keras model (for a .tflite: on its source "
            "model.keras, then transferred)",
            choices=ATTACK_NAMES,
        ),
    )
    eps: float | None = field(  # None: 0.1
        default=None, metadata=opt("attack budget, a fraction of 0-255 (0.1)", range=Range(0, 1, low_open=True))
    )
    steps: int | None = field(default=None, metadata=opt("PGD steps (default 10)", range=Range(1)))  # None: 10


def _eval_data(info: ModelInfo, data: str | None, split: str | None, run: Path) -> tuple[Any, str]:
    images, part = model_data(info, data, split, run)  # run: the folder whose split.json names the files
    spec = data or info.data.get("spec")
    if info.labels and list(images.labels) != list(info.labels):
        raise EdgecnnError(
            f"dataset {spec} has classes {images.labels[:5]}... but the model was trained on "
            f"{info.labels[:5]}...; evaluate on data with the model's classes"
        )
    return images, part


def _open_tflite(path: Path, options: EvalOptions) -> tuple[Any, ModelInfo]:
    """The .tflite or .onnx model and its record; a model edgecnn did not write gets one from its tensor shapes."""
    check_runtime_flags([path], options.delegate, options.provider)
    model = open_model(path, options.threads, options.delegate, options.device, options.provider)
    info = model.info or ModelInfo(
        labels=model.labels, input_size=list(model.input_hw), channels=model.channels, pixel_format=model.pixel_format
    )
    return model, info


def evaluate(model_path: str | os.PathLike, options: EvalOptions = EvalOptions()) -> dict[str, Any]:
    """The model's task metrics on the validation split it was trained against (or on ``data``)."""
    path = Path(model_path)
    attack = attack_options(options.attack, options.eps, options.steps) if options.attack else None
    if attack is not None and path.suffix == ".tflite":
        find_source_keras(path)  # no source to craft on: say so before any work
    keras_model = model = None
    if path.suffix in (".tflite", ".onnx"):  # the deployed model, on the light runtime (LiteRT or ONNX Runtime)
        model, info = _open_tflite(path, options)
        runtime = f"{model.backend.name} {model.backend.version}"
        task = get_task(info.task)
        check_task(options.task, task.name, str(path))
        val, part = _eval_data(info, options.data, options.split, path.parent)
        with tqdm(total=len(val), desc="eval", unit="img", leave=False, disable=None) as bar:
            metrics = task.evaluate_tflite(model, val, progress=bar.update)
    else:
        from edgecnn.trainer.load import load_keras  # lazy: a .tflite is evaluated without TensorFlow

        keras_model, info = load_keras(path)
        if info is None:
            raise EdgecnnError(f"{path} has no edgecnn record; evaluate models trained by edgecnn train")
        task = get_task(info.task)
        check_task(options.task, task.name, str(path))
        val, part = _eval_data(info, options.data, options.split, path.parent)
        metrics = task.evaluate_keras(keras_model, info, val)
        runtime = "tf_keras"
    metrics.pop("predictions", None)
    result = {
        "model": str(path),
        "task": task.name,
        "runtime": runtime,
        "data": options.data or info.data.get("spec"),
        "split": part,
        **metrics,
    }
    if attack is not None:
        result["robustness"] = robustness(path, info, val, attack, keras_model=keras_model, runner=model)
    if options.plots and "confusion" in result:
        png = path.with_name(path.stem + "_confusion.png")
        confusion_png(
            np.asarray(result["confusion"]), list(val.labels), png, title=f"{path.name}: {task.summary(result)}"
        )
        result["confusion_png"] = str(png)
    return result


def format_eval(result: dict[str, Any]) -> str:
    task = get_task(result.get("task"))
    part = SPLIT_WORDS[result["split"]]
    lines = [f"{result['model']} on {result['data']} ({result['images']} {part}, {result['runtime']})"]
    lines += task.format_metrics(result)
    if "robustness" in result:
        lines += format_robustness(result["robustness"])
    if "confusion_png" in result:
        lines.append(f"  confusion matrix: {result['confusion_png']}")
    return "\n".join(lines)
