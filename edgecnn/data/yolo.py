"""YOLO-txt detection datasets: ``images/**`` and ``labels/**.txt`` with the same relative stem.

Each label line is ``class x_center y_center width height``, normalized to 0..1 (the Ultralytics /
Darknet format). Class names come from ``data.yaml`` (``names:`` as a list or an {id: name} dict)
or ``classes.txt`` (one per line, as LabelImg writes it, in the folder or in labels/). Bad lines
are reported in ``DetectionData.skipped`` as ``"labels/x.txt:3: problem (what was done); fix"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from edgecnn.data.base import DetectionData
from edgecnn.data.images import (
    images_by_stem,
    orphan_reports,
    read_image,
    resize_image,
    sorted_files,
    stack_images,
)
from edgecnn.errors import EdgecnnError

EDGE_TOLERANCE = 1e-3  # normalized coordinates this far outside 0..1 are rounding, not a bad box
FORMAT = "'class x_center y_center width height'"


def _names_from_yaml(path: Path) -> list[str]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)  # YAML errors span lines: keep the line and the reason
        where = f" at line {mark.line + 1}" if mark else ""
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise EdgecnnError(f"cannot read {path}{where}: {reason}; fix the YAML") from exc
    names = content.get("names") if isinstance(content, dict) else None
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise EdgecnnError(f"{path}: names ids are {sorted(names, key=str)}; number them 0, 1, 2, ... without gaps")
        return [str(names[i]) for i in range(len(names))]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise EdgecnnError(f"{path} has no names: list; add 'names: [cat, dog]' (class names in class id order)")


def class_names(folder: Path) -> tuple[list[str], str]:
    """Class names and the file they came from: data.yaml, else classes.txt (folder or labels/)."""
    if (folder / "data.yaml").is_file():
        return _names_from_yaml(folder / "data.yaml"), "data.yaml"
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


def load_yolo(folder: Path, img_size: int, channels: int | None) -> DetectionData:
    """A YOLO-txt dataset; images without a label file are negatives (no objects)."""
    labels, names_file = class_names(folder)
    images = images_by_stem(folder / "images")
    label_files = {
        p.relative_to(folder / "labels").with_suffix("").as_posix(): p
        for p in sorted_files(folder / "labels", "*.txt")
        if p != folder / "labels" / "classes.txt"
    }
    xs, boxes, classes, reports = [], [], [], []
    for stem, image_path in images.items():
        found = (np.zeros((0, 4), np.float32), np.zeros(0, np.int32))
        if stem in label_files:
            path = label_files[stem]
            found = _read_labels(path, path.relative_to(folder).as_posix(), len(labels), names_file, reports)
            if found is None:
                continue
        pixels = read_image(image_path)
        if pixels is None:
            reports.append(
                f"{image_path.relative_to(folder).as_posix()}: cannot read the image (skipped with its "
                "labels); replace the file"
            )
            continue
        xs.append(resize_image(pixels, img_size))
        boxes.append(found[0])
        classes.append(found[1])
    reports += orphan_reports(folder, label_files, images, "label file")
    if not xs:
        raise EdgecnnError(f"no usable images in {folder / 'images'}; put the images there and their .txt in labels/")
    x, pixel_format = stack_images(xs, channels)
    return DetectionData(x, boxes, classes, labels, pixel_format, reports)
