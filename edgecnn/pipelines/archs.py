"""``edgecnn archs``: parameters and MACs of every registered architecture at its default input, cached on disk.

Building ~30 networks (VGG-16 alone has 138M weights to initialize) takes about a minute, so the
numbers are computed once per version of the architecture sources and kept in the user cache
(``$XDG_CACHE_HOME/edgecnn`` or ``~/.cache/edgecnn``); editing any family file invalidates them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from edgecnn.archs import create
from edgecnn.archs.registry import get_arch, list_archs
from edgecnn.core.fileio import write_text
from edgecnn.core.keras_env import keras
from edgecnn.insight.profile import profile_model
from edgecnn.pipelines.options import ProfileOptions
from edgecnn.tasks import get_task
from edgecnn.trainer.load import load_keras


@dataclass
class ArchStats:
    name: str
    family: str
    task: str
    input_size: int
    params: int
    macs: int
    edgetpu: bool
    description: str


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgecnn" / f"archs-{_sources_digest()}.json"


def measure(name: str, num_classes: int | None = None) -> ArchStats:
    """Build ``name`` at its default input (3 channels) with its task's reference class count (ImageNet
    1000, COCO 90, VOC 21) and count params and MACs."""
    spec = get_arch(name)
    model = create(name, num_classes or get_task(spec.task).reference_classes, spec.default_size, 3)
    profile = profile_model(model)
    keras.backend.clear_session()
    return ArchStats(
        name,
        spec.family,
        spec.task,
        spec.default_size,
        profile.total_params,
        profile.total_macs,
        spec.edgetpu,
        spec.doc,
    )


def all_stats(use_cache: bool = True) -> list[ArchStats]:
    path = cache_path()
    cached: dict[str, dict] = {}
    if use_cache and path.is_file():
        cached = json.loads(path.read_text())
    names = list_archs()
    missing = [n for n in names if n not in cached]
    for name in tqdm(missing, desc="measuring architectures", unit="arch", disable=None if missing else True):
        cached[name] = asdict(measure(name))
    if missing:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, json.dumps(cached, indent=1))
        except OSError:
            pass  # a read-only home only costs the cache
    return [ArchStats(**cached[n]) for n in names]


def format_table(rows: list[ArchStats]) -> str:
    head = ("name", "family", "task", "params", "MACs", "input", "edgetpu", "description")
    cells = [
        (
            r.name,
            r.family,
            r.task,
            f"{r.params / 1e6:.2f}M",
            f"{r.macs / 1e6:,.1f}M",
            str(r.input_size),
            "yes" if r.edgetpu else "no",
            r.description,
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head) - 1)]
    lines = []
    for row in [head, *cells]:
        lines.append(
            "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False)))
            + "  "
            + row[-1]
        )
    return "\n".join(lines)


def profile_target(target: str, options: ProfileOptions = ProfileOptions()) -> Any:
    """The per-layer profile of a saved model (.keras, run folder) or of an architecture built at its size."""
    path = Path(target)
    if path.suffix in (".keras", ".h5", ".tflite") or path.is_dir():
        model, _ = load_keras(path)
    else:
        spec = get_arch(target)
        model = create(target, options.classes, options.img or spec.default_size, options.channels)
    return profile_model(model, bytes_per_element=1 if options.int8 else 4)
