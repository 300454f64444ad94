"""``edgecnn optimize``: composable steps (distill -> prune -> cluster -> qat), each a new run folder.

Every step fine-tunes on the source run's own training split, strips its wrappers, saves
``model.keras``, converts to int8 through the one export path (the recipe of ``convert --int8``, so the
file measured is the file a user ships) and measures the deployed model: accuracy (Keras and
.tflite), size raw and gzip, kernel sparsity and distinct values, int8 latency. The comparison
report puts the float model, post-training int8 and every step side by side.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgecnn.benchmarks.latency import benchmark_model
from edgecnn.convert.export import export
from edgecnn.convert.formats import FORMATS, Format
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import ensure_dir, write_bytes, write_text
from edgecnn.core.keras_env import keras, seed_everything
from edgecnn.core.keras_io import check_keras_path, save_keras
from edgecnn.core.metadata import ModelInfo, read_keras_info
from edgecnn.data.registry import split_for_model
from edgecnn.optimize import cluster, prune
from edgecnn.optimize.common import gzip_size, sparsity, unique_values
from edgecnn.optimize.distill import DistillConfig, check_compatible, make_distiller
from edgecnn.optimize.qat import format_plan, plan_qat, quantize_model
from edgecnn.optimize.report import write_report
from edgecnn.pipelines.options import OptimizeConfig
from edgecnn.runtime.interpreter import TFLiteModel
from edgecnn.tasks import Task, get_task
from edgecnn.trainer.load import load_keras


@dataclass
class Measured:
    """One row of the comparison: a model as deployed (int8 .tflite unless named float)."""

    name: str
    metric: str  # the task's headline metric: top1, map50 or miou
    keras_score: float | None
    tflite_score: float
    tflite_bytes: int
    gzip_bytes: int
    sparsity: float
    unique_values: int
    latency_p50_ms: float
    path: str


@dataclass
class Context:
    """What the steps need: the data, the source record, and the choices that depend on other steps."""

    config: OptimizeConfig
    info: ModelInfo
    task: Task
    train: Any  # the task's data containers (ImageData, DetectionData, SegmentationData)
    val: Any
    source_epochs: int
    augment: bool = True  # as the source run was trained
    rows: list[Measured] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ steps
def _fit(model: Any, ctx: Context, epochs: int, lr: float, callbacks: list[Any] | None = None) -> None:
    """Fine-tune with the task's loss at a constant ``lr``."""
    ctx.task.compile(model, ctx.info, lr, total_steps=None)
    data = ctx.task.dataset(ctx.info, ctx.train, ctx.config.batch, ctx.config.seed, ctx.augment, True)
    model.fit(data, epochs=epochs, verbose=0, callbacks=callbacks or [])


def _steps_per_epoch(ctx: Context) -> int:
    return int(np.ceil(len(ctx.train) / ctx.config.batch))


def step_distill(model: Any, ctx: Context) -> Any:
    """A fresh copy of the source architecture, trained from scratch against the teacher."""
    cfg = DistillConfig(ctx.config.distill_from, ctx.config.temperature, ctx.config.alpha)
    cfg.validate()
    teacher, teacher_info = load_keras(cfg.teacher)
    check_compatible(teacher, model, teacher_info.labels if teacher_info else None, ctx.info.labels)
    keras.utils.set_random_seed(ctx.config.seed)
    student = keras.models.clone_model(model)  # same architecture, re-initialized weights
    epochs = ctx.config.distill_epochs or ctx.source_epochs
    distiller = make_distiller(student, teacher, cfg)
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=max(1, epochs * _steps_per_epoch(ctx)))
    distiller.compile(optimizer=keras.optimizers.Adam(schedule))
    data = ctx.task.dataset(ctx.info, ctx.train, ctx.config.batch, ctx.config.seed, ctx.augment, True)
    distiller.fit(data, epochs=epochs, verbose=0)
    return student


def step_prune(model: Any, ctx: Context) -> Any:
    cfg = prune.PruneConfig(ctx.config.prune, ctx.config.prune_schedule, ctx.config.structured, ctx.config.prune_block)
    wrapped = prune.apply_pruning(model, cfg, ctx.config.epochs * _steps_per_epoch(ctx))
    _fit(wrapped, ctx, ctx.config.epochs, ctx.config.lr, prune.callbacks())
    return prune.strip(wrapped)


def step_cluster(model: Any, ctx: Context) -> Any:
    cfg = cluster.ClusterConfig(ctx.config.cluster, preserve_sparsity=ctx.config.prune is not None)
    wrapped = cluster.apply_clustering(model, cfg)
    _fit(wrapped, ctx, ctx.config.epochs, ctx.config.lr)
    return cluster.strip(wrapped)


def qat_scheme(config: OptimizeConfig) -> str:
    """PQAT, CQAT or PCQAT keep what the earlier steps made (zeros, clusters) through QAT."""
    pruned, clustered = config.prune is not None, config.cluster is not None
    return {
        (False, False): "default",
        (True, False): "prune_preserve",
        (False, True): "cluster_preserve",
        (True, True): "cluster_prune_preserve",
    }[(pruned, clustered)]


def step_qat(model: Any, ctx: Context) -> Any:
    print(format_plan(plan_qat(model)))
    rng = np.random.default_rng(ctx.config.seed)
    calibration = ctx.train.x[rng.choice(len(ctx.train), min(256, len(ctx.train)), replace=False)]
    qat_model = quantize_model(model, scheme=qat_scheme(ctx.config), calibration=calibration)
    _fit(qat_model, ctx, ctx.config.epochs, ctx.config.lr)
    return qat_model


@dataclass(frozen=True)
class Step:
    run: Callable[[Any, Context], Any]
    # Export kernels with one scale per tensor from this step on: a clustered kernel then keeps exactly
    # its N centroids as N int8 codes file-wide, which compresses better (see convert.tflite._converter).
    per_tensor: bool = False


STEPS: dict[str, Step] = {
    "distill": Step(step_distill),
    "prune": Step(step_prune),
    "cluster": Step(step_cluster, per_tensor=True),
    "qat": Step(step_qat),
}


# ------------------------------------------------------------------------------------ measurement
def measure(
    name: str, model: Any, ctx: Context, folder: Path, fmt: Format = FORMATS["int8"], per_tensor: bool = False
) -> Measured:
    """Convert ``model`` to ``fmt`` .tflite in ``folder`` through the one export path (the int8 row is
    ``convert --int8``'s recipe: exact rewrites, XNNPACK's float ops float) and measure it as deployed."""
    info = dataclasses.replace(ctx.info, extra={**ctx.info.extra, "optimized": name})
    calib = calibration_draw(ctx.train.x, ctx.config.seed) if fmt.needs_calibration else None
    blob = export(model, ctx.task, info, fmt, None, calib, per_tensor=per_tensor).blob
    path = write_bytes(folder / f"model_{fmt.name}.tflite", blob)
    metric = ctx.task.metric
    latency = benchmark_model(path, threads=os.cpu_count(), runs=ctx.config.bench_runs).latency_ms["p50"]
    return Measured(
        name=name,
        metric=metric,
        keras_score=ctx.task.evaluate_keras(model, ctx.info, ctx.val)[metric],
        tflite_score=ctx.task.evaluate_tflite(TFLiteModel(path), ctx.val)[metric],
        tflite_bytes=len(blob),
        gzip_bytes=gzip_size(blob),
        sparsity=round(sparsity(model), 4),
        unique_values=unique_values(model),
        latency_p50_ms=latency,
        path=str(path),
    )


def calibration_draw(images: Any, seed: int, samples: int = 200) -> np.ndarray:
    """The calibration images of every measured model: ``samples`` training images drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    return images[rng.choice(len(images), min(samples, len(images)), replace=False)]


def save_step(model: Any, ctx: Context, folder: Path, row: Measured) -> None:
    save_keras(model, folder / "model.keras", ctx.info)
    write_text(folder / "metrics.json", json.dumps(dataclasses.asdict(row), indent=1))


# -------------------------------------------------------------------------------------- pipeline
def load_context(source: str | os.PathLike, config: OptimizeConfig) -> tuple[Any, Context, Path]:
    path = check_keras_path(source)
    model, info = load_keras(path)
    info, split = split_for_model(model, info, config.data, config.seed, path, "optimize fine-tunes on it")
    task = get_task(info.task)
    config_yaml = path.parent / "config.yaml"
    epochs = (
        (yaml.safe_load(config_yaml.read_text()) or {}).get("epochs", config.epochs)
        if config_yaml.is_file()
        else config.epochs
    )
    ctx = Context(config, info, task, split.train, split.val, int(epochs))
    return model, ctx, path


def optimize(source: str | os.PathLike, config: OptimizeConfig) -> list[Measured]:
    """Run the requested steps in order; returns the comparison rows (also written as a report)."""
    steps = config.steps()
    info = read_keras_info(check_keras_path(source))  # the zip's record: no TensorFlow, no data loading yet
    task = info.task if info else "classify"
    if "distill" in steps and task != "classify":
        raise EdgecnnError(
            f"--distill-from trains on soft class targets; this is a {task} model: use --prune, --cluster or --qat"
        )
    model, ctx, path = load_context(source, config)
    out = ensure_dir(config.out or path.parent / "optimized", "optimize output")
    seed_everything(config.seed)
    print(f"measuring the source model {path} (float32 and post-training int8)")
    rows = [
        measure("float32", model, ctx, ensure_dir(out / "0_float32"), fmt=FORMATS["float32"]),
        measure("ptq_int8", model, ctx, ensure_dir(out / "0_ptq_int8")),
    ]
    current = model
    per_tensor = False
    for i, name in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {name}")
        current = STEPS[name].run(current, ctx)
        per_tensor = per_tensor or STEPS[name].per_tensor
        label = "+".join(steps[:i])
        folder = ensure_dir(out / f"{i}_{label}")
        row = measure(label, current, ctx, folder, per_tensor=per_tensor)
        save_step(current, ctx, folder, row)
        rows.append(row)
        print(
            f"    {row.metric}: keras {100 * (row.keras_score or 0):.2f}%  int8 {100 * row.tflite_score:.2f}%  "
            f"gzip {row.gzip_bytes / 1024:.1f} KiB  sparsity {100 * row.sparsity:.0f}%"
        )
    write_report(rows, out)
    return rows
