"""YOLO datasets as Ultralytics and Roboflow export them: a data.yaml whose train:/val:/test: name image
folders or list files, split subfolders with their labels beside them; the dataset's own splits are used
as they are (no random split). Small datasets generated here, no downloads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.core.errors import EdgecnnError
from edgecnn.data import load_data, load_split
from edgecnn.data.files import ImageFiles
from edgecnn.data.yolo import label_path


def _image(path: Path, seed: int, size: int = 40) -> None:
    """A smooth seeded picture (a gradient with a disc), written by OpenCV."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    image = (np.outer(ramp, ramp)[:, :, None] * rng.integers(60, 255, 3)).astype(np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 4, [int(v) for v in rng.integers(0, 255, 3)], -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def _labelled(image: Path, label: Path, seed: int, cls: int) -> None:
    _image(image, seed)
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text(f"{cls} 0.5 0.5 0.5 0.5\n")


@pytest.fixture()
def ultralytics(tmp_path: Path) -> Path:
    """images/{train,val,test} + labels/{train,val,test}; data.yaml with path:, names as a dict, test: a list file."""
    root = tmp_path / "ultra"
    for part, count in (("train", 5), ("val", 3), ("test", 2)):
        for i in range(count):
            stem = f"{part}{i}"
            _labelled(root / "images" / part / f"{stem}.jpg", root / "labels" / part / f"{stem}.txt", i, i % 2)
    (root / "test.txt").write_text("./images/test/test0.jpg\nimages/test/test1.jpg\n")
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\ntest: test.txt\nnames:\n  0: circle\n  1: square\n"
    )
    return root


@pytest.fixture()
def roboflow(tmp_path: Path) -> Path:
    """train/images + train/labels, valid/..., test/...; Roboflow's '../train/images' entries, nc and a names list."""
    root = tmp_path / "robo"
    for part, count in (("train", 4), ("valid", 2), ("test", 1)):
        for i in range(count):
            stem = f"{part}_{i}_jpg.rf.{i:04x}"
            _labelled(root / part / "images" / f"{stem}.jpg", root / part / "labels" / f"{stem}.txt", 10 + i, 1)
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: ['cat', 'dog']\n"
        "roboflow:\n  workspace: w\n  version: 1\n"
    )
    return root


def test_ultralytics_layout_uses_its_own_splits(ultralytics: Path) -> None:
    split = load_split(str(ultralytics), "detect", 32, seed=7, val_fraction=0.5)
    assert split.train.labels == ["circle", "square"]
    assert isinstance(split.train.x, ImageFiles) and split.train.x.shape == (5, 32, 32, 3)
    assert split.record["made_by"] == "the dataset's own splits"
    assert split.record["train"] == [f"images/train/train{i}.jpg" for i in range(5)]
    assert split.record["val"] == [f"images/val/val{i}.jpg" for i in range(3)]
    assert [c.tolist() for c in split.val.classes] == [[0], [1], [0]]
    assert np.allclose(split.val.boxes[1], [[0.25, 0.25, 0.75, 0.75]])
    again = load_split(str(ultralytics), "detect", 32, seed=1, val_fraction=0.2)  # seed and fraction unused
    assert again.record["val"] == split.record["val"]
    whole = load_data(str(ultralytics), "detect", 32)
    assert len(whole) == 10 and whole.parts["test"].tolist() == [8, 9]  # the list file: './x' and 'x' lines
    assert whole.x.keys()[8:] == ["images/test/test0.jpg", "images/test/test1.jpg"]


def test_roboflow_layout_from_the_folder_or_its_yaml(roboflow: Path) -> None:
    by_folder = load_split(str(roboflow), "detect", 24)
    by_yaml = load_split(str(roboflow / "data.yaml"), "detect", 24)
    for split in (by_folder, by_yaml):
        assert split.train.labels == ["cat", "dog"] and (len(split.train), len(split.val)) == (4, 2)
        assert split.record["val"] == ["valid/images/valid_0_jpg.rf.0000.jpg", "valid/images/valid_1_jpg.rf.0001.jpg"]
        assert all(c.tolist() == [1] for c in split.train.classes)
    assert np.array_equal(by_folder.val.x[:], by_yaml.val.x[:])
    assert label_path(roboflow / "valid" / "images" / "a.jpg") == roboflow / "valid" / "labels" / "a.txt"


def test_list_files_and_lists_of_entries(ultralytics: Path) -> None:
    (ultralytics / "lists").mkdir()
    (ultralytics / "lists" / "val.txt").write_text("# the first two\n../images/val/val0.jpg\n../images/val/val1.jpg\n")
    (ultralytics / "data.yaml").write_text(
        "train: [images/train, images/test]\nval: lists/val.txt\nnames: [circle, square]\n"
    )
    split = load_split(str(ultralytics), "detect", 16)
    assert (len(split.train), len(split.val)) == (7, 2)
    assert split.record["val"] == ["images/val/val0.jpg", "images/val/val1.jpg"]


def test_labels_missing_or_bad_in_a_split(roboflow: Path) -> None:
    (roboflow / "train" / "labels" / "train_0_jpg.rf.0000.txt").unlink()  # a negative now
    (roboflow / "valid" / "labels" / "valid_1_jpg.rf.0001.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    split = load_split(str(roboflow), "detect", 16)
    assert split.train.boxes[0].shape == (0, 4) and len(split.val.boxes[1]) == 0
    assert split.train.skipped == [
        "valid/labels/valid_1_jpg.rf.0001.txt:1: class id 3 out of range 0..1 (skipped); fix it or add its name to "
        "data.yaml"
    ]


def test_layout_errors_name_the_yaml_and_the_fix(roboflow: Path, ultralytics: Path) -> None:
    (roboflow / "data.yaml").write_text("train: ../train/images\nval: ../validation/images\nnames: [cat, dog]\n")
    with pytest.raises(EdgecnnError, match=r"data.yaml: val: .*validation/images does not exist; give an image folder"):
        load_split(str(roboflow), "detect", 16)
    (roboflow / "data.yaml").write_text("train: ../train/images\nnames: [cat, dog]\n")
    with pytest.raises(EdgecnnError, match=r"names no train: and val: images and .* has no images/ folder; add"):
        load_split(str(roboflow), "detect", 16)
    (roboflow / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 3\nnames: [cat, dog]\n")
    with pytest.raises(EdgecnnError, match=r"nc is 3 but names has 2; make them agree"):
        load_split(str(roboflow), "detect", 16)
    with pytest.raises(EdgecnnError, match=r"looks like a YOLO detect dataset"):
        load_split(str(ultralytics), "classify", 32)
    with pytest.raises(EdgecnnError, match=r"looks like a YOLO detect dataset"):
        load_split(str(ultralytics / "data.yaml"), "classify", 32)


@pytest.mark.slow  # builds and trains an SSDLite: ~35 s of CPU
def test_a_detector_trains_on_a_roboflow_export_with_its_splits(roboflow: Path, tmp_path: Path, capsys) -> None:
    """`edgecnn train` streams the export (targets assigned as the images stream), validates on valid/, and
    eval measures the same 2 images from the run's split.json."""
    import json

    from edgecnn.cli import main

    run = tmp_path / "run"
    args = ["--arch", "ssdlite_mobilenet_v2_035", "--img", "96", "--epochs", "1", "--batch", "2", "--out", str(run)]
    assert main(["train", "--data", str(roboflow / "data.yaml"), *args]) == 0
    record = json.loads((run / "split.json").read_text())
    assert record["made_by"] == "the dataset's own splits" and len(record["train"]) == 4
    assert record["val"] == ["valid/images/valid_0_jpg.rf.0000.jpg", "valid/images/valid_1_jpg.rf.0001.jpg"]
    assert json.loads((run / "metrics.json").read_text())["val_images"] == 2
    capsys.readouterr()
    assert main(["eval", str(run / "model.keras"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 2 and result["split"] == "val" and 0.0 <= result["map50"] <= 1.0
