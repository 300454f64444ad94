"""Per-epoch checkpoints that a killed run resumes from (``edgecnn train --resume RUN``).

One file, ``checkpoint.zip`` in the run folder, replaced after every epoch by temp file + rename, so a
kill at any moment leaves either the previous complete checkpoint or the new one. Inside: a
``tf.train.Checkpoint`` of the trained model's variables (BatchNorm statistics included), the optimizer
(step count, so the learning-rate schedule, moments, loss scale) and the random generators of layers that
draw random numbers during training (dropout), plus ``state.json``: the epochs done, the training phase,
the history so far and the data seed. The input pipeline of each epoch is seeded from (seed, epoch), so
with the generators restored the resumed epochs see the same data, augmentation and dropout as an
uninterrupted run would.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.fileio import atomic_path
from edgecnn.core.keras_env import keras, tf

CHECKPOINT = "checkpoint.zip"
_PREFIX = "state"  # tf.train.Checkpoint file prefix inside the archive


def epoch_seed(seed: int, epoch: int) -> int:
    """The input pipeline's seed for ``epoch`` (shuffle order, augmentation): a function of both only."""
    return seed * 1_000_003 + epoch


def random_generators(model: Any) -> dict[str, Any]:
    """The tf.random.Generator of every layer that draws random numbers in training (dropout, built with the
    TF generator enabled: :func:`edgecnn.trainer.checkpoint.generators_enabled`), by position and name.
    Keras keeps these out of ``model.weights`` and checkpoints, so they are checkpointed here."""
    found = {}
    for i, layer in enumerate(model.submodules):
        holder = getattr(layer, "_random_generator", None)  # keras' RandomGenerator of a BaseRandomLayer
        if holder is None:
            continue
        holder._maybe_init()
        if getattr(holder, "_generator", None) is not None:
            found[f"{i}_{layer.name}"] = holder._generator
    return found


class generators_enabled:  # noqa: N801 (a context manager used like a function)
    """Layers created inside draw from tf.random.Generator (a checkpointable state) rather than stateful ops."""

    def __enter__(self) -> None:
        self.before = keras.backend.experimental.is_tf_random_generator_enabled()
        keras.backend.experimental.enable_tf_random_generator()

    def __exit__(self, *exc: Any) -> None:
        if not self.before:
            keras.backend.experimental.disable_tf_random_generator()


def checkpoint_objects(model: Any, optimizer: Any) -> dict[str, Any]:
    return {"model": model, "optimizer": optimizer, **{f"rng_{k}": g for k, g in random_generators(model).items()}}


def save_checkpoint(run_dir: str | Path, objects: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write ``objects`` (trackables) and ``state`` (JSON) to ``run_dir/checkpoint.zip`` atomically."""
    path = Path(run_dir) / CHECKPOINT
    with tempfile.TemporaryDirectory(prefix="edgecnn-checkpoint-") as tmp:
        tf.train.Checkpoint(**objects).write(str(Path(tmp) / _PREFIX))
        (Path(tmp) / "state.json").write_text(json.dumps(state))
        with atomic_path(path) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            for file in sorted(Path(tmp).iterdir()):
                archive.write(file, file.name)
    return path


def read_state(run_dir: str | Path) -> dict[str, Any]:
    """The ``state.json`` of a run's checkpoint; a one-line error when there is none or it is damaged."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise EdgecnnError(f"no checkpoint to resume in {run_dir} ({CHECKPOINT} is written after each epoch)")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("state.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise EdgecnnError(f"damaged checkpoint {path} ({exc}); start the run again without --resume") from exc


def restore_checkpoint(run_dir: str | Path, objects: dict[str, Any]) -> None:
    """Load the checkpoint into ``objects`` (built as at saving: same model, compiled optimizer built)."""
    path = Path(run_dir) / CHECKPOINT
    with tempfile.TemporaryDirectory(prefix="edgecnn-checkpoint-") as tmp:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(tmp)
        status = tf.train.Checkpoint(**objects).read(str(Path(tmp) / _PREFIX))
        try:
            status.assert_existing_objects_matched()
        except AssertionError as exc:
            first = str(exc).splitlines()[0][:200]
            raise EdgecnnError(f"checkpoint {path} does not fit this run's model ({first})") from exc


def remove_stale_temps(run_dir: str | Path) -> None:
    """Temp files a kill left behind in the run folder (never a finished file: those are renamed)."""
    for tmp in Path(run_dir).glob(f".{CHECKPOINT}.*.tmp*"):
        tmp.unlink(missing_ok=True)
