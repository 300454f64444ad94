"""``edgecnn eval``: accuracy of a .keras or .tflite model on the validation split it was trained against.

A .tflite is run with the light runtime (no TensorFlow); a .keras model needs the train extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgecnn.benchmarks.accuracy import confusion_png
from edgecnn.errors import EdgecnnError
from edgecnn.metadata import ModelInfo
from edgecnn.tasks import Task, get_task
from edgecnn.tasks.base import check_task


def _val_data(task: Task, info: ModelInfo, data: str | None) -> Any:
    spec = data or info.data.get("spec")
    if not spec:
        raise EdgecnnError(f"the model does not record its dataset; pass --data {task.default_data} or --data DIR")
    split = task.load(
        spec, info.input_size[0], info.channels, info.data.get("seed", 0), info.data.get("val_fraction", 0.2)
    )
    if info.labels and list(split.val.labels) != list(info.labels):
        raise EdgecnnError(
            f"dataset {spec} has classes {split.val.labels[:5]}... but the model was trained on "
            f"{info.labels[:5]}...; evaluate on data with the model's classes"
        )
    return split.val


def _open_tflite(path: Path, threads: int | None, delegate: str, device: str | None) -> tuple[Any, ModelInfo]:
    """The model and its record; a .tflite edgecnn did not write gets one from its tensor shapes."""
    from edgecnn.runtime.interpreter import load_model

    model = load_model(path, threads=threads, delegate=delegate, device=device)
    info = model.info or ModelInfo(
        labels=model.labels, input_size=list(model.input_hw), channels=model.channels, pixel_format=model.pixel_format
    )
    return model, info


def evaluate(
    model_path: str | os.PathLike,
    data: str | None = None,
    plots: bool = False,
    threads: int | None = None,
    delegate: str = "xnnpack",
    device: str | None = None,
    task_name: str | None = None,
) -> dict[str, Any]:
    """The model's task metrics on the validation split it was trained against (or on ``data``)."""
    path = Path(model_path)
    if path.suffix == ".tflite":
        model, info = _open_tflite(path, threads, delegate, device)
        runtime = f"{model.backend.name} {model.backend.version}"
        task = get_task(info.task)
        check_task(task_name, task.name, str(path))
        val = _val_data(task, info, data)
        with tqdm(total=len(val), desc="eval", unit="img", leave=False, disable=None) as bar:
            metrics = task.evaluate_tflite(model, val, progress=bar.update)
    else:
        from edgecnn.training.keras_io import load_keras

        keras_model, info = load_keras(path)
        if info is None:
            raise EdgecnnError(f"{path} has no edgecnn record; evaluate models trained by edgecnn train")
        task = get_task(info.task)
        check_task(task_name, task.name, str(path))
        val = _val_data(task, info, data)
        metrics = task.evaluate_keras(keras_model, info, val)
        runtime = "tf_keras"
    metrics.pop("predictions", None)
    result = {
        "model": str(path),
        "task": task.name,
        "runtime": runtime,
        "data": data or info.data.get("spec"),
        **metrics,
    }
    if plots and "confusion" in result:
        png = path.with_name(path.stem + "_confusion.png")
        confusion_png(
            np.asarray(result["confusion"]), list(val.labels), png, title=f"{path.name}: {task.summary(result)}"
        )
        result["confusion_png"] = str(png)
    return result


def format_eval(result: dict[str, Any]) -> str:
    task = get_task(result.get("task"))
    lines = [f"{result['model']} on {result['data']} ({result['images']} validation images, {result['runtime']})"]
    lines += task.format_metrics(result)
    if "confusion_png" in result:
        lines.append(f"  confusion matrix: {result['confusion_png']}")
    return "\n".join(lines)
