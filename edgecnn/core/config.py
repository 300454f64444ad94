"""Run configuration: dataclasses that the CLI fills and that a run folder records as YAML, and the option
table they are declared in: each field's ``opt(...)`` metadata gives its flag, help, choices and range, so
the argparse flags (edgecnn.cli), the checks (:func:`check_options`), the ``--config`` YAML keys
(:func:`load_config`) and the typed object all come from one declaration."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edgecnn.core.errors import EdgecnnError

SPLITS = ("val", "train", "all")  # the parts of a dataset a model is measured on (edgecnn.data.registry)
SPLIT_WORDS = {"val": "validation images", "train": "training images", "all": "images (the whole set)"}
MIN_IMG, MAX_IMG = 16, 2048  # input sizes edgecnn trains and profiles (an architecture may need more)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies a run trains under
LR_SCALING_RULES = ("none", "linear", "sqrt")  # edgecnn.trainer.distribute.LR_SCALING


T = TypeVar("T")


def parse_option(text: str) -> tuple[str, Any]:
    """KEY=VALUE with the value read as YAML (numbers, booleans, strings): never eval."""
    if "=" not in text:
        raise ValueError(f"{text!r} is not KEY=VALUE (e.g. alpha=0.5)")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


# ------------------------------------------------------------------------------------ option table
# Each option is declared once, as a dataclass field whose metadata is ``opt(...)``: its help, its
# flag spelling, its choices or range. The CLI's flags (edgecnn.cli.add_options), the checks
# (check_options), the --config YAML keys (load_config) and the typed object all come from that field.
@dataclass(frozen=True)
class Range:
    """The numbers an option allows: ``low``..``high``, either end open or absent; always finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    unit: str = ""  # appended to the words of a check, e.g. "pixels"

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        return not (below or above)

    def allowed(self, whole: bool) -> str:
        """What to use, after 'use ' in a flag's error: '1 or more', '16..2048', 'a number in (0, 1]'."""
        interval = self._interval()
        return f"a number in {interval}" if interval and not whole else self._words()

    def must(self, whole: bool) -> str:
        """What a value must be, after 'must be ' in a check's error: '1 or more', 'in (0, 1]',
        'between 0 and 1 (exclusive)', '16..2048 pixels'."""
        interval = self._interval()
        if not interval or whole:
            return self._words() + (f" {self.unit}" if self.unit else "")
        if self.low_open != self.high_open:
            return f"in {interval}"
        return f"between {self.low:g} and {self.high:g}" + (" (exclusive)" if self.low_open else "")

    def _words(self) -> str:
        if self.low == 0 and self.low_open and self.high is None:
            return "a finite positive number"
        if self.high is None:
            return f"{self.low:g} or more"
        return f"{self.low:g}..{self.high:g}"

    def _interval(self) -> str:
        """'(0, 1]' for a range bounded at both ends; '' otherwise."""
        if self.low is None or self.high is None:
            return ""
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Range(0, low_open=True)  # learning rates, temperatures, durations: nan and inf refused
FRACTION = Range(0.0, 1.0)  # score thresholds, loss weights
OPEN_FRACTION = Range(0.0, 1.0, low_open=True, high_open=True)  # sparsity, validation share
IMAGE_SIZE = Range(MIN_IMG, MAX_IMG, unit="pixels")


@dataclass(frozen=True)
class Opt:
    """One option's declaration, kept in its dataclass field's metadata (see :func:`opt`)."""

    help: str
    flag: str | None = None  # the flag's spelling; default --field-name (bool True by default: --no-field-name)
    aliases: tuple[str, ...] = ()  # more spellings, e.g. ("-o",)
    choices: tuple[Any, ...] | None = None
    range: Range | None = None
    positional: bool = False  # MODEL paths and the like; nargs "+" for a list of them
    nargs: str | None = None  # "+": a list (tuple fields), "*", "?"
    metavar: str | None = None
    required: bool = False
    parse: Callable[[str], Any] | None = None  # a flag value's parser when the field type is not enough
    repeat: bool = False  # the flag may be given many times (action append), e.g. --option KEY=VALUE
    choice_flags: Callable[[], dict[str, str]] | None = None  # one flag per choice: {name: help} (convert's --int8)
    version: bool = False  # the field's default is the program's version: the flag prints it and exits
    cli: bool = True  # False: a YAML key and a field only, no flag


def opt(help: str, **declaration: Any) -> dict[str, Opt]:
    """The metadata of a dataclass field that is an option: ``field(default=..., metadata=opt("help", ...))``."""
    return {"option": Opt(help, **declaration)}


def option_of(f: dataclasses.Field) -> Opt | None:  # type: ignore[type-arg]
    """The field's :class:`Opt`, or None for a field that is not an option."""
    return f.metadata.get("option")


def flag_of(f: dataclasses.Field) -> str:  # type: ignore[type-arg]
    """The flag that sets field ``f``: its declared spelling, else --name (--no-name for a bool that is True)."""
    declared = option_of(f)
    if declared is not None and declared.flag:
        return declared.flag
    negated = f.default is True
    return "--" + ("no-" if negated else "") + f.name.replace("_", "-")


def label_of(f: dataclasses.Field) -> str:  # type: ignore[type-arg]
    """How errors name a field: by its flag when it has one, else by its YAML key."""
    declared = option_of(f)
    return flag_of(f) if declared is None or declared.cli else f.name


def value_types(cls: type) -> dict[str, type]:
    """Each field's type without None: ``int | None`` -> int; a union of several (``int | str``) -> str,
    as a flag's text is kept; ``tuple[str, ...]`` -> tuple."""
    kinds = {}
    for name, hint in typing.get_type_hints(cls).items():
        union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        options = [typing.get_origin(o) or o for o in (typing.get_args(hint) if union else (hint,))]
        options = [o for o in options if o is not type(None)]
        kinds[name] = options[0] if len(options) == 1 else str
    return kinds


def check_options(obj: Any) -> None:
    """Every option of the dataclass ``obj`` within its choices and range: else a one-line EdgecnnError
    naming the flag (or key), the bad value and what to use."""
    kinds = value_types(type(obj))
    for f in dataclasses.fields(obj):
        declared = option_of(f)
        value = getattr(obj, f.name)
        if declared is None or value is None:
            continue
        if declared.choices is not None and value not in declared.choices:
            choices = ", ".join(map(str, declared.choices))
            raise EdgecnnError(f"{label_of(f)} {value!r} is unknown; use one of: {choices}")
        if declared.range is not None and isinstance(value, int | float) and value not in declared.range:
            whole = kinds[f.name] is int
            raise EdgecnnError(f"{label_of(f)} must be {declared.range.must(whole)}, got {value}")


def build_options(cls: type[T], given: dict[str, Any], base: T | None = None) -> T:
    """The options object ``cls`` built by name: ``base`` (or the defaults) with each value of ``given``
    that is not None on top. A list becomes a tuple; a dict field is merged into ``base``'s."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {name: value for name, value in given.items() if name in fields and value is not None}
    for name, value in values.items():
        if isinstance(value, list) and isinstance(fields[name].default, tuple):
            values[name] = tuple(value)
        elif isinstance(value, list) and base is not None and isinstance(getattr(base, name), dict):
            values[name] = {**getattr(base, name), **dict(value)}
        elif isinstance(value, list) and fields[name].default_factory is dict:
            values[name] = dict(value)
    return dataclasses.replace(base, **values) if base is not None else cls(**values)  # type: ignore[type-var]


@dataclass
class TrainConfig:
    """``edgecnn train``'s options: each field one flag (unless ``cli=False``) and one key of a recipe."""

    arch: str = field(
        default="lenet5", metadata=opt("architecture name (edgecnn archs); its task picks the data format and loss")
    )
    data: str | None = field(  # None: the task's built-in default (digits, shapes, shapes-seg)
        default=None,
        metadata=opt(
            "classify: 'digits' or a folder of class subfolders; detect: 'shapes' or a COCO/YOLO folder; "
            "segment: 'shapes-seg' or a folder with images/ and masks/ (default: the task's built-in)"
        ),
    )
    img: int = field(default=32, metadata=opt("input height and width in pixels", range=IMAGE_SIZE))
    channels: int | None = field(  # None: the dataset's own (1 for digits, 3 for image folders)
        default=None, metadata=opt("1 (gray) or 3 (RGB); default: the data's", choices=(1, 3))
    )
    epochs: int = field(default=10, metadata=opt("training epochs", range=Range(1)))
    batch: int = field(default=32, metadata=opt("images per batch, per device (see --devices)", range=Range(1)))
    lr: float = field(default=1e-3, metadata=opt("peak learning rate", range=POSITIVE))
    seed: int = field(default=0, metadata=opt("seed of the split, the initial weights and the augmentation"))
    val_fraction: float = field(default=0.2, metadata=opt("share held out", range=OPEN_FRACTION))
    augment: bool = field(default=True, metadata=opt("no random shifts and zooms"))  # the flag: --no-augment
    cache: str | None = field(  # streamed datasets: None, 'memory' or a file prefix for the decoded images
        default=None,
        metadata=opt(
            "keep a streamed dataset's decoded images after the first epoch: in RAM ('memory', for sets that "
            "fit) or in files PREFIX-* (reused by later runs on the same files); default: decode every epoch",
            metavar="memory|PREFIX",
        ),
    )
    arch_options: dict[str, Any] = field(
        default_factory=dict,
        metadata=opt(
            "architecture option, e.g. alpha=0.5 (repeatable)",
            flag="--option",
            metavar="KEY=VALUE",
            parse=parse_option,
            repeat=True,
        ),
    )
    weights: str | None = field(  # 'imagenet' or a .keras/.h5 path: initial backbone weights
        default=None, metadata=opt("initial weights: 'imagenet' (keras.applications) or a .keras/.h5/run folder")
    )
    freeze_backbone: bool = field(default=False, metadata=opt("train only the head (with --weights)"))
    fine_tune_at: int | str | None = field(  # then unfreeze from this layer (index or name) ...
        default=None,
        metadata=opt(
            "after the head phase, unfreeze from this layer index or name and train on at a lower lr", metavar="LAYER"
        ),
    )
    fine_tune_epochs: int | None = field(  # ... for this many epochs (default: epochs) ...
        default=None, metadata=opt("epochs of the fine-tuning phase (default: --epochs)", range=Range(1))
    )
    fine_tune_lr_factor: float = field(  # ... at this fraction of the learning rate
        default=0.1, metadata=opt("the fine-tuning phase's share of the learning rate", range=POSITIVE, cli=False)
    )
    precision: str = field(  # the saved model is float32 either way
        default="float32",
        metadata=opt(
            "mixed_float16 (GPUs with tensor cores) or mixed_bfloat16: faster training there (emulated and slower "
            "on most CPUs); model.keras and every export stay float32",
            choices=PRECISIONS,
        ),
    )
    clip_norm: float | None = field(default=None, metadata=opt("clip the gradient to this global norm", range=POSITIVE))
    accumulate: int = field(  # micro-batches of `batch` whose gradients are summed into one update
        default=1,
        metadata=opt(
            "sum the gradients of N micro-batches of --batch, then update once (a batch of N x --batch in the "
            "memory of one; BatchNorm still sees micro-batches)",
            metavar="N",
            range=Range(1),
        ),
    )
    devices: int | str | None = field(  # None or 'all': every visible GPU; N: the first N (TF_CONFIG: multi-worker)
        default=None,
        metadata=opt(
            "MirroredStrategy over the first N visible GPUs (default: all); with TF_CONFIG set, one worker of a "
            "multi-worker run. --batch is per device: global batch = batch x devices x accumulate",
            metavar="N|all",
        ),
    )
    lr_scaling: str = field(  # lr x f(replicas x accumulate)
        default="none",
        metadata=opt(
            "scale --lr with the global batch: linear or sqrt in devices x accumulate", choices=LR_SCALING_RULES
        ),
    )
    warmup_epochs: float = field(  # linear learning-rate warmup before the cosine decay
        default=0.0, metadata=opt("linear learning-rate warmup before the cosine decay", range=Range(0), cli=False)
    )
    adversarial: str | None = field(  # half of every batch adversarial (edgecnn.insight.attacks)
        default=None,
        metadata=opt(
            "adversarial training: the first half of every batch replaced by attacked images (the other half "
            "clean), crafted against the current weights",
            metavar="fgsm|pgd",
        ),
    )
    adversarial_eps: float = field(  # the attack's budget, a fraction of the 0..1 pixel range
        default=0.1,
        metadata=opt(
            "--adversarial budget, a fraction of the 0-1 pixel range", flag="--eps", range=Range(0, 1, low_open=True)
        ),
    )
    adversarial_steps: int = field(default=7, metadata=opt("--adversarial pgd: iterations", range=Range(1), cli=False))
    out: str = field(default="runs/train", metadata=opt("run folder"))

    def validate(self) -> None:
        """Every field in its range and choices (one line naming the flag), and the cache prefix usable."""
        check_options(self)
        check_cache(self.cache)


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
        named = ", ".join(_with_close_name(key, known) for key in unknown)
        raise EdgecnnError(f"unknown keys in {path}: {named}; valid keys: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        expected = _type_name(hints[key], value)
        if expected:
            raise EdgecnnError(f"{path}:{lines.get(key, 1)}: {key}: expected {expected}, got {value!r}; fix the value")
    tuples = {name for name, kind in value_types(cls).items() if kind is tuple}
    return cls(**{key: tuple(value) if key in tuples else value for key, value in raw.items()})


def _with_close_name(key: str, known: set[str]) -> str:
    """``key``, with the closest valid key when one is close: 'epoch (did you mean epochs?)'."""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"{key} (did you mean {close[0]}?)" if close else key


def _key_lines(node: Any) -> dict[str, int]:
    """The line (1-based) of each top-level key of a composed YAML mapping."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


_NAMES = {
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    str: "text",
    dict: "a mapping",
    tuple: "a list",
}


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
        if base is tuple and isinstance(value, list):  # e.g. float_layers: [conv1, conv2]
            return ""
    words = [_NAMES.get(typing.get_origin(o) or o, "nothing (null)" if o is type(None) else str(o)) for o in options]
    return " or ".join(words)


def load_train_config(path: str | Path) -> TrainConfig:
    """A training recipe (training/*.yaml) or a run's config.yaml."""
    return load_config(path, TrainConfig)
