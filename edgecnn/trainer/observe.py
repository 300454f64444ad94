"""What a run shows while it trains: images/s and the learning rate per epoch (in the logs, so in
history.csv too), a progress bar and one line per epoch, TensorBoard scalars in the run folder, and the
process's peak memory (RSS, and GPU memory where there are GPUs) for metrics.json.
"""

from __future__ import annotations

import importlib.util
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from edgecnn.core.keras_env import keras, tf


def current_lr(optimizer: Any) -> float:
    """The learning rate of the optimizer's last update (schedules included; a LossScaleOptimizer's inner one)."""
    lr = optimizer.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


class Throughput(keras.callbacks.Callback):
    """Adds ``images_per_sec`` (training images over the epoch's training time, validation excluded) and
    ``lr`` to each epoch's logs; callbacks after it (progress, summaries, History) see both."""

    def __init__(self, images_per_epoch: int) -> None:
        super().__init__()
        self.images = images_per_epoch
        self.seconds = 0.0  # training time of the epochs run so far (this process)
        self.epochs = 0
        self._start = self._last = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        elapsed = max(self._last - self._start, 1e-9)
        self.seconds += elapsed
        self.epochs += 1
        if logs is not None:
            logs["images_per_sec"] = self.images / elapsed
            logs["lr"] = current_lr(self.model.optimizer)

    def images_per_sec(self) -> float:
        return self.images * self.epochs / self.seconds if self.seconds else 0.0


class Progress(keras.callbacks.Callback):
    """A tqdm bar over each epoch's steps with the running loss and images/s (``bar``), then one line per
    epoch: metrics, learning rate, images/s and seconds (what a log file keeps)."""

    def __init__(self, total_epochs: int, steps: int, global_batch: int, bar: bool) -> None:
        super().__init__()
        self.total, self.steps, self.global_batch, self.bar = total_epochs, steps, global_batch, bar
        self._tqdm: Any = None
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        if self.bar:
            self._tqdm = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.total}", unit="step", leave=False)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._tqdm is not None:
            self._tqdm.update(1)
            rate = (batch + 1) * self.global_batch / max(time.perf_counter() - self._start, 1e-9)
            self._tqdm.set_postfix(loss=f"{(logs or {}).get('loss', math.nan):.4f}", img_s=f"{rate:.0f}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        logs = logs or {}
        shown = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k not in ("images_per_sec", "lr"))
        print(
            f"epoch {epoch + 1}/{self.total}  {shown}  lr {logs.get('lr', math.nan):.3g}  "
            f"{logs.get('images_per_sec', math.nan):.0f} images/s  {time.perf_counter() - self._start:.1f} s",
            flush=True,
        )


class Summaries(keras.callbacks.Callback):
    """TensorBoard scalars per epoch in ``log_dir``: ``train/`` gets the training metrics, the learning rate
    and images/s; ``validation/`` the ``val_`` metrics under the same names, so TensorBoard overlays them.
    The writers stay open across the per-epoch ``fit`` calls; :meth:`close` ends them."""

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__()
        self.writers: dict[str, Any] = {}
        if importlib.util.find_spec("tensorboard") is None:  # tf.summary's scalar lives in that package
            print("no TensorBoard logs: install the tensorboard package (pip install 'edgecnn[train]')", flush=True)
            return
        self.writers = {
            part: tf.summary.create_file_writer(str(Path(log_dir) / part)) for part in ("train", "validation")
        }

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items() if self.writers else ():
            part, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self.writers[part].as_default():
                tf.summary.scalar(f"epoch_{name}", float(value), step=epoch + 1)
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process in MiB and, where there are GPUs, the sum of their peak
    allocations by TensorFlow."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak = {"peak_rss_mib": round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)}
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        total = sum(tf.config.experimental.get_memory_info(d.name)["peak"] for d in gpus)
        peak["peak_gpu_mib"] = round(total / 2**20, 1)
    return peak
