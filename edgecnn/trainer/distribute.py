"""Where a run trains: one device, MirroredStrategy over local devices (``--devices``) or
MultiWorkerMirroredStrategy across machines (``TF_CONFIG``), and how the batch and learning rate scale with them.

Batch semantics: ``--batch`` is what one replica computes at once (what fits in one device's memory);
the global batch of one optimizer update is ``batch x replicas x accumulate``. The learning rate is used
as given unless ``--lr-scaling`` names a rule (:data:`LR_SCALING`); the rule and the global batch are
printed at the start of every run.

MultiWorkerMirroredStrategy configures TensorFlow's collective ops, which is only possible before the
runtime starts: :func:`make_strategy` must run before the first TensorFlow op of the process.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.keras_env import tf

# The factor the learning rate is multiplied by, from k = global batch / --batch (replicas x accumulate).
LR_SCALING: dict[str, Callable[[int], float]] = {
    "none": lambda k: 1.0,
    "linear": lambda k: float(k),  # Goyal et al. 2017, "Accurate, large minibatch SGD"
    "sqrt": lambda k: math.sqrt(k),  # Malladi et al. 2022: the rule for Adam-type optimizers
}


@dataclass(frozen=True)
class Placement:
    """The strategy a run uses and what it means for the batch and the learning rate."""

    strategy: Any
    kind: str  # "one device", "mirrored", "multi-worker"
    replicas: int
    workers: int
    chief: bool  # the worker that writes the run folder (the only one outside multi-worker runs)

    def global_batch(self, batch: int, accumulate: int) -> int:
        return batch * self.replicas * accumulate

    def lr_factor(self, rule: str, accumulate: int) -> float:
        return LR_SCALING[rule](self.replicas * accumulate)

    def describe(self, batch: int, accumulate: int, lr: float, rule: str) -> str:
        """The line every run prints: global batch, how it is made, and the learning rate rule applied."""
        k = self.replicas * accumulate
        parts = [f"{batch} per replica", f"{self.replicas} replica{'s' * (self.replicas != 1)}"]
        if self.workers > 1:
            parts[-1] += f" on {self.workers} workers"
        if accumulate > 1:
            parts.append(f"{accumulate} accumulated micro-batches")
        scaled = lr * self.lr_factor(rule, accumulate)
        if rule == "none":
            how = f"lr {lr:g} (not scaled; --lr-scaling linear would give {lr * k:g})" if k > 1 else f"lr {lr:g}"
        else:
            how = f"lr {scaled:g} = {lr:g} x {self.lr_factor(rule, accumulate):g} ({rule} scaling rule, k = {k})"
        return f"{self.kind}: global batch {self.global_batch(batch, accumulate)} = {' x '.join(parts)}; {how}"


def tf_config() -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG`` of a multi-worker run, or None when it is unset or empty."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EdgecnnError(f"TF_CONFIG is not valid JSON ({exc.msg}); see training/README.md for an example") from exc
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or "task" not in config:
        raise EdgecnnError("TF_CONFIG needs 'cluster' and 'task' entries; see training/README.md for an example")
    return config


def parse_devices(devices: str | int | None) -> int | None:
    """``--devices`` as a count, or None for all visible devices."""
    if devices is None or str(devices).strip().lower() == "all":
        return None
    try:
        count = int(str(devices))
    except ValueError:
        raise EdgecnnError(f"--devices must be a whole number or 'all', got {devices!r}") from None
    if count < 1:
        raise EdgecnnError(f"--devices must be 1 or more (or 'all'), got {count}")
    return count


def make_strategy(devices: str | int | None) -> Placement:
    """MultiWorkerMirroredStrategy when ``TF_CONFIG`` is set; else MirroredStrategy over the first N visible
    GPUs (or logical CPU devices on a machine without GPUs) when N > 1; else the default strategy."""
    count = parse_devices(devices)
    cluster = tf_config()
    if cluster is not None:
        if count is not None:
            raise EdgecnnError(
                f"--devices {count} with TF_CONFIG: each worker uses all of its visible GPUs; "
                "choose them with CUDA_VISIBLE_DEVICES and drop --devices"
            )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        task = cluster["task"]
        workers = sum(len(v) for k, v in cluster["cluster"].items() if k in ("chief", "worker"))
        has_chief = "chief" in cluster["cluster"]
        chief = task.get("type") == "chief" or (
            not has_chief and task.get("type") == "worker" and task.get("index") == 0
        )
        return Placement(strategy, "multi-worker", strategy.num_replicas_in_sync, workers, chief)
    pool = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    wanted = len(pool) if count is None else count
    if wanted > len(pool):
        names = ", ".join(d.name.split("device:")[-1] for d in pool)
        raise EdgecnnError(f"--devices {wanted}: only {len(pool)} visible ({names}); use --devices {len(pool)} or all")
    if wanted == 1:
        return Placement(tf.distribute.get_strategy(), "one device", 1, 1, True)
    strategy = tf.distribute.MirroredStrategy([d.name for d in pool[:wanted]])
    return Placement(strategy, "mirrored", strategy.num_replicas_in_sync, 1, True)


def shard_by_data(dataset: Any) -> Any:
    """Multi-worker runs split each global batch between the workers (every worker reads the same seeded
    pipeline and keeps its part): in-memory and streamed data alike, without the FILE-sharding warning."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
