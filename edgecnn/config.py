"""Run configuration: dataclasses that the CLI fills and that a run folder records as YAML."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edgecnn.errors import EdgecnnError

SPLITS = ("val", "train", "all")  # the parts of a dataset a model is measured on (edgecnn.data.registry)
SPLIT_WORDS = {"val": "validation images", "train": "training images", "all": "images (the whole set)"}
MIN_IMG, MAX_IMG = 16, 2048  # input sizes edgecnn trains and profiles (an architecture may need more)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies a run trains under
LR_SCALING_RULES = ("none", "linear", "sqrt")  # edgecnn.training.distribute.LR_SCALING


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
    cache: str | None = None  # streamed datasets: None, 'memory' or a file prefix for the decoded images
    arch_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # 'imagenet' or a .keras/.h5 path: initial backbone weights
    freeze_backbone: bool = False  # train only the head in the first phase
    fine_tune_at: int | str | None = None  # then unfreeze from this layer (index or name) ...
    fine_tune_epochs: int | None = None  # ... for this many epochs (default: epochs) ...
    fine_tune_lr_factor: float = 0.1  # ... at this fraction of the learning rate
    precision: str = "float32"  # or mixed_float16 / mixed_bfloat16; the saved model is float32 either way
    clip_norm: float | None = None  # clip the gradient to this global norm
    accumulate: int = 1  # micro-batches of `batch` whose gradients are summed into one update
    devices: int | str | None = None  # None or 'all': every visible GPU; N: the first N (TF_CONFIG: multi-worker)
    lr_scaling: str = "none"  # lr x f(replicas x accumulate): none, linear or sqrt
    warmup_epochs: float = 0.0  # linear learning-rate warmup before the cosine decay
    adversarial: str | None = None  # fgsm or pgd: half of every batch adversarial (edgecnn.insight.attacks)
    adversarial_eps: float = 0.1  # the attack's budget, a fraction of the 0..1 pixel range
    adversarial_steps: int = 7  # PGD iterations
    out: str = "runs/train"

    def validate(self) -> None:
        for name in ("epochs", "batch"):
            if getattr(self, name) < 1:
                raise EdgecnnError(f"--{name} must be 1 or more, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise EdgecnnError(f"--lr must be a finite positive number, got {self.lr}")
        if not MIN_IMG <= self.img <= MAX_IMG:
            raise EdgecnnError(f"--img must be {MIN_IMG}..{MAX_IMG} pixels, got {self.img}")
        if not 0 < self.val_fraction < 1:
            raise EdgecnnError(f"--val-fraction must be between 0 and 1 (exclusive), got {self.val_fraction}")
        if not (math.isfinite(self.fine_tune_lr_factor) and self.fine_tune_lr_factor > 0):
            raise EdgecnnError(f"fine_tune_lr_factor must be a finite positive number, got {self.fine_tune_lr_factor}")
        if self.fine_tune_epochs is not None and self.fine_tune_epochs < 1:
            raise EdgecnnError(f"--fine-tune-epochs must be 1 or more, got {self.fine_tune_epochs}")
        if self.channels not in (None, 1, 3):
            raise EdgecnnError(f"--channels must be 1 or 3, got {self.channels}")
        self._validate_scale()
        check_cache(self.cache)

    def _validate_scale(self) -> None:
        """The training-at-scale fields (issue #12): precision, clipping, accumulation, devices, warmup."""
        if self.precision not in PRECISIONS:
            raise EdgecnnError(f"--precision {self.precision!r} is unknown; use one of: {', '.join(PRECISIONS)}")
        if self.lr_scaling not in LR_SCALING_RULES:
            raise EdgecnnError(
                f"--lr-scaling {self.lr_scaling!r} is unknown; use one of: {', '.join(LR_SCALING_RULES)}"
            )
        if self.clip_norm is not None and not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise EdgecnnError(f"--clip-norm must be a finite positive number, got {self.clip_norm}")
        for name in ("accumulate", "adversarial_steps"):
            if getattr(self, name) < 1:
                raise EdgecnnError(f"{name} must be 1 or more, got {getattr(self, name)}")
        if not (math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0):
            raise EdgecnnError(f"warmup_epochs must be 0 or more, got {self.warmup_epochs}")
        if not 0 < self.adversarial_eps <= 1:
            raise EdgecnnError(
                f"--eps must be in (0, 1] (a fraction of the 0..1 pixel range), got {self.adversarial_eps}"
            )


def check_cache(cache: str | None) -> None:
    """``--cache``: 'memory', or a file prefix in an existing folder (tf.data writes PREFIX-*.index/.data-*)."""
    if cache is None or cache == "memory":
        return
    path = Path(cache)
    if not cache.strip() or path.is_dir():
        raise EdgecnnError(f"--cache {cache!r} is not a file prefix; use --cache memory or --cache DIR/NAME")
    if not path.parent.is_dir():
        raise EdgecnnError(f"--cache {cache}: folder {path.parent} does not exist; create it or use --cache memory")


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


T = TypeVar("T")


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a YAML recipe into the options dataclass ``cls``: safe_load, every key known, every value of its
    field's type; a problem is one line naming the file, the line and the fix."""
    path = Path(path)
    if not path.is_file():
        raise EdgecnnError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
        node = yaml.compose(text)
    except UnicodeDecodeError as exc:
        raise EdgecnnError(f"{path} is not a UTF-8 text file ({exc.reason}); give a YAML recipe") from exc
    except yaml.YAMLError as exc:  # syntax errors, and tags safe_load refuses (!!python/object ...)
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EdgecnnError(f"{where}: not valid YAML ({problem}); fix the file (plain keys and values only)") from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise EdgecnnError(f"{path}: a recipe is a mapping of keys to values, got a {type(raw).__name__}")
    lines = _key_lines(node)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in set(raw) - known)
    if unknown:
        raise EdgecnnError(f"unknown keys in {path}: {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        expected = _type_name(hints[key], value)
        if expected:
            raise EdgecnnError(f"{path}:{lines.get(key, 1)}: {key}: expected {expected}, got {value!r}; fix the value")
    return cls(**raw)


def _key_lines(node: Any) -> dict[str, int]:
    """The line (1-based) of each top-level key of a composed YAML mapping."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "text", dict: "a mapping"}


def _type_name(hint: Any, value: Any) -> str:
    """'' when ``value`` fits the field type ``hint``; else what the field expects, in words."""
    options = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    for option in options:
        base = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return ""
        if base is Any:
            return ""
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return "" if math.isfinite(value) else "a finite number"
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return ""
        if base in (bool, str, dict, list) and isinstance(value, base):
            return ""
    words = [_NAMES.get(typing.get_origin(o) or o, "nothing (null)" if o is type(None) else str(o)) for o in options]
    return " or ".join(words)


def load_train_config(path: str | Path) -> TrainConfig:
    """A training recipe (training/*.yaml) or a run's config.yaml."""
    return load_config(path, TrainConfig)
