"""Run configuration: dataclasses that the CLI fills and that a run folder records as YAML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edgecnn.errors import EdgecnnError


@dataclass
class TrainConfig:
    arch: str = "lenet5"
    data: str | None = None  # None: the task's built-in default (digits, shapes, shapes-seg)
    img: int = 32
    channels: int | None = None  # None: the dataset's own (1 for digits, 3 for image folders)
    epochs: int = 10
    batch: int = 32
    lr: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.2
    augment: bool = True
    arch_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # 'imagenet' or a .keras/.h5 path: initial backbone weights
    freeze_backbone: bool = False  # train only the head in the first phase
    fine_tune_at: int | str | None = None  # then unfreeze from this layer (index or name) ...
    fine_tune_epochs: int | None = None  # ... for this many epochs (default: epochs) ...
    fine_tune_lr_factor: float = 0.1  # ... at this fraction of the learning rate
    out: str = "runs/train"

    def validate(self) -> None:
        for name in ("epochs", "batch"):
            if getattr(self, name) < 1:
                raise EdgecnnError(f"--{name} must be 1 or more, got {getattr(self, name)}")
        if self.lr <= 0:
            raise EdgecnnError(f"--lr must be positive, got {self.lr}")
        if self.fine_tune_epochs is not None and self.fine_tune_epochs < 1:
            raise EdgecnnError(f"--fine-tune-epochs must be 1 or more, got {self.fine_tune_epochs}")
        if self.channels not in (None, 1, 3):
            raise EdgecnnError(f"--channels must be 1 or 3, got {self.channels}")


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


T = TypeVar("T")


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a YAML recipe into the options dataclass ``cls`` (safe_load; unknown keys are an error, not ignored)."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise EdgecnnError(f"unknown keys in {path}: {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
    return cls(**raw)


def load_train_config(path: str | Path) -> TrainConfig:
    """A training recipe (training/*.yaml) or a run's config.yaml."""
    return load_config(path, TrainConfig)
