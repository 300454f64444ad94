"""``edgecnn train``: build an architecture, fit it on a dataset, write a self-contained run folder.

Run folder: config.yaml (first), checkpoint.zip (after every epoch), tensorboard/ (scalars per epoch), then
model.keras, labels.txt, split.json, history.csv, curves.png, metrics.json. Every file is written to a temp
name and renamed (TensorBoard's event files are append-only logs whose readers skip a torn last record), so
a run killed at any moment leaves complete files only, and ``edgecnn train --resume RUN`` continues it.

Each epoch is one ``fit`` call on an input pipeline seeded from (seed, epoch); with the checkpoint's
model, optimizer and random generators, a resumed run's epochs are the uninterrupted run's epochs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.archs import create, get_arch
from edgecnn.core.config import TrainConfig, to_yaml
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import check_output_dir, ensure_dir, write_text
from edgecnn.core.graph import training_copy
from edgecnn.core.keras_env import policy, seed_everything
from edgecnn.core.keras_io import save_keras
from edgecnn.core.metadata import ModelInfo
from edgecnn.data.images import warn_skipped
from edgecnn.data.registry import default_data, load_split
from edgecnn.tasks import Task, task_of_arch
from edgecnn.trainer.checkpoint import (
    checkpoint_objects,
    epoch_seed,
    generators_enabled,
    read_state,
    remove_stale_temps,
    restore_checkpoint,
    save_checkpoint,
)
from edgecnn.trainer.distribute import Placement, make_strategy, shard_by_data
from edgecnn.trainer.fit import learning_rate, steps_per_epoch
from edgecnn.trainer.observe import Progress, Summaries, Throughput, peak_memory
from edgecnn.trainer.plots import plot_history
from edgecnn.trainer.step import Attack, TrainStep, trainer
from edgecnn.trainer.transfer import head_start, load_backbone, resolve_layer_index, set_trainable

SMALL_INPUT_MAX = 64  # at or below this many pixels a stride-32 ImageNet backbone ends at 2x2 or less


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Phase:
    """Epochs ``first``..``stop - 1`` with layers from ``trainable_from`` on trainable (None: all) at ``lr``."""

    first: int
    stop: int
    trainable_from: int | None
    lr: float


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


def small_input_default(config: TrainConfig) -> str | None:
    """Small images get the architecture's small-input stem (stride 1, so a 32 px digit is not 1x1 at the
    end) unless the recipe or ``--option small_input=...`` says otherwise. Returns the line to print."""
    if "small_input" not in get_arch(config.arch).options() or "small_input" in config.arch_options:
        return None
    if config.img > SMALL_INPUT_MAX:
        return None
    config.arch_options["small_input"] = True
    return (
        f"{config.img} px input: small_input=true (stem stride 1); --option small_input=false keeps the ImageNet stem"
    )


def resolve_attack(config: TrainConfig, task: Task) -> Attack | None:
    """The attack of ``--adversarial`` from :data:`edgecnn.insight.attacks.ATTACKS` (classifiers only)."""
    if config.adversarial is None:
        return None
    from edgecnn.insight.attacks import ATTACKS  # lazy: only adversarial training needs the attacks

    if task.name != "classify":
        raise EdgecnnError(f"--adversarial needs a classification architecture; {config.arch} is a {task.name} model")
    if config.adversarial not in ATTACKS:
        raise EdgecnnError(f"--adversarial {config.adversarial!r} is unknown; use one of: {', '.join(ATTACKS)}")
    return ATTACKS[config.adversarial]


def plan(config: TrainConfig, model: Any) -> list[Phase]:
    """The head phase (the whole model unless ``freeze_backbone``) and the optional fine-tuning phase."""
    phases = [Phase(0, config.epochs, head_start(model) if config.freeze_backbone else None, config.lr)]
    if config.fine_tune_at is not None:
        extra = config.fine_tune_epochs or config.epochs
        start = resolve_layer_index(model, config.fine_tune_at)
        phases.append(Phase(config.epochs, config.epochs + extra, start, config.lr * config.fine_tune_lr_factor))
    return phases


@dataclass
class Models:
    """The model that is saved (float32 policy), the one trained (the same or a mixed-precision copy) and
    the :class:`~edgecnn.trainer.step.TrainStep` over the trained one's layers that ``fit`` runs."""

    saved: Any
    trained: Any
    step: TrainStep
    info: ModelInfo
    phases: list[Phase]


@dataclass
class RunState:
    """Where the epochs stand: completed epochs, their history, optimizer updates and training seconds."""

    epoch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    updates: int = 0
    seconds: float = 0.0

    def state(self, phase: int, seed: int) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "phase": phase,
            "history": self.history,
            "optimizer_steps": self.updates,
            "train_seconds": self.seconds,
            "seed": seed,
        }


def train(config: TrainConfig, verbose: int | None = None, resume: bool = False) -> TrainResult:
    """Train ``config.arch`` on ``config.data`` for the architecture's task; write the run folder.

    ``verbose``: 0 silent, 1 a progress bar and a line per epoch, 2 a line per epoch (default: 1 on a
    terminal, 2 otherwise). ``resume``: continue the run in ``config.out`` from its checkpoint."""
    config.validate()
    placement = make_strategy(config.devices)  # before TensorFlow's first op (multi-worker collectives)
    task = task_of_arch(config.arch)
    if config.data is None:
        config.data = default_data(task.name)
    check_output_dir(config.out, "run")  # created only when there is a model to write into it
    state = read_state(config.out) if resume else None
    attack = resolve_attack(config, task)
    note = small_input_default(config)
    split = load_split(
        config.data, task.name, config.img, config.channels, config.seed, config.val_fraction, config.cache
    )
    problem = split.train.training_problem()
    skipped = split.train.skipped
    if problem:
        first = f" ({len(skipped)} problems in the data, the first: {skipped[0]})" if skipped else ""
        raise EdgecnnError(f"cannot train on {config.data}: {problem}{first}")
    warn_skipped(skipped)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2  # a progress bar on a terminal, a line per epoch in logs
    seed_everything(config.seed)
    models = build_models(config, task, split, placement, attack, load_weights=state is None)

    run_dir, scratch = _run_folder(config, placement)
    if verbose:
        lines = [note, placement.describe(config.batch, config.accumulate, config.lr, config.lr_scaling)]
        extras = _extras(config)
        lines.append("training with " + ", ".join(extras) if extras else None)
        print("\n".join(line for line in lines if line), flush=True)
    if state is None:
        write_text(run_dir / "config.yaml", to_yaml(config))
    else:
        remove_stale_temps(run_dir)
    progress = (
        RunState(
            int(state["epoch"]), dict(state["history"]), int(state["optimizer_steps"]), float(state["train_seconds"])
        )
        if state
        else RunState()
    )
    throughput = fit_phases(
        config, task, split, placement, models, progress, run_dir, Path(config.out) if state else None, verbose
    )
    return finish(config, task, split, placement, models, progress, throughput, run_dir, scratch)


def finish(
    config: TrainConfig,
    task: Task,
    split: Any,
    placement: Placement,
    models: Models,
    progress: RunState,
    throughput: Throughput,
    run_dir: Path,
    scratch: bool,
) -> TrainResult:
    """The trained weights into the float32 model; model.keras and the run folder's other files; metrics."""
    model = models.saved
    if models.trained is not model:  # the float32-policy model gets the trained weights (no float16 anywhere)
        model.set_weights(models.trained.get_weights())
    for layer in [*model.layers, *models.trained.layers]:  # freezing was for this run; saved models train all
        layer.trainable = True

    info = models.info
    model_path = save_keras(model, run_dir / "model.keras", info)
    write_text(run_dir / "labels.txt", "\n".join(info.labels) + "\n")
    write_text(run_dir / "config.yaml", to_yaml(config))
    write_text(run_dir / "split.json", split.to_json())  # the files of each half: eval/convert/optimize reuse them
    write_text(run_dir / "history.csv", history_csv(progress.history))
    plot_history(progress.history, run_dir / "curves.png")
    result = task.evaluate_keras(model, info, split.val)
    result.pop("predictions", None)
    summary = {
        "arch": config.arch,
        "task": task.name,
        "params": int(model.count_params()),
        "epochs": len(progress.history["loss"]),
        "train_seconds": round(progress.seconds, 1),
        "train_images": len(split.train),
        "val_images": len(split.val),
        "images_per_sec": round(throughput.images_per_sec(), 1),
        **peak_memory(),
        "global_batch": placement.global_batch(config.batch, config.accumulate),
        "batching": placement.describe(config.batch, config.accumulate, config.lr, config.lr_scaling),
        "replicas": placement.replicas,
        "optimizer_steps": progress.updates,
        "precision": config.precision,
        "metric": task.metric,
        "val_metric": result[task.metric],
        **{f"val_{k}": v for k, v in result.items() if k not in ("confusion", "images")},
    }
    write_text(run_dir / "metrics.json", json.dumps(summary, indent=1))
    if scratch:  # a multi-worker run's other workers wrote their copy to a temp folder
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir = Path(config.out)
    return TrainResult(run_dir, run_dir / model_path.name, summary)


def build_models(
    config: TrainConfig, task: Task, split: Any, placement: Placement, attack: Attack | None, load_weights: bool
) -> Models:
    """The architecture (with ``--weights`` when ``load_weights``), its training copy and train step, all
    under the run's strategy, with random layers drawing from checkpointable generators."""
    channels = int(split.train.x.shape[-1])
    with placement.strategy.scope(), generators_enabled():
        model = create(config.arch, task.num_outputs(split.train), config.img, channels, **config.arch_options)
        info = model_info(config, split, task.name, model.edgecnn_extra)
        if config.weights and load_weights:
            print(load_backbone(model, config.arch, config.weights).summary())
        phases = plan(config, model)
        trained = training_copy(model, config.precision)
        with policy(config.precision):  # compile wraps the optimizer for loss scaling under mixed_float16
            step = trainer(
                trained,
                micro_batch=config.batch if config.accumulate > 1 else 0,
                attack=attack,
                eps=config.adversarial_eps,
                attack_steps=config.adversarial_steps,
            )
    return Models(model, trained, step, info, phases)


def fit_phases(
    config: TrainConfig,
    task: Task,
    split: Any,
    placement: Placement,
    models: Models,
    progress: RunState,
    run_dir: Path,
    resume_from: Path | None,
    verbose: int,
) -> Throughput:
    """Every epoch not yet in ``progress``: one ``fit`` call each on the epoch's seeded input pipeline, then a
    checkpoint into ``run_dir``. A resumed run first restores the checkpoint in ``resume_from`` (the run folder:
    in a multi-worker run every worker reads the chief's, so it must be on storage they share), the
    optimizer too when the run stopped inside a phase."""
    global_batch = placement.global_batch(config.batch, config.accumulate)
    steps = steps_per_epoch(len(split.train), global_batch)
    lr_factor = placement.lr_factor(config.lr_scaling, config.accumulate)
    throughput = Throughput(len(split.train))
    summaries = Summaries(run_dir / "tensorboard")
    callbacks: list[Any] = [throughput]
    if verbose:
        callbacks.append(Progress(models.phases[-1].stop, steps, global_batch, bar=verbose == 1))
    callbacks.append(summaries)
    val_ds = task.dataset(models.info, split.val, config.batch * placement.replicas, config.seed, False, False)
    if placement.workers > 1:
        val_ds = shard_by_data(val_ds)
    step, seconds_before = models.step, progress.seconds
    try:
        for index, phase in enumerate(models.phases):
            if progress.epoch >= phase.stop and phase is not models.phases[-1]:
                continue
            with placement.strategy.scope():
                if phase.trainable_from is not None:
                    set_trainable(models.trained, phase.trainable_from)
                total = (phase.stop - phase.first) * steps
                schedule = learning_rate(phase.lr * lr_factor, total, int(config.warmup_epochs * steps))
                task.compile(step, models.info, schedule, total)
                if config.clip_norm is not None:
                    step.optimizer.global_clipnorm = config.clip_norm
                _build_optimizer(step)
            objects = checkpoint_objects(models.trained, step.optimizer)
            if resume_from and progress.epoch > phase.first:  # stopped inside this phase: its optimizer too
                restore_checkpoint(resume_from, objects)
            elif resume_from:  # stopped at the phase's start: the weights; the optimizer starts anew
                restore_checkpoint(resume_from, {k: v for k, v in objects.items() if k != "optimizer"})
            resume_from = None
            phase_start = progress.updates - int(step.optimizer.iterations.numpy())
            for epoch in range(max(progress.epoch, phase.first), phase.stop):
                seed = epoch_seed(config.seed, epoch)
                train_ds = task.dataset(models.info, split.train, global_batch, seed, config.augment, True)
                if placement.workers > 1:
                    train_ds = shard_by_data(train_ds)
                more = step.fit(
                    train_ds,
                    validation_data=val_ds,
                    initial_epoch=epoch,
                    epochs=epoch + 1,
                    verbose=0,
                    callbacks=callbacks,
                ).history
                for key, values in more.items():
                    progress.history.setdefault(key, []).extend(float(v) for v in values)
                check_finite(progress.history, config.lr)
                progress.epoch = epoch + 1
                progress.updates = phase_start + int(step.optimizer.iterations.numpy())
                progress.seconds = seconds_before + throughput.seconds
                save_checkpoint(run_dir, objects, progress.state(index, config.seed))
    finally:
        summaries.close()
    return throughput


def _run_folder(config: TrainConfig, placement: Placement) -> tuple[Path, bool]:
    """The run folder, created now that there is a model to train; a non-chief worker of a multi-worker run
    writes (it must take part in every collective save) to a temp folder instead."""
    if placement.chief:
        return ensure_dir(config.out, "run"), False
    return Path(tempfile.mkdtemp(prefix="edgecnn-worker-")), True


def _build_optimizer(step: TrainStep) -> None:
    """Create the optimizer's slots now, so a checkpoint restores into them (a LossScaleOptimizer's inner)."""
    optimizer = getattr(step.optimizer, "inner_optimizer", step.optimizer)
    optimizer.build(step.trainable_variables)


def _extras(config: TrainConfig) -> list[str]:
    """The non-default training techniques of this run, in words."""
    words = []
    if config.precision != "float32":
        words.append(f"{config.precision} precision")
    if config.clip_norm is not None:
        words.append(f"gradients clipped to global norm {config.clip_norm:g}")
    if config.accumulate > 1:
        words.append(f"{config.accumulate} accumulated micro-batches per update")
    if config.adversarial:
        steps = f", {config.adversarial_steps} steps" if config.adversarial == "pgd" else ""
        words.append(
            f"{config.adversarial} adversarial examples (eps {config.adversarial_eps:g}{steps}) for half of each batch"
        )
    if config.warmup_epochs:
        words.append(f"{config.warmup_epochs:g} warmup epochs")
    return words


def history_csv(history: dict[str, list[float]]) -> str:
    buf = io.StringIO()
    keys = list(history)
    writer = csv.writer(buf)
    writer.writerow(["epoch", *keys])
    for epoch in range(len(history[keys[0]]) if keys else 0):
        writer.writerow([epoch + 1, *(f"{history[k][epoch]:.6g}" for k in keys)])
    return buf.getvalue()
