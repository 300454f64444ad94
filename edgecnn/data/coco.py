"""COCO-JSON detection datasets: ``annotations/*.json`` (or one ``*.json`` in the folder) plus the images.

Bad annotations never stop loading: each is reported in ``DetectionData.skipped`` as
``"annotations/instances.json:LINE: annotation id 7: problem (what was done); fix"``, LINE being where
the annotation's (or image entry's) opening brace is, so an editor can jump to it. The JSON is
parsed once, element by element, to know those positions. Images are checked by their header (size,
readable) and stay on disk as :class:`~edgecnn.data.files.ImageFiles`.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from edgecnn.core.errors import EdgecnnError
from edgecnn.data.base import DetectionData
from edgecnn.data.files import ImageFiles
from edgecnn.data.images import Header, choose_format, image_header

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_NO_BOXES = np.zeros((0, 4), np.float32)


# -- reading the JSON with positions ------------------------------------------------------------------


class _Lines:
    """Offset -> 1-based line number, indexing the text's newlines on first use."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.newlines: list[int] | None = None

    def __call__(self, offset: int) -> int:
        if self.newlines is None:
            self.newlines = [m.start() for m in re.finditer("\n", self.text)]
        return bisect.bisect_left(self.newlines, offset) + 1


def _skip_ws(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)  # whitespace or none: it always matches
    return match.end() if match else pos


def _decode_array(text: str, pos: int) -> tuple[list[Any], list[int], int]:
    """The JSON array starting at ``text[pos] == '['``: its elements, their start offsets, the end."""
    values: list[Any] = []
    starts: list[int] = []
    pos = _skip_ws(text, pos + 1)
    if text[pos] == "]":
        return values, starts, pos + 1
    while True:
        starts.append(pos)
        value, pos = _DECODER.raw_decode(text, pos)
        values.append(value)
        pos = _skip_ws(text, pos)
        if text[pos] == "]":
            return values, starts, pos + 1
        if text[pos] != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        pos = _skip_ws(text, pos + 1)


def _decode_object(text: str, keep_offsets: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The top-level JSON object, and the element offsets of its top-level arrays named in ``keep_offsets``."""
    result: dict[str, Any] = {}
    offsets: dict[str, list[int]] = {}
    pos = _skip_ws(text, 0)
    if text[pos : pos + 1] != "{":
        raise json.JSONDecodeError("Expecting a JSON object (a COCO file is one object)", text, pos)
    pos = _skip_ws(text, pos + 1)
    while text[pos] != "}":
        if text[pos] != '"':
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text[pos] != ":":
            raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
        pos = _skip_ws(text, pos + 1)
        if key in keep_offsets and text[pos] == "[":
            result[key], offsets[key], pos = _decode_array(text, pos)
        else:
            result[key], pos = _DECODER.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        elif text[pos] != "}":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
    if _skip_ws(text, pos + 1) != len(text):
        raise json.JSONDecodeError("Extra data", text, _skip_ws(text, pos + 1))
    return result, offsets


def read_coco_json(path: Path) -> tuple[dict[str, Any], dict[str, list[int]], _Lines]:
    """Parse a COCO file: (content, offsets of each "images"/"annotations" element, offset -> line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecnnError(f"cannot read {path}: {exc}; give a UTF-8 COCO JSON file") from exc
    try:
        content, offsets = _decode_object(text, ("images", "annotations"))
    except json.JSONDecodeError as exc:
        raise EdgecnnError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; fix the file"
        ) from exc
    except IndexError as exc:  # ran off the end of a truncated file
        raise EdgecnnError(f"{path}: invalid JSON: the file ends early (truncated?); fix the file") from exc
    for key in ("images", "categories"):
        if not isinstance(content.get(key), list):
            raise EdgecnnError(f'{path}: no "{key}" list; a COCO file has "images", "annotations" and "categories"')
    if not isinstance(content.get("annotations", []), list):
        raise EdgecnnError(f'{path}: "annotations" is not a list; a COCO file has a list of annotation objects')
    return content, offsets, _Lines(text)


def _categories(path: Path, categories: list[Any]) -> dict[Any, tuple[int, str]]:
    """category id -> (contiguous class id in order of sorted category ids, name)."""
    named = {}
    for cat in categories:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise EdgecnnError(f'{path}: category {json.dumps(cat)} needs an "id" and a "name"; fix "categories"')
        if cat["id"] in named:
            raise EdgecnnError(f"{path}: category id {cat['id']} appears twice; category ids must be unique")
        named[cat["id"]] = str(cat["name"])
    if not named:
        raise EdgecnnError(f'{path}: "categories" is empty; list the object classes as {{"id": 1, "name": "cat"}}')
    try:
        order = sorted(named)
    except TypeError as exc:
        raise EdgecnnError(f"{path}: category ids mix numbers and strings; use integer ids") from exc
    return {cid: (i, named[cid]) for i, cid in enumerate(order)}


# -- annotations ------------------------------------------------------------------------------------------


@dataclass
class _Image:
    entry: dict[str, Any]
    line: int
    boxes: list[list[float]] = field(default_factory=list)  # pixel [x, y, w, h], checked for shape only
    classes: list[int] = field(default_factory=list)
    lines: list[tuple[int, Any]] = field(default_factory=list)  # (line, annotation id) per box


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _annotation_problem(ann: Any, images: dict[Any, _Image], cats: dict[Any, tuple[int, str]]) -> str | None:
    """Why an annotation cannot be used, or None; checks that need no image size."""
    if not isinstance(ann, dict):
        return "annotation is not an object (skipped); fix or remove it"
    if ann.get("image_id") not in images:
        return f'unknown image_id {json.dumps(ann.get("image_id"))} (skipped); add that image to "images" or fix the id'
    if ann.get("category_id") not in cats:
        category = json.dumps(ann.get("category_id"))
        return f'unknown category_id {category} (skipped); add it to "categories" or fix the id'
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        return f"bbox {json.dumps(bbox)} is not [x, y, width, height] in pixels (skipped); fix or remove it"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return f"box {json.dumps(bbox)} has a width or height <= 0 (skipped); fix or remove it"
    return None


def normalize_box(bbox: list[float], width: int, height: int, tolerance: float = 1.0) -> tuple[np.ndarray | None, str]:
    """Pixel [x, y, w, h] -> normalized [ymin, xmin, ymax, xmax] clipped to the image, and what was wrong.

    Boxes overhanging the image by more than ``tolerance`` pixels are clipped and reported; a box
    with nothing left inside is dropped (None).
    """
    x0, y0, w, h = (float(v) for v in bbox)
    x1, y1 = x0 + w, y0 + h
    outside = x0 < -tolerance or y0 < -tolerance or x1 > width + tolerance or y1 > height + tolerance
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    where = f"box {json.dumps(bbox)} outside image {width}x{height}"
    if x1 <= x0 or y1 <= y0:
        return None, f"{where} (skipped, nothing left inside); fix the box"
    box = np.array([y0 / height, x0 / width, y1 / height, x1 / width], np.float32)
    return box, f"{where} (clipped)" if outside else ""


def _find_file(file_name: str, folder: Path, json_dir: Path) -> Path | None:
    for base in (folder / "images", json_dir, folder):
        if (base / file_name).is_file():
            return base / file_name
    return None


def _declared_size(entry: dict[str, Any]) -> tuple[int, int] | None:
    w, h = entry.get("width"), entry.get("height")
    return (int(w), int(h)) if _is_number(w) and _is_number(h) and w > 0 and h > 0 else None


# -- the loader -----------------------------------------------------------------------------------------


def coco_files(folder: Path) -> list[Path]:
    """The annotation files: ``annotations/*.json`` else ``*.json`` in the folder; ``instances*`` preferred."""
    files = sorted((folder / "annotations").glob("*.json")) or sorted(folder.glob("*.json"))
    instances = [f for f in files if f.name.startswith("instances")]
    return instances or files


def _load_file(
    path: Path, folder: Path, reports: list[str]
) -> tuple[list[tuple[Path, Header]], list[np.ndarray], list[np.ndarray], list[str]]:
    """One COCO file -> ((image file, header) per usable image, boxes, classes, labels); problems appended
    to ``reports``."""
    content, offsets, line_of = read_coco_json(path)
    cats = _categories(path, content["categories"])
    rel = path.relative_to(folder).as_posix()
    problems: list[tuple[int, str]] = []  # (line, message), sorted by line at the end

    images: dict[Any, _Image] = {}
    for entry, start in zip(content["images"], offsets.get("images", []), strict=True):
        line = line_of(start)
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            problems.append((line, "image entry has no id or file_name (skipped); give each image both"))
        elif entry["id"] in images:
            problems.append((line, f"image id {json.dumps(entry['id'])}: duplicate id (skipped); make ids unique"))
        else:
            images[entry["id"]] = _Image(entry, line)

    for ann, start in zip(content.get("annotations", []), offsets.get("annotations", []), strict=True):
        if isinstance(ann, dict) and ann.get("iscrowd"):
            continue  # crowd regions are not boxes to detect
        line, ann_id = line_of(start), ann.get("id", "?") if isinstance(ann, dict) else "?"
        problem = _annotation_problem(ann, images, cats)
        if problem:
            problems.append((line, f"annotation id {ann_id}: {problem}"))
            continue
        image = images[ann["image_id"]]
        image.boxes.append(ann["bbox"])
        image.classes.append(cats[ann["category_id"]][0])
        image.lines.append((line, ann_id))

    files: list[tuple[Path, Header]] = []
    boxes: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    for image_id, image in images.items():
        name, count = image.entry["file_name"], len(image.boxes)
        where = f"image id {json.dumps(image_id)}"
        file = _find_file(name, folder, path.parent)
        header = image_header(file) if file else None
        if file is None or header is None:
            problem = (
                f"file {name!r} not found in images/, next to the JSON or in the dataset folder"
                if file is None
                else f"cannot read {file.relative_to(folder).as_posix()}"
            )
            fix = "add it or fix file_name" if file is None else "replace the file"
            problems.append(
                (image.line, f"{where}: {problem} (skipped with its {count} annotation{'s' * (count != 1)}); {fix}")
            )
            continue
        actual = (header.width, header.height)
        width, height = _declared_size(image.entry) or actual
        if actual != (width, height):
            problem = f"{name} is {actual[0]}x{actual[1]} but the JSON says {width}x{height}"
            problems.append((image.line, f"{where}: {problem}; its boxes were read in the JSON's size"))
        kept_boxes, kept_classes = [], []
        for bbox, cls, (line, ann_id) in zip(image.boxes, image.classes, image.lines, strict=True):
            box, problem = normalize_box(bbox, width, height)
            if problem:
                problems.append((line, f"annotation id {ann_id}: {problem}"))
            if box is not None:
                kept_boxes.append(box)
                kept_classes.append(cls)
        files.append((file, header))
        boxes.append(np.stack(kept_boxes) if kept_boxes else _NO_BOXES.copy())
        classes.append(np.asarray(kept_classes, np.int32))
    reports += [f"{rel}:{line}: {message}" for line, message in sorted(problems, key=lambda p: p[0])]
    return files, boxes, classes, [name for _, name in sorted(cats.values())]


def load_coco(folder: Path, img_size: int, channels: int | None) -> DetectionData:
    """A COCO-JSON dataset; several annotation files (e.g. train and val) are merged if their categories agree."""
    files = coco_files(folder)
    if not files:
        raise EdgecnnError(f"no COCO JSON in {folder}; put it at annotations/instances.json with the images in images/")
    images: list[tuple[Path, Header]] = []
    boxes: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    reports: list[str] = []
    labels: list[str] | None = None
    for path in files:
        file_images, file_boxes, file_classes, file_labels = _load_file(path, folder, reports)
        if labels is not None and file_labels != labels:
            raise EdgecnnError(
                f"{path} has categories {file_labels} but {files[0]} has {labels}; "
                "keep one annotation file or give them the same categories"
            )
        labels = file_labels
        images += file_images
        boxes += file_boxes
        classes += file_classes
    if not images:
        raise EdgecnnError(f'no usable images in {folder}; put the files named in the JSON\'s "images" under images/')
    pixel_format = choose_format(all(header.gray for _, header in images), channels)
    x = ImageFiles([file for file, _ in images], img_size, pixel_format, folder)
    return DetectionData(x, boxes, classes, labels or [], pixel_format, reports)
