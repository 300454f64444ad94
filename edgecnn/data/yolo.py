"""YOLO-txt detection datasets, in the layouts Ultralytics and Roboflow export.

Each label line is ``class x_center y_center width height``, normalized to 0..1 (the Ultralytics /
Darknet format). Class names come from ``data.yaml`` (``names:`` as a list or an {id: name} dict, or
``nc:`` alone) or ``classes.txt`` (one per line, as LabelImg writes it, in the folder or in labels/).
Two layouts:

* **one pool**: ``images/**`` and ``labels/**.txt`` with the same relative stem; the run splits it at
  random (seeded).
* **the dataset's own splits**: a ``data.yaml`` whose ``train:`` and ``val:`` (and ``test:``) name image
  folders, text files listing image paths, or lists of those; relative to ``path:`` (itself relative to
  the yaml's folder) or to the yaml's folder, and a ``../x`` that does not exist is also tried as ``x``
  (Roboflow writes ``../train/images`` beside the yaml). Ultralytics' ``images/train`` + ``labels/train``
  and Roboflow's ``train/images`` + ``train/labels`` are both this. An image's labels are at its path
  with the last ``images`` folder named ``labels`` and the suffix ``.txt`` (Ultralytics' rule); an image
  without them is a negative. These splits are used instead of a random one.

``--data`` is the dataset folder or the data.yaml itself. Bad lines are reported in
``DetectionData.skipped`` as ``"labels/x.txt:3: problem (what was done); fix"``; images are checked by
their header and stay on disk (:class:`~edgecnn.data.files.ImageFiles`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from edgecnn.core.errors import EdgecnnError
from edgecnn.data.base import DetectionData
from edgecnn.data.files import ImageFiles
from edgecnn.data.images import IMAGE_SUFFIXES, choose_format, image_header, images_by_stem, list_images, sorted_files

EDGE_TOLERANCE = 1e-3  # normalized coordinates this far outside 0..1 are rounding, not a bad box
FORMAT = "'class x_center y_center width height'"
YAML_NAMES = ("data.yaml", "data.yml")
PARTS = ("train", "val", "test")


# -- data.yaml ----------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)  # YAML errors span lines: keep the line and the reason
        where = f" at line {mark.line + 1}" if mark else ""
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise EdgecnnError(f"cannot read {path}{where}: {reason}; fix the YAML") from exc
    if not isinstance(content, dict):
        raise EdgecnnError(f"{path} is not a mapping; write 'names: [cat, dog]' (and train:/val: image folders)")
    if "val" not in content and "validation" in content:  # Ultralytics accepts this spelling too
        content["val"] = content["validation"]
    return content


def _names_from_yaml(path: Path, content: dict[str, Any]) -> list[str]:
    names, count = content.get("names"), content.get("nc")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise EdgecnnError(f"{path}: names ids are {sorted(names, key=str)}; number them 0, 1, 2, ... without gaps")
        names = [str(names[i]) for i in range(len(names))]
    elif isinstance(names, list) and names:
        names = [str(n) for n in names]
    elif names is None and isinstance(count, int) and not isinstance(count, bool) and count > 0:
        return [f"class{i}" for i in range(count)]
    else:
        raise EdgecnnError(f"{path} has no names: list; add 'names: [cat, dog]' (class names in class id order)")
    if isinstance(count, int) and count != len(names):
        raise EdgecnnError(f"{path}: nc is {count} but names has {len(names)}; make them agree")
    return names


def find_yaml(source: Path) -> Path | None:
    """The dataset's data.yaml: ``source`` itself when it is a .yaml file, else data.yaml in the folder."""
    if source.is_file():
        return source if source.suffix.lower() in (".yaml", ".yml") else None
    return next((source / name for name in YAML_NAMES if (source / name).is_file()), None)


def _split_keys(source: Path) -> set[str]:
    """Which of train:/val:/test: the data.yaml of ``source`` (a folder or a yaml) names; {'?'} when it is broken."""
    path = find_yaml(source)
    if path is None:
        return set()
    try:
        content = _read_yaml(path)
    except EdgecnnError:
        return {"?"}  # meant as YOLO all the same: the loader says what is wrong
    return {part for part in PARTS if content.get(part)}


def defines_splits(source: Path) -> bool:
    """Whether ``source`` (a folder or a yaml) has a data.yaml naming train: and val: images."""
    return {"train", "val"} <= _split_keys(source)


def looks_like_yolo(source: Path) -> bool:
    """A YOLO dataset: a data.yaml given itself, a folder whose data.yaml names train:/val:/test:, or images/ +
    labels/."""
    if source.is_file():
        return find_yaml(source) is not None
    return bool(_split_keys(source)) or ((source / "labels").is_dir() and (source / "images").is_dir())


def class_names(folder: Path, yaml_path: Path | None = None) -> tuple[list[str], str]:
    """Class names and the file they came from: data.yaml, else classes.txt (folder or labels/)."""
    yaml_path = yaml_path or find_yaml(folder)
    if yaml_path is not None:
        return _names_from_yaml(yaml_path, _read_yaml(yaml_path)), yaml_path.name
    for path in (folder / "classes.txt", folder / "labels" / "classes.txt"):
        if path.is_file():
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if not names:
                raise EdgecnnError(f"{path} is empty; write one class name per line, in class id order")
            return names, path.relative_to(folder).as_posix()
    raise EdgecnnError(
        f"no class names for the YOLO dataset {folder}; add data.yaml with 'names: [cat, dog]' "
        "or classes.txt with one name per line"
    )


def _resolve(root: Path, entry: str) -> Path:
    """An entry of train:/val:/test: as Ultralytics resolves it (a missing '../x' is tried as 'x')."""
    path = (root / entry).resolve()
    if not path.exists() and entry.startswith("../"):
        path = (root / entry[3:]).resolve()
    return path


def _listed_images(path: Path, yaml_path: Path, part: str) -> list[Path]:
    """The images an entry names: every image under a folder, or the lines of a list file (relative lines
    are relative to the list file's folder, './' or not)."""
    if path.is_dir():
        return list_images(path)
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgecnnError(f"{yaml_path}: {part}: cannot read the list file {path} ({exc}); fix it") from exc
        return [(path.parent / line).resolve() for line in lines if line and not line.startswith("#")]
    if path.is_file():
        return [path]
    raise EdgecnnError(f"{yaml_path}: {part}: {path} does not exist; give an image folder or a list file")


def _split_images(yaml_path: Path, content: dict[str, Any]) -> dict[str, list[Path]]:
    """part -> its images, for every part the yaml names. ``path:`` is the root of the entries: relative to
    the yaml's folder, or else to the working directory (as Ultralytics reads it); none: the yaml's folder."""
    root = Path(str(content.get("path") or "."))
    if not root.is_absolute() and ((yaml_path.parent / root).is_dir() or not root.is_dir()):
        root = yaml_path.parent / root
    parts = {}
    for part in PARTS:
        entries = content.get(part)
        if not entries:
            continue
        entries = entries if isinstance(entries, list) else [entries]
        if not all(isinstance(e, str) for e in entries):
            raise EdgecnnError(f"{yaml_path}: {part}: expected a folder, a list file or a list of them, got {entries}")
        parts[part] = [image for e in entries for image in _listed_images(_resolve(root, e), yaml_path, part)]
    return parts


def label_path(image: Path) -> Path:
    """Where an image's labels are (Ultralytics' rule): the last 'images' folder of its path named 'labels'."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


# -- label files --------------------------------------------------------------------------------------------


def parse_label_line(fields: list[str], num_classes: int, names_file: str) -> tuple[int, np.ndarray | None, str]:
    """One label line's fields -> (class id, normalized [ymin, xmin, ymax, xmax] or None, problem or '')."""
    if len(fields) != 5:
        return -1, None, f"expected 5 fields {FORMAT}, got {len(fields)} (skipped)"
    try:
        values = [float(f) for f in fields]
    except ValueError:
        values = [float("nan")]
    if not all(np.isfinite(values)):
        return -1, None, f"not a number in {' '.join(fields)!r} (skipped); write 5 numbers {FORMAT}"
    cls, xc, yc, w, h = values
    if not cls.is_integer() or not 0 <= cls < num_classes:
        problem = f"class id {fields[0]} out of range 0..{num_classes - 1} (skipped); fix it or add its name to "
        return -1, None, problem + names_file
    if w <= 0 or h <= 0:
        return -1, None, f"box size {fields[3]} x {fields[4]} is not positive (skipped); fix or remove the line"
    x0, x1, y0, y1 = xc - w / 2, xc + w / 2, yc - h / 2, yc + h / 2
    outside = min(x0, y0) < -EDGE_TOLERANCE or max(x1, y1) > 1 + EDGE_TOLERANCE
    x0, x1, y0, y1 = (min(max(v, 0.0), 1.0) for v in (x0, x1, y0, y1))
    where = f"box {' '.join(fields[1:])} reaches outside the image"
    if x1 <= x0 or y1 <= y0:
        return -1, None, f"{where} (skipped, nothing left inside); fix the box"
    return int(cls), np.array([y0, x0, y1, x1], np.float32), f"{where} (clipped)" if outside else ""


def _read_labels(
    path: Path, rel: str, num_classes: int, names_file: str, reports: list[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """A label file -> (boxes (K, 4), classes (K,)); None (reported) when the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reports.append(f"{rel}: cannot read the label file ({exc}); image skipped, fix the file")
        return None
    boxes, classes = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        cls, box, problem = parse_label_line(fields, num_classes, names_file)
        if problem:
            reports.append(f"{rel}:{number}: {problem}")
        if box is not None:
            boxes.append(box)
            classes.append(cls)
    return (np.stack(boxes) if boxes else np.zeros((0, 4), np.float32)), np.asarray(classes, np.int32)


@dataclass
class _Plan:
    """What to read: the images in order, each with its label file (None: a negative), and the parts."""

    images: list[Path] = field(default_factory=list)
    labels: list[Path | None] = field(default_factory=list)
    parts: dict[str, list[int]] = field(default_factory=dict)
    reports: list[str] = field(default_factory=list)


def _rel(path: Path, folder: Path) -> str:
    """``path`` as a report names it: relative to the dataset folder when inside it."""
    rel = os.path.relpath(path, folder)
    return Path(path).as_posix() if rel.startswith("..") else Path(rel).as_posix()


def _pool_plan(folder: Path) -> _Plan:
    """images/** with labels/** by relative stem; label files without an image are reported."""
    plan = _Plan()
    images = images_by_stem(folder / "images")
    label_files = {
        p.relative_to(folder / "labels").with_suffix("").as_posix(): p
        for p in sorted_files(folder / "labels", "*.txt")
        if p != folder / "labels" / "classes.txt"
    }
    for stem, image_path in images.items():
        plan.images.append(image_path)
        plan.labels.append(label_files.get(stem))
    plan.reports += [
        f"{path.relative_to(folder).as_posix()}: no image images/{stem}.* for this label file "
        "(skipped); add the image or delete the label file"
        for stem, path in label_files.items()
        if stem not in images
    ]
    return plan


def _split_plan(folder: Path, yaml_path: Path, content: dict[str, Any]) -> _Plan:
    """The yaml's train/val/test images with their labels by Ultralytics' rule."""
    plan = _Plan()
    for part, images in _split_images(yaml_path, content).items():
        start = len(plan.images)
        plan.images += images
        for image in images:
            label = label_path(image)
            plan.labels.append(label if label.is_file() else None)
        plan.parts[part] = list(range(start, len(plan.images)))
    return plan


def load_yolo(source: Path, img_size: int, channels: int | None) -> DetectionData:
    """A YOLO-txt dataset (a folder, or its data.yaml); images without a label file are negatives."""
    yaml_path = find_yaml(source)
    folder = source.parent if source.is_file() else source
    labels, names_file = class_names(folder, yaml_path)
    own = yaml_path is not None and defines_splits(yaml_path)
    if yaml_path is not None and not own and not (folder / "images").is_dir():
        raise EdgecnnError(
            f"{yaml_path} names no train: and val: images and {folder} has no images/ folder; add "
            "'train: images/train' and 'val: images/val' (folders or list files) or put the images in images/"
        )
    plan = _split_plan(folder, yaml_path, _read_yaml(yaml_path)) if own and yaml_path else _pool_plan(folder)
    paths: list[Path] = []
    boxes: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    grays: list[bool] = []
    kept: dict = {}
    reports: list[str] = []
    pairs = list(zip(plan.images, plan.labels, strict=True))
    for i, (image_path, label) in enumerate(tqdm(pairs, desc="checking images", unit="img", leave=False, disable=None)):
        found = (
            _read_labels(label, _rel(label, folder), len(labels), names_file, reports)
            if label is not None
            else (np.zeros((0, 4), np.float32), np.zeros(0, np.int32))  # no label file: an image without boxes
        )
        if found is None:  # a bad label file, reported
            continue
        header = image_header(image_path)
        if header is None:
            problem = "cannot read the image (skipped with its labels); replace the file"
            reports.append(f"{_rel(image_path, folder)}: {problem}")
            continue
        kept[i] = len(paths)
        paths.append(image_path)
        grays.append(header.gray)
        boxes.append(found[0])
        classes.append(found[1])
    reports += plan.reports
    if not paths:
        where = ", ".join(plan.parts) + f" of {yaml_path}" if own else str(folder / "images")
        raise EdgecnnError(f"no usable images in {where}; put the images there and their .txt in labels/")
    parts = {part: np.asarray([kept[i] for i in index if i in kept], np.int64) for part, index in plan.parts.items()}
    empty = [part for part in ("train", "val") if part in parts and not len(parts[part])]
    if empty:
        raise EdgecnnError(
            f"{yaml_path}: {empty[0]}: no usable images ({len(plan.parts[empty[0]])} listed); "
            "point it at a folder or list file of readable images"
        )
    x = ImageFiles(paths, img_size, choose_format(all(grays), channels), folder)
    return DetectionData(x, boxes, classes, labels, x.pixel_format, reports, parts)
