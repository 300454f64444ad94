"""``edgecnn eval``: accuracy of a .keras or .tflite model on the validation split it was trained against.

A .tflite is run with the light runtime (no TensorFlow); a .keras model needs the train extra.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgecnn.benchmarks.accuracy import confusion_png
from edgecnn.config import SPLIT_WORDS
from edgecnn.data.registry import model_data
from edgecnn.errors import EdgecnnError
from edgecnn.metadata import ModelInfo
from edgecnn.runtime.interpreter import load_model
from edgecnn.tasks import check_task, get_task


@dataclass(frozen=True)
class EvalOptions:
    data: str | None = None  # None: the dataset the model was trained on
    split: str | None = None  # val | train | all; None: val of the model's own data, all of any other
    plots: bool = False  # confusion-matrix PNG beside the model
    task: str | None = None  # --task: optional, must agree with the model's record
    threads: int | None = None
    delegate: str = "xnnpack"
    device: str | None = None


def _eval_data(info: ModelInfo, data: str | None, split: str | None) -> tuple[Any, str]:
    images, part = model_data(info, data, split)
    spec = data or info.data.get("spec")
    if info.labels and list(images.labels) != list(info.labels):
        raise EdgecnnError(
            f"dataset {spec} has classes {images.labels[:5]}... but the model was trained on "
            f"{info.labels[:5]}...; evaluate on data with the model's classes"
        )
    return images, part


def _open_tflite(path: Path, threads: int | None, delegate: str, device: str | None) -> tuple[Any, ModelInfo]:
    """The model and its record; a .tflite edgecnn did not write gets one from its tensor shapes."""
    model = load_model(path, threads=threads, delegate=delegate, device=device)
    info = model.info or ModelInfo(
        labels=model.labels, input_size=list(model.input_hw), channels=model.channels, pixel_format=model.pixel_format
    )
    return model, info


def evaluate(model_path: str | os.PathLike, options: EvalOptions = EvalOptions()) -> dict[str, Any]:
    """The model's task metrics on the validation split it was trained against (or on ``data``)."""
    path = Path(model_path)
    if path.suffix == ".tflite":
        model, info = _open_tflite(path, options.threads, options.delegate, options.device)
        runtime = f"{model.backend.name} {model.backend.version}"
        task = get_task(info.task)
        check_task(options.task, task.name, str(path))
        val, part = _eval_data(info, options.data, options.split)
        with tqdm(total=len(val), desc="eval", unit="img", leave=False, disable=None) as bar:
            metrics = task.evaluate_tflite(model, val, progress=bar.update)
    else:
        from edgecnn.training.keras_io import load_keras  # lazy: a .tflite is evaluated without TensorFlow

        keras_model, info = load_keras(path)
        if info is None:
            raise EdgecnnError(f"{path} has no edgecnn record; evaluate models trained by edgecnn train")
        task = get_task(info.task)
        check_task(options.task, task.name, str(path))
        val, part = _eval_data(info, options.data, options.split)
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
    if "confusion_png" in result:
        lines.append(f"  confusion matrix: {result['confusion_png']}")
    return "\n".join(lines)
