"""``edgecnn eval --attack``: top-1 on clean and on adversarial images, side by side.

Attacks are white box, crafted on a Keras model (:mod:`edgecnn.insight.attacks`). A .tflite has no
gradients, so its images are crafted on its source Keras model and transferred: the int8 deployment's
robustness is measured on exactly the images that fool (or not) its float original. Adversarial images
are rounded to uint8 pixels (what a camera or file can hold) and kept inside the eps ball.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgecnn.core.errors import EdgecnnError
from edgecnn.core.metadata import ModelInfo
from edgecnn.data.files import image_batches

ATTACK_NAMES = ("fgsm", "pgd")  # the keys of edgecnn.insight.attacks.ATTACKS, readable without TensorFlow
DEFAULT_EPS = 0.1
DEFAULT_STEPS = 10
BATCH = 128


@dataclass(frozen=True)
class AttackOptions:
    name: str
    eps: float = DEFAULT_EPS
    steps: int = DEFAULT_STEPS


def attack_options(name: str, eps: float | None, steps: int | None) -> AttackOptions:
    """Validated settings: eps in (0, 1], and steps only where they mean something (PGD)."""
    if name not in ATTACK_NAMES:
        raise EdgecnnError(f"unknown --attack {name!r}; choose one of: {', '.join(ATTACK_NAMES)}")
    if eps is not None and not 0.0 < eps <= 1.0:
        raise EdgecnnError(f"--eps {eps} is outside (0, 1]; it is a fraction of the pixel range, e.g. 0.1")
    if steps is not None and name == "fgsm":
        raise EdgecnnError("--steps sets PGD's iterations; FGSM is one step: drop --steps or use --attack pgd")
    return AttackOptions(name, DEFAULT_EPS if eps is None else eps, steps or DEFAULT_STEPS)


def source_candidates(tflite: Path) -> list[Path]:
    """Where a .tflite's Keras model is when edgecnn wrote both: ``model.keras`` beside it (a run or an
    optimize step folder), ``NAME.keras`` for ``NAME_<format>.tflite``, or the run folder above a
    ``formats/`` folder."""
    stem = tflite.stem.rsplit("_", 1)[0] if "_" in tflite.stem else tflite.stem
    found = [tflite.with_name("model.keras"), tflite.with_name(stem + ".keras"), tflite.parent.parent / "model.keras"]
    return list(dict.fromkeys(found))


def find_source_keras(tflite: Path) -> Path:
    for candidate in source_candidates(tflite):
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in source_candidates(tflite))
    raise EdgecnnError(
        f"no source Keras model for {tflite}: attacks are crafted on the Keras model and transferred; "
        f"looked for {looked}; evaluate the .keras model or put it beside the .tflite"
    )


def crafted_batches(
    model: Any, images: Any, labels: np.ndarray, options: AttackOptions, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(clean uint8 images, their labels, adversarial uint8 images) a batch of :data:`BATCH` at a time, with
    a progress bar. ``images`` is an (N, H, W, C) uint8 array or streamed files
    (:class:`~edgecnn.data.files.ImageFiles`): only one batch is decoded and held at a time.

    Rounded to whole pixel levels inside the eps ball: at most ``floor(eps * 255)`` levels from the original."""
    from edgecnn.core.keras_env import tf  # lazy: as above
    from edgecnn.insight.attacks import get_attack  # lazy: attacks need TensorFlow, plain eval does not

    attack = get_attack(options.name)
    tf.random.set_seed(seed)  # PGD's random start: once, so the draws run on across batches
    radius = np.floor(options.eps * 255.0 + 1e-6)
    labels = np.asarray(labels)
    start = 0
    with tqdm(total=len(images), desc=f"craft {options.name}", unit="img", leave=False, disable=None) as bar:
        for x in image_batches(images, BATCH):
            y = labels[start : start + len(x)]
            xf = x.astype(np.float32)
            adv = np.asarray(attack(model, xf, y, options.eps, options.steps))
            low, high = np.maximum(xf - radius, 0), np.minimum(xf + radius, 255)
            yield x, y, np.clip(np.round(adv), low, high).astype(np.uint8)
            start += len(x)
            bar.update(len(x))


def robustness(
    path: Path, info: ModelInfo, data: Any, options: AttackOptions, keras_model: Any = None, runner: Any = None
) -> dict[str, Any]:
    """Clean and adversarial top-1 of a Keras model (``keras_model``) or a .tflite (``runner``, attacked
    through its source Keras model)."""
    if info.task != "classify":
        raise EdgecnnError(f"--attack measures classifiers; {path} is a {info.task} model")
    crafted_on = path
    if keras_model is None:
        from edgecnn.trainer.load import load_keras  # lazy: a .tflite eval without --attack stays light

        crafted_on = find_source_keras(path)
        keras_model, source_info = load_keras(crafted_on)
        if source_info is not None and list(source_info.labels) != list(info.labels):
            raise EdgecnnError(
                f"{crafted_on} has classes {source_info.labels[:5]}..., {path} has {info.labels[:5]}...; "
                "they are not the same model"
            )
    counts = _attacked_counts(keras_model, runner, data, options)
    n = max(int(len(data)), 1)
    result: dict[str, Any] = {
        "attack": options.name,
        "eps": options.eps,
        "steps": options.steps if options.name == "pgd" else 1,
        "crafted_on": str(crafted_on),
        "transferred": runner is not None,
        "images": int(len(data)),
        "max_pixel_change": counts.pop("max_pixel_change"),
        **{name: round(count / n, 4) for name, count in counts.items()},
    }
    if runner is None:
        result["clean_top1"] = result["keras_clean_top1"]
        result["adversarial_top1"] = result["keras_adversarial_top1"]
    result["drop_points"] = round(100 * (result["clean_top1"] - result["adversarial_top1"]), 2)
    return result


def _attacked_counts(keras_model: Any, runner: Any, data: Any, options: AttackOptions) -> dict[str, int]:
    """Correct predictions of the Keras model (and the .tflite ``runner``) on clean and adversarial images,
    and the largest pixel change, accumulated a batch at a time: neither the clean set (which may be
    streamed from disk) nor the adversarial set is ever held whole."""
    counts = dict.fromkeys(["keras_clean_top1", "keras_adversarial_top1", "max_pixel_change"], 0)
    if runner is not None:
        counts.update(clean_top1=0, adversarial_top1=0)
    for x, y, adv in crafted_batches(keras_model, data.x, data.y, options):
        counts["max_pixel_change"] = max(
            counts["max_pixel_change"], int(np.abs(adv.astype(np.int16) - x.astype(np.int16)).max(initial=0))
        )
        for prefix, images in (("clean", x), ("adversarial", adv)):
            probs = keras_model.predict(images.astype(np.float32), batch_size=256, verbose=0)
            counts[f"keras_{prefix}_top1"] += int((probs.argmax(-1) == y).sum())
            if runner is not None:
                counts[f"{prefix}_top1"] += int((runner.predict(images).argmax(-1) == y).sum())
    return counts


def format_robustness(r: dict[str, Any]) -> list[str]:
    steps = f", {r['steps']} steps" if r["attack"] == "pgd" else ""
    lines = [
        f"  {r['attack'].upper()} eps={r['eps']:g} ({r['max_pixel_change']} pixel levels{steps}), crafted on "
        f"{r['crafted_on']}:",
        f"    top-1 clean {100 * r['clean_top1']:.2f}%  adversarial {100 * r['adversarial_top1']:.2f}%  "
        f"({-r['drop_points']:+.2f} points)",
    ]
    if r["transferred"]:
        lines.append(
            f"    source Keras model: clean {100 * r['keras_clean_top1']:.2f}%  "
            f"adversarial {100 * r['keras_adversarial_top1']:.2f}%"
        )
    return lines
