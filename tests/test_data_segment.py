"""Segmentation data: images/ + masks/ folders (index and VOC palette masks), the shapes-seg set, the split."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.core.errors import EdgecnnError
from edgecnn.data import load_data, load_split
from edgecnn.data.masks import read_mask, voc_colormap
from edgecnn.data.shapes import _generate, shapes_seg


def write_photo(path: Path, size: int, photo: str) -> None:
    """A size x size crop of a scikit-image sample photo (colour or gray), saved with OpenCV."""
    from skimage import data as skdata

    pixels = np.ascontiguousarray(getattr(skdata, photo)()[100 : 100 + size, 100 : 100 + size])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), pixels if pixels.ndim == 2 else pixels[:, :, ::-1])


def index_mask() -> np.ndarray:
    """40x40 class indices in 2x2-aligned blocks (so a nearest-neighbour 2x shrink is exact)."""
    mask = np.zeros((40, 40), np.uint8)
    mask[:32, :20], mask[:32, 20:] = 1, 2
    mask[:8, :8] = 255
    return mask


def palette_mask() -> np.ndarray:
    """40x40 VOC indices: person (15) with a 255 'ignore' border, on background."""
    mask = np.zeros((40, 40), np.uint8)
    mask[6:34, 6:34] = 255
    mask[8:32, 8:32] = 15
    return mask


def write_palette_png(path: Path, indices: np.ndarray) -> None:
    """A paletted PNG as VOC ships them (PIL mode 'P' with the VOC colormap)."""
    image = pytest.importorskip("PIL.Image").fromarray(indices, mode="P")
    image.putpalette(voc_colormap().reshape(-1).tolist())
    image.save(path)


@pytest.fixture()
def seg_folder(tmp_path: Path) -> Path:
    root = tmp_path / "seg"
    (root / "masks").mkdir(parents=True)
    write_photo(root / "images" / "a.png", 40, "coffee")
    cv2.imwrite(str(root / "masks" / "a.png"), index_mask())
    write_photo(root / "images" / "b.jpg", 40, "astronaut")
    write_palette_png(root / "masks" / "b.png", palette_mask())
    write_photo(root / "images" / "c.png", 40, "chelsea")  # no mask
    write_photo(root / "images" / "d.png", 40, "rocket")
    odd = np.zeros((40, 40, 3), np.uint8)
    odd[5, 9] = (3, 2, 1)  # BGR of RGB (1, 2, 3): not a VOC colour
    cv2.imwrite(str(root / "masks" / "d.png"), odd)
    write_photo(root / "images" / "e.png", 40, "coffee")
    cv2.imwrite(str(root / "masks" / "e.png"), np.zeros((20, 20), np.uint8))  # wrong size
    cv2.imwrite(str(root / "masks" / "orphan.png"), np.zeros((40, 40), np.uint8))
    return root


def test_voc_colormap() -> None:
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8 and len({tuple(c) for c in cmap.tolist()}) == 256
    assert cmap[:3].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    assert cmap[15].tolist() == [192, 128, 128] and cmap[255].tolist() == [224, 224, 192]


def test_palette_png_decodes_to_indices(tmp_path: Path) -> None:
    write_palette_png(tmp_path / "m.png", palette_mask())
    assert cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED).shape == (40, 40, 3)  # OpenCV expands it
    indices, problem = read_mask(tmp_path / "m.png")
    assert problem == "" and indices.dtype == np.uint8 and np.array_equal(indices, palette_mask())


def test_mask_folder_pixels_masks_and_reports(seg_folder: Path) -> None:
    data = load_data(str(seg_folder), "segment", 20)
    assert data.x.shape == (2, 20, 20, 3) and data.pixel_format == "rgb" and data.masks.shape == (2, 20, 20)
    assert np.array_equal(data.masks[0], index_mask()[::2, ::2])  # nearest neighbour: 255 stays 255
    assert np.array_equal(data.masks[1], palette_mask()[::2, ::2])
    assert data.labels == ["background"] + [f"class{i}" for i in range(1, 16)]
    assert data.x[0, ..., 0].mean() > data.x[0, ..., 2].mean()  # coffee is brown: RGB order
    assert data.skipped == [
        "images/c.png: no mask masks/c.png (skipped); add the mask or remove the image",
        "masks/d.png: colour (1, 2, 3) at row 5, column 9 is not in the VOC palette (image skipped); "
        "save masks as PNGs of class indices or VOC palette colours",
        "masks/e.png: mask is 20x20 but the image is 40x40 (skipped); masks must match their image's size",
        "masks/orphan.png: no image images/orphan.* for this mask (skipped); add the image or delete the mask",
    ]


def test_labels_file_names_classes_and_limits_indices(seg_folder: Path) -> None:
    (seg_folder / "labels.txt").write_text("background\nthing\nother\n")
    data = load_data(str(seg_folder), "segment", 20)
    assert data.labels == ["background", "thing", "other"] and len(data) == 1
    assert "masks/b.png: class index 15 but the labels file names 3 classes (image skipped); add the missing names" in (
        data.skipped
    )


def test_gray_folder_split_and_channels(tmp_path: Path) -> None:
    root = tmp_path / "gray"
    (root / "masks").mkdir(parents=True)
    for i in range(5):
        write_photo(root / "images" / f"{i}.png", 40, "camera")  # a gray photo
        cv2.imwrite(str(root / "masks" / f"{i}.png"), index_mask())
    split = load_split(str(root), "segment", 16, seed=2, val_fraction=0.4)
    assert split.train.x.shape == (3, 16, 16, 1) and split.val.x.shape == (2, 16, 16, 1)
    assert split.train.pixel_format == "gray" and split.val.masks.shape == (2, 16, 16)
    rgb = load_split(str(root), "segment", 16, channels=3, seed=2, val_fraction=0.4)
    assert rgb.train.x.shape == (3, 16, 16, 3) and rgb.train.pixel_format == "rgb"


def test_empty_or_wrong_folder(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(EdgecnnError, match=r"no usable image/mask pairs in .*; expected images/ with the pictures"):
        load_split(str(tmp_path), "segment", 32)
    with pytest.raises(EdgecnnError, match=r"is not a segmentation dataset; expected images/ with"):
        load_split(str(tmp_path / "images"), "segment", 32)
    with pytest.raises(
        EdgecnnError, match=r"segmentation dataset not found: 'shapes'; use a built-in name \(shapes-seg\)"
    ):
        load_split("shapes", "segment", 32)


def test_shapes_seg_split() -> None:
    split = load_split("shapes-seg", "segment", 32, seed=0)
    assert len(split.train) == 960 and len(split.val) == 240
    assert split.train.labels == ["background", "circle", "square", "triangle"]
    assert split.train.x.shape == (960, 32, 32, 3) and split.val.masks.shape == (240, 32, 32)
    assert split.train.masks.dtype == np.uint8 and set(np.unique(split.train.masks).tolist()) == {0, 1, 2, 3}
    assert all(m.any() for m in split.val.masks)  # every image has at least one shape
    train = {im.tobytes() for im in split.train.x}
    assert len(train) == 960 and train.isdisjoint(im.tobytes() for im in split.val.x)
    gray = load_split("shapes-seg", "segment", 32, channels=1, seed=0)
    assert gray.val.x.shape == (240, 32, 32, 1) and np.array_equal(gray.val.masks, split.val.masks)


def test_shapes_seg_is_deterministic() -> None:
    first = shapes_seg(40, 12)
    first.masks[:] = 0  # a copy: the cache is untouched
    _generate.cache_clear()
    again = shapes_seg(40, 12)
    assert np.array_equal(again.x, shapes_seg(40, 12).x) and again.masks.any()
    assert np.array_equal(again.masks, shapes_seg(40, 12).masks)
