"""``edgecnn eval``: accuracy of a .keras or .tflite model on the validation split it was trained against.

A .tflite is run with the light runtime (no TensorFlow); a .keras model needs the train extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgecnn.benchmarks.accuracy import classification_metrics, confusion_png
from edgecnn.data.base import load_classification
from edgecnn.errors import EdgecnnError
from edgecnn.metadata import ModelInfo


def _split(info: ModelInfo, data: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    spec = data or info.data.get("spec")
    if not spec:
        raise EdgecnnError("the model does not record its dataset; pass --data digits or --data DIR")
    split = load_classification(
        spec,
        info.input_size[0],
        info.channels,
        seed=info.data.get("seed", 0),
        val_fraction=info.data.get("val_fraction", 0.2),
    )
    if info.labels and list(split.val.labels) != list(info.labels):
        raise EdgecnnError(
            f"dataset {spec} has classes {split.val.labels[:5]}... but the model was trained on "
            f"{info.labels[:5]}...; evaluate on data with the model's classes"
        )
    return split.val.x, split.val.y, split.val.labels


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
) -> dict[str, Any]:
    path = Path(model_path)
    if path.suffix == ".tflite":
        model, info = _open_tflite(path, threads, delegate, device)
        runtime = f"{model.backend.name} {model.backend.version}"
        x, y, labels = _split(info, data)
        with tqdm(total=len(x), desc="eval", unit="img", leave=False, disable=None) as bar:
            probs = model.predict(x, progress=bar.update)
    else:
        from edgecnn.training.keras_io import load_keras

        keras_model, info = load_keras(path)
        if info is None:
            raise EdgecnnError(f"{path} has no edgecnn record; evaluate models trained by edgecnn train")
        x, y, labels = _split(info, data)
        probs = keras_model.predict(x.astype(np.float32), batch_size=64, verbose=0)
        runtime = "tf_keras"
    result = {
        "model": str(path),
        "runtime": runtime,
        "data": data or info.data.get("spec"),
        **classification_metrics(probs, y, labels),
    }
    if plots:
        png = path.with_name(path.stem + "_confusion.png")
        confusion_png(
            np.asarray(result["confusion"]), labels, png, title=f"{path.name}: top-1 {100 * result['top1']:.2f}%"
        )
        result["confusion_png"] = str(png)
    return result


def format_eval(result: dict[str, Any]) -> str:
    lines = [
        f"{result['model']} on {result['data']} ({result['images']} validation images, {result['runtime']})",
        f"  top-1 {100 * result['top1']:.2f}%" + (f"  top-5 {100 * result['top5']:.2f}%" if "top5" in result else ""),
    ]
    per_class = "  ".join(f"{k}:{100 * v:.0f}%" for k, v in result["per_class"].items() if v is not None)
    lines.append(f"  per class: {per_class}")
    if "confusion_png" in result:
        lines.append(f"  confusion matrix: {result['confusion_png']}")
    return "\n".join(lines)
