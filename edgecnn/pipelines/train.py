"""``edgecnn train``: build an architecture, fit it on a dataset, write a self-contained run folder.

Run folder: model.keras, labels.txt, config.yaml, history.csv, curves.png, metrics.json.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.archs import create
from edgecnn.config import TrainConfig, to_yaml
from edgecnn.data.images import warn_skipped
from edgecnn.data.registry import default_data, load_split
from edgecnn.errors import EdgecnnError
from edgecnn.fileio import check_output_dir, ensure_dir, write_text
from edgecnn.keras_env import keras, tf
from edgecnn.metadata import ModelInfo
from edgecnn.tasks import task_of_arch
from edgecnn.training.fit import steps_per_epoch, strategy
from edgecnn.training.keras_io import save_keras
from edgecnn.training.plots import plot_history
from edgecnn.training.transfer import head_start, load_backbone, resolve_layer_index, set_trainable


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]


def model_info(config: TrainConfig, split: Any, task: str = "classify", extra: dict | None = None) -> ModelInfo:
    return ModelInfo(
        task=task,
        labels=list(split.train.labels),
        input_size=[config.img, config.img],
        channels=int(split.train.x.shape[-1]),
        pixel_format=split.train.pixel_format,
        arch=config.arch,
        quantization="float32",
        data={"spec": config.data, "seed": config.seed, "val_fraction": config.val_fraction},
        extra=dict(extra or {}),
    )


def check_finite(history: dict[str, list[float]], lr: float) -> None:
    """A run whose loss became NaN or infinite wrote nothing worth keeping: say so instead of saving it."""
    for epoch, loss in enumerate(history.get("loss", []), start=1):
        if not math.isfinite(loss):
            raise EdgecnnError(f"training diverged: loss {loss} at epoch {epoch}; lower --lr (now {lr}) and retry")


def train(config: TrainConfig, verbose: int | None = None) -> TrainResult:
    """Train ``config.arch`` on ``config.data`` for the architecture's task; write the run folder."""
    config.validate()
    task = task_of_arch(config.arch)
    if config.data is None:
        config.data = default_data(task.name)
    check_output_dir(config.out, "run")  # created only when there is a model to write into it
    split = load_split(config.data, task.name, config.img, config.channels, config.seed, config.val_fraction)
    problem = split.train.training_problem()
    skipped = split.train.skipped
    if problem:
        first = f" ({len(skipped)} problems in the data, the first: {skipped[0]})" if skipped else ""
        raise EdgecnnError(f"cannot train on {config.data}: {problem}{first}")
    warn_skipped(skipped)
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    channels = int(split.train.x.shape[-1])
    steps = steps_per_epoch(len(split.train), config.batch)

    with strategy().scope():
        model = create(config.arch, task.num_outputs(split.train), config.img, channels, **config.arch_options)
        info = model_info(config, split, task.name, model.edgecnn_extra)
        transfer = load_backbone(model, config.arch, config.weights) if config.weights else None
        if transfer:
            print(transfer.summary())
        if config.freeze_backbone:
            set_trainable(model, head_start(model))
        task.compile(model, info, config.lr, config.epochs * steps)

    train_ds = task.dataset(info, split.train, config.batch, config.seed, config.augment, True)
    val_ds = task.dataset(info, split.val, config.batch, config.seed, False, False)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2  # a progress bar on a terminal, a line per epoch in logs
    start = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, verbose=verbose).history
    if config.fine_tune_at is not None:
        extra = config.fine_tune_epochs or config.epochs
        with strategy().scope():
            set_trainable(model, resolve_layer_index(model, config.fine_tune_at))
            task.compile(model, info, config.lr * config.fine_tune_lr_factor, extra * steps)
        more = model.fit(
            train_ds, validation_data=val_ds, initial_epoch=config.epochs, epochs=config.epochs + extra, verbose=verbose
        ).history
        history = {k: history[k] + more.get(k, []) for k in history}
    train_seconds = time.perf_counter() - start
    check_finite(history, config.lr)
    for layer in model.layers:  # freezing was for this run; a saved model starts fully trainable
        layer.trainable = True

    run_dir = ensure_dir(config.out, "run")
    model_path = save_keras(model, run_dir / "model.keras", info)
    write_text(run_dir / "labels.txt", "\n".join(info.labels) + "\n")
    write_text(run_dir / "config.yaml", to_yaml(config))
    write_text(run_dir / "history.csv", history_csv(history))
    plot_history(history, run_dir / "curves.png")
    result = task.evaluate_keras(model, info, split.val)
    result.pop("predictions", None)
    summary = {
        "arch": config.arch,
        "task": task.name,
        "params": int(model.count_params()),
        "epochs": len(history["loss"]),
        "train_seconds": round(train_seconds, 1),
        "train_images": len(split.train),
        "val_images": len(split.val),
        "metric": task.metric,
        "val_metric": result[task.metric],
        **{f"val_{k}": v for k, v in result.items() if k not in ("confusion", "images")},
    }
    write_text(run_dir / "metrics.json", json.dumps(summary, indent=1))
    return TrainResult(run_dir, model_path, summary)


def history_csv(history: dict[str, list[float]]) -> str:
    buf = io.StringIO()
    keys = list(history)
    writer = csv.writer(buf)
    writer.writerow(["epoch", *keys])
    for epoch in range(len(history[keys[0]]) if keys else 0):
        writer.writerow([epoch + 1, *(f"{history[k][epoch]:.6g}" for k in keys)])
    return buf.getvalue()
