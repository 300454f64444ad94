"""Detection data: COCO and YOLO folders (with every kind of bad annotation), the shapes set, the split."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.core.errors import EdgecnnError
from edgecnn.data import load_data, load_split
from edgecnn.data.base import random_split
from edgecnn.data.coco import load_coco
from edgecnn.data.shapes import _generate, shapes, shapes_seg
from edgecnn.data.yolo import load_yolo


def write_photo(path: Path, width: int, height: int, photo: str = "coffee", offset: int = 0) -> np.ndarray:
    """A real-photo crop (scikit-image sample) of width x height, saved with OpenCV; returns it as RGB."""
    from skimage import data as skdata

    rgb = np.ascontiguousarray(getattr(skdata, photo)()[offset : offset + height, offset : offset + width])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return rgb


def close(actual: np.ndarray, expected: list) -> bool:
    return actual.shape == np.shape(expected) and np.allclose(actual, expected, rtol=0, atol=1e-6)


# -- COCO ---------------------------------------------------------------------------------------------

COCO_LINES = [
    "{",
    '"images": [',
    '{"id": 1, "file_name": "a.png", "width": 80, "height": 60},',
    '{"id": 2, "file_name": "b.jpg", "width": 64, "height": 64},',
    '{"id": 3, "file_name": "missing.png", "width": 10, "height": 10},',
    '{"id": 4, "file_name": "negative.png", "width": 40, "height": 40},',
    '{"id": 5, "file_name": "broken.png", "width": 40, "height": 40}',
    "],",
    '"annotations": [',
    '{"id": 1, "image_id": 1, "category_id": 3, "bbox": [8, 6, 40, 30], "iscrowd": 0},',
    '{"id": 2, "image_id": 2, "category_id": 7, "bbox": [0, 0, 64, 32]},',
    '{"id": 3, "image_id": 1, "category_id": 7, "bbox": [60, 50, 30, 20]},',
    '{"id": 4, "image_id": 1, "category_id": 3, "bbox": [10, 10, 0, 5]},',
    '{"id": 5, "image_id": 1, "category_id": 99, "bbox": [1, 1, 2, 2]},',
    '{"id": 6, "image_id": 42, "category_id": 3, "bbox": [1, 1, 2, 2]},',
    '{"id": 7, "image_id": 3, "category_id": 3, "bbox": [1, 1, 2, 2]},',
    '{"id": 8, "image_id": 2, "category_id": 3, "bbox": [-0.5, 0, 10, 64.8]},',
    '{"id": 9, "image_id": 2, "category_id": 3, "bbox": [5, 5, 5, 5], "iscrowd": 1},',
    '{"id": 10, "image_id": 2, "category_id": 3, "bbox": [70, 0, 10, 10]},',
    '{"id": 11, "image_id": 2, "category_id": 3, "bbox": [1, 2, "3", 4]}',
    "],",
    '"categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]',
    "}",
]


def line_of(text: str) -> int:
    return COCO_LINES.index(text) + 1


@pytest.fixture()
def coco_folder(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    write_photo(root / "images" / "a.png", 80, 60)
    write_photo(root / "images" / "b.jpg", 64, 64, "astronaut")
    write_photo(root / "images" / "negative.png", 40, 40, "chelsea")
    (root / "images" / "broken.png").write_bytes(b"not a png")
    (root / "annotations").mkdir()
    (root / "annotations" / "instances.json").write_text("\n".join(COCO_LINES) + "\n")
    return root


def test_coco_boxes_classes_and_negatives(coco_folder: Path) -> None:
    data = load_coco(coco_folder, 32, None)
    assert data.labels == ["cat", "dog"]  # categories ordered by id: 3 -> 0, 7 -> 1
    assert data.x.shape == (3, 32, 32, 3) and data.x.dtype == np.uint8 and data.pixel_format == "rgb"
    # image 1 (80x60): annotation 1, then annotation 3 clipped to the image
    assert close(data.boxes[0], [[6 / 60, 8 / 80, 36 / 60, 48 / 80], [50 / 60, 60 / 80, 1.0, 1.0]])
    assert data.classes[0].tolist() == [0, 1] and data.classes[0].dtype == np.int32
    # image 2 (64x64): annotation 2, annotation 8 clipped silently (within 1 px), crowd 9 dropped silently
    assert close(data.boxes[1], [[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 1.0, 9.5 / 64]])
    assert data.classes[1].tolist() == [1, 0]
    # image 4: a negative, kept with no boxes
    assert data.boxes[2].shape == (0, 4) and data.boxes[2].dtype == np.float32 and data.classes[2].shape == (0,)
    # coffee is brown: more red than blue once loaded as RGB
    assert data.x[0, ..., 0].mean() > data.x[0, ..., 2].mean()


def test_coco_reports_every_bad_annotation_with_its_line(coco_folder: Path) -> None:
    data = load_coco(coco_folder, 32, None)
    where = "annotations/instances.json"
    image_line = {i: line_of(COCO_LINES[1 + i]) for i in range(1, 6)}
    ann_line = {i: line_of(COCO_LINES[8 + i]) for i in range(1, 12)}
    assert ann_line[11] == 20 and image_line[3] == 5
    assert data.skipped == [
        f"{where}:{image_line[3]}: image id 3: file 'missing.png' not found in images/, next to the JSON or in the "
        "dataset folder (skipped with its 1 annotation); add it or fix file_name",
        f"{where}:{image_line[5]}: image id 5: cannot read images/broken.png (skipped with its 0 annotations); "
        "replace the file",
        f"{where}:{ann_line[3]}: annotation id 3: box [60, 50, 30, 20] outside image 80x60 (clipped)",
        f"{where}:{ann_line[4]}: annotation id 4: box [10, 10, 0, 5] has a width or height <= 0 (skipped); "
        "fix or remove it",
        f'{where}:{ann_line[5]}: annotation id 5: unknown category_id 99 (skipped); add it to "categories" '
        "or fix the id",
        f'{where}:{ann_line[6]}: annotation id 6: unknown image_id 42 (skipped); add that image to "images" '
        "or fix the id",
        f"{where}:{ann_line[10]}: annotation id 10: box [70, 0, 10, 10] outside image 64x64 "
        "(skipped, nothing left inside); fix the box",
        f'{where}:{ann_line[11]}: annotation id 11: bbox [1, 2, "3", 4] is not [x, y, width, height] in pixels '
        "(skipped); fix or remove it",
    ]


def test_coco_lines_in_a_pretty_printed_file(tmp_path: Path) -> None:
    """json.dump(indent=2) puts each annotation's '{' on its own line, one line above its "id"."""
    root = tmp_path / "pretty"
    write_photo(root / "images" / "a.png", 50, 40)
    anns = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]} for i in range(1, 6)]
    anns[3]["category_id"] = 5
    content = {
        "images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 40}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing"}],
    }
    text = json.dumps(content, indent=2)
    (root / "instances.json").write_text(text)  # a single JSON in the folder, no annotations/
    lines = text.splitlines()
    brace = next(i for i, line in enumerate(lines) if line.strip() == '"id": 4,' and i > 8)  # 0-based "id" line
    data = load_coco(root, 16, None)
    problem = 'unknown category_id 5 (skipped); add it to "categories" or fix the id'
    assert data.skipped == [f"instances.json:{brace}: annotation id 4: {problem}"]
    assert len(data.boxes[0]) == 4 and close(data.boxes[0][0], [1 / 40, 1 / 50, 11 / 40, 11 / 50])


def test_coco_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances.json").write_text('{\n"images": [],\n"annotations": [] \n"categories": []\n}\n')
    message = r"instances\.json: invalid JSON at line 4 column 1: Expecting ',' delimiter; fix the file"
    with pytest.raises(EdgecnnError, match=message):
        load_split(str(root), "detect", 32)


# -- YOLO -----------------------------------------------------------------------------------------------

YOLO_A = [
    "0 0.5 0.5 0.25 0.5",
    "1 0.5 0.5 0.2",
    "2 0.1 x 0.1 0.1",
    "5 0.5 0.5 0.1 0.1",
    "0 0.95 0.5 0.2 0.2",
    "1 0.5 0.5 0 0.2",
    "",
    "1 0.1 0.5 0.2002 0.2",
    "2 1.5 0.5 0.2 0.2",
]


@pytest.fixture()
def yolo_folder(tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    write_photo(root / "images" / "train" / "a.jpg", 64, 48)
    write_photo(root / "images" / "train" / "b.png", 32, 32, "astronaut")
    write_photo(root / "images" / "c.png", 40, 30, "chelsea")  # no label file: a negative
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("\n".join(YOLO_A) + "\n")
    (root / "labels" / "train" / "b.txt").write_text("2 0.25 0.75 0.5 0.5\n")
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames:\n  0: circle\n  1: square\n  2: triangle\n")
    return root


def test_yolo_boxes_classes_and_negatives(yolo_folder: Path) -> None:
    data = load_yolo(yolo_folder, 24, None)
    assert data.labels == ["circle", "square", "triangle"]
    assert data.x.shape == (3, 24, 24, 3) and data.pixel_format == "rgb"
    # sorted by relative path: c, train/a, train/b
    assert data.boxes[0].shape == (0, 4) and data.classes[0].shape == (0,)
    assert close(data.boxes[1], [[0.25, 0.375, 0.75, 0.625], [0.4, 0.85, 0.6, 1.0], [0.4, 0.0, 0.6, 0.2001]])
    assert data.classes[1].tolist() == [0, 0, 1]
    assert close(data.boxes[2], [[0.5, 0.0, 1.0, 0.5]]) and data.classes[2].tolist() == [2]


def test_yolo_reports_every_bad_line(yolo_folder: Path) -> None:
    data = load_yolo(yolo_folder, 24, None)
    assert data.skipped == [
        "labels/train/a.txt:2: expected 5 fields 'class x_center y_center width height', got 4 (skipped)",
        "labels/train/a.txt:3: not a number in '2 0.1 x 0.1 0.1' (skipped); "
        "write 5 numbers 'class x_center y_center width height'",
        "labels/train/a.txt:4: class id 5 out of range 0..2 (skipped); fix it or add its name to data.yaml",
        "labels/train/a.txt:5: box 0.95 0.5 0.2 0.2 reaches outside the image (clipped)",
        "labels/train/a.txt:6: box size 0 x 0.2 is not positive (skipped); fix or remove the line",
        "labels/train/a.txt:9: box 1.5 0.5 0.2 0.2 reaches outside the image (skipped, nothing left inside); "
        "fix the box",
        "labels/orphan.txt: no image images/orphan.* for this label file (skipped); "
        "add the image or delete the label file",
    ]


def test_yolo_names_from_classes_txt_and_gray(yolo_folder: Path) -> None:
    (yolo_folder / "data.yaml").unlink()
    (yolo_folder / "classes.txt").write_text("a\nb\nc\n")
    data = load_data(str(yolo_folder), "detect", 20, channels=1)
    assert data.labels == ["a", "b", "c"] and data.x.shape == (3, 20, 20, 1) and data.pixel_format == "gray"
    assert "fix it or add its name to classes.txt" in data.skipped[2]


def test_yolo_without_names_says_what_to_add(yolo_folder: Path) -> None:
    (yolo_folder / "data.yaml").unlink()
    with pytest.raises(EdgecnnError, match=r"no class names for the YOLO dataset .*; add data.yaml with 'names: \["):
        load_split(str(yolo_folder), "detect", 32)


def test_unknown_layout_describes_both(tmp_path: Path) -> None:
    with pytest.raises(
        EdgecnnError, match=r"is neither a YOLO nor a COCO dataset; expected YOLO: images/ .*; COCO: annotations/"
    ):
        load_split(str(tmp_path), "detect", 32)
    with pytest.raises(EdgecnnError, match=r"detection dataset not found: 'shapez'; use a built-in name \(shapes\)"):
        load_split("shapez", "detect", 32)


# -- split ------------------------------------------------------------------------------------------------


def test_random_split_is_seeded_sorted_and_disjoint() -> None:
    train, val = random_split(100, 0.2, seed=3)
    assert len(val) == 20 and len(train) == 80 and set(train).isdisjoint(val)
    assert sorted({*train, *val}) == list(range(100)) and train.tolist() == sorted(train.tolist())
    assert val.tolist() == sorted(np.random.default_rng(3).permutation(100)[:20].tolist())
    assert val.tolist() == random_split(100, 0.2, seed=3)[1].tolist() != random_split(100, 0.2, seed=4)[1].tolist()
    with pytest.raises(EdgecnnError, match="--val-fraction must be between 0 and 1, got 0"):
        random_split(100, 0, seed=3)


def test_folder_split_keeps_skipped_on_train(coco_folder: Path) -> None:
    split = load_split(str(coco_folder), "detect", 32, seed=1, val_fraction=0.34)
    assert len(split.train) == 2 and len(split.val) == 1
    assert len(split.train.skipped) == 8 and split.val.skipped == []
    again = load_split(str(coco_folder), "detect", 32, seed=1, val_fraction=0.34)
    assert np.array_equal(split.val.x, again.val.x)


def test_shapes_split_counts_gray_and_disjoint() -> None:
    split = load_split("shapes", "detect", 32, channels=1, seed=0)
    assert len(split.train) == 960 and len(split.val) == 240
    assert split.train.x.shape == (960, 32, 32, 1) and split.val.pixel_format == "gray"
    assert split.train.labels == ["circle", "square", "triangle"]
    train = {im.tobytes() for im in split.train.x}
    assert len(train) == 960 and train.isdisjoint(im.tobytes() for im in split.val.x)
    with pytest.raises(EdgecnnError, match="--val-fraction must be between 0 and 1, got 1.0"):
        load_split("shapes", "detect", 32, val_fraction=1.0)


# -- shapes --------------------------------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_shapes_content() -> None:
    data = shapes(64, 60)
    assert len(data) == 60 and data.x.shape == (60, 64, 64, 3) and data.x.dtype == np.uint8
    assert data.labels == ["circle", "square", "triangle"] and data.pixel_format == "rgb"
    counts = [len(b) for b in data.boxes]
    assert min(counts) >= 1 and max(counts) == 3
    assert set(np.concatenate(data.classes).tolist()) == {0, 1, 2}
    for boxes, classes in zip(data.boxes, data.classes, strict=True):
        assert boxes.dtype == np.float32 and classes.dtype == np.int32 and len(boxes) == len(classes)
        assert (boxes > 0).all() and (boxes < 1).all()  # fully inside, never touching the border
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        assert (sides >= 0.1).all() and (sides <= 0.55).all()
        for i in range(len(boxes)):
            for j in range(i):
                assert box_iou(boxes[i], boxes[j]) < 0.1


def test_shapes_boxes_are_tight_around_the_drawn_pixels() -> None:
    """Image i is the same picture in shapes and shapes_seg: each box is one mask component's bounding box."""
    det, seg = shapes(64, 60), shapes_seg(64, 40)
    assert seg.labels == ["background", "circle", "square", "triangle"]
    assert np.array_equal(det.x[:40], seg.x) and set(np.unique(seg.masks).tolist()) == {0, 1, 2, 3}
    for boxes, classes, mask in zip(det.boxes, det.classes, seg.masks, strict=False):
        for cls in range(3):
            count, _, stats, _ = cv2.connectedComponentsWithStats((mask == cls + 1).view(np.uint8), connectivity=8)
            found = sorted((y / 64, x / 64, (y + h) / 64, (x + w) / 64) for x, y, w, h, _ in stats[1:].tolist())
            expected = sorted(tuple(b) for b in boxes[classes == cls].tolist())
            assert count - 1 == len(expected)
            assert np.allclose(np.reshape(found, (-1, 4)), np.reshape(expected, (-1, 4)), rtol=0, atol=1e-6)


def test_shapes_are_deterministic_copies_and_count_independent() -> None:
    first = shapes(48, 30)
    first.x[:] = 0  # callers get copies: this must not reach the cache
    first.boxes[0][:] = 0
    _generate.cache_clear()
    again, fewer = shapes(48, 30), shapes(48, 10)
    cached = shapes(48, 30)
    assert again.x.any() and np.array_equal(again.x, cached.x) and np.array_equal(again.x[:10], fewer.x)
    assert all(np.array_equal(a, b) for a, b in zip(again.boxes, cached.boxes, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(again.classes[:10], fewer.classes, strict=True))
    assert again.boxes[0].any()


def test_shapes_image_size_checked() -> None:
    with pytest.raises(EdgecnnError, match="--img must be 16 or more pixels for the shapes datasets, got 12"):
        shapes(12)
